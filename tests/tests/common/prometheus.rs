//! A private Prometheus (Debian's `prometheus` package) on a free loopback port, scraping
//! given targets every second with DRaaS's shipped alert rules; queried through its HTTP API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{free_port, scratch, terminate, wait_until};

/// A running Prometheus, killed on drop.
pub struct Prometheus {
    pub port: u16,
    child: Child,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job name → `host:port` list) every second and
    /// evaluating `deploy/prometheus/rules.yml` every second.
    pub async fn start(targets: &[(&str, Vec<String>)]) -> anyhow::Result<Self> {
        let Some(binary) = which("prometheus") else {
            bail!("prometheus is not installed (Debian package `prometheus`; .ci/run installs it)");
        };
        let dir = scratch("prometheus");
        let rules =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/rules.yml");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n",
        );
        config += &format!("rule_files:\n  - {}\n", rules.display());
        config += "scrape_configs:\n";
        for (job, addrs) in targets {
            config += &format!("  - job_name: {job}\n    static_configs:\n      - targets: [");
            config += &addrs
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(", ");
            config += "]\n";
        }
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let prometheus = Prometheus {
            port,
            child,
            dir,
            http: reqwest::Client::new(),
        };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let http = prometheus.http.clone();
        wait_until(|| {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                let r = http.get(&ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await
        .with_context(|| format!("prometheus never became ready: {}", prometheus.log()))?;
        Ok(prometheus)
    }

    /// Prometheus's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with query parameters; the `data` of a successful answer.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/{path}", self.port);
        let body: Value = self.http.get(url).query(query).send().await?.json().await?;
        if body["status"] != "success" {
            bail!("prometheus answered {body}");
        }
        Ok(body["data"].clone())
    }

    /// An instant query's single scalar result (the first sample); `None` when it has none.
    pub async fn scalar(&self, promql: &str) -> Option<f64> {
        let data = self.api("query", &[("query", promql)]).await.ok()?;
        let value = data["result"].as_array()?.first()?["value"][1]
            .as_str()?
            .to_owned();
        value.parse().ok()
    }

    /// The state of alert `name` (`pending`, `firing`), `None` when it is not active.
    pub async fn alert_state(&self, name: &str) -> Option<String> {
        let data = self.api("alerts", &[]).await.ok()?;
        data["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str().map(str::to_owned))
    }

    /// The health of every scrape target, `job → up?`.
    pub async fn targets_up(&self) -> Vec<(String, bool)> {
        let Ok(data) = self.api("targets", &[]).await else {
            return Vec::new();
        };
        data["activeTargets"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        (
                            t["scrapeUrl"].as_str().unwrap_or("").to_owned(),
                            t["health"] == "up",
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

//! Shared helpers for the draas-runtime process tests: temp working directories, free ports,
//! spawning the real binary, and waiting on conditions with deadlines.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_draas-runtime");
pub const HOT_QUERY: &str =
    "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id, s.temperature AS temperature";

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "draas-runtime-test-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (the OS hands out ephemeral ports round-robin).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// The sensor pipeline config: http source, hot-sensor Cypher query, log reaction.
pub fn pipeline_config(api_port: u16, source_port: u16) -> String {
    format!(
        r#"apiVersion: drasi.io/v1
id: test-instance
host: 127.0.0.1
port: {api_port}
logLevel: info
sources:
  - kind: http
    id: sensors
    host: 127.0.0.1
    port: {source_port}
queries:
  - id: hot
    query: "{HOT_QUERY}"
    queryLanguage: Cypher
    sources:
      - sourceId: sensors
reactions:
  - kind: log
    id: out
    queries: [hot]
"#
    )
}

/// A running draas-runtime process; killed on drop if still running.
pub struct Runtime {
    pub child: Child,
    pub api: String,
    pub workdir: PathBuf,
}

impl Runtime {
    /// Spawns the binary in `workdir` with `config` and waits for the first 200 on `/health`.
    pub async fn start(workdir: &Path, config: &str, api_port: u16) -> Result<Self> {
        let mut runtime = Self::spawn(workdir, config, &[])?;
        runtime.api = format!("http://127.0.0.1:{api_port}");
        runtime.wait_ready(Duration::from_secs(60)).await?;
        Ok(runtime)
    }

    pub fn spawn(workdir: &Path, config: &str, extra_args: &[&str]) -> Result<Self> {
        let config_path = workdir.join("config.yaml");
        std::fs::write(&config_path, config)?;
        let stdout = std::fs::File::create(workdir.join("stdout.log"))?;
        let stderr = std::fs::File::create(workdir.join("stderr.log"))?;
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .current_dir(workdir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .context("spawn draas-runtime")?;
        Ok(Self {
            child,
            api: String::new(),
            workdir: workdir.to_path_buf(),
        })
    }

    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.workdir.join(name)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }

    pub async fn wait_ready(&mut self, within: Duration) -> Result<Duration> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("draas-runtime exited early with {status}\n{}", self.logs());
            }
            if let Ok(resp) = client.get(format!("{}/health", self.api)).send().await
                && resp.status().is_success()
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!("draas-runtime not ready within {within:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let resp = reqwest::get(format!("{}{path}", self.api)).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await?))
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: Signal, within: Duration) -> Result<ExitStatus> {
        kill(Pid::from_raw(self.child.id() as i32), signal)?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > within {
                bail!("no exit within {within:?} after {signal}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Posts one change event to the `sensors` http source on `source_port`.
pub async fn post_event(source_port: u16, event: Value) -> Result<()> {
    let resp = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{source_port}/sources/sensors/events"
        ))
        .json(&event)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "event rejected: {}",
        resp.text().await?
    );
    Ok(())
}

/// An insert of a `Sensor` node with `id` and `temperature`.
pub fn sensor_reading(id: &str, temperature: i64) -> Value {
    serde_json::json!({"operation": "insert", "element": {"type": "node", "id": id,
        "labels": ["Sensor"], "properties": {"id": id, "temperature": temperature}}})
}

/// Polls `check` until it returns `Some`, failing after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if started.elapsed() > within {
            bail!("timed out after {within:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the binary to completion with `args` in `workdir`; returns (success, stdout+stderr).
pub fn run_to_end(workdir: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .output()
        .context("run draas-runtime")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

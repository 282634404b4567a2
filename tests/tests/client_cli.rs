//! The client CLI against a real system (private Redis, API with tokens, process worker,
//! `draas-runtime` instances), through the real `draas` binary only talking HTTP: the README
//! walk-through with `draas instances …` (create -f, list, get -o yaml, start, logs and
//! logs -f, events, restart, stop, operations, edit, delete) with every exit code scripts
//! rely on; `draas apply`/`draas diff` of a directory in `client_cli/apply.rs`.

#[path = "client_cli/apply.rs"]
mod apply;
mod common;
#[path = "client_cli/edit_and_errors.rs"]
mod edit_and_errors;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::{
    ApiNode, RedisServer, WorkerNode, draas_binary, fresh_keys, runtime_binary, scratch, wait_until,
};
use draas_api::auth::AuthMode;
use draas_bus::{Store, connect};
use draas_protocol::auth::Scope;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// Redis, an API node requiring tokens, a process worker, and an administrator token.
pub struct Env {
    _redis: RedisServer,
    pub api: ApiNode,
    _worker: WorkerNode,
    pub store: Store,
    pub token: String,
    pub http: reqwest::Client,
    /// HOME, XDG_CONFIG_HOME and DRAAS_DATA_DIR of every run: no config file, no context.
    pub home: PathBuf,
}

/// A finished `draas` run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub async fn start() -> anyhow::Result<Env> {
        let redis = RedisServer::start()?;
        let keys = fresh_keys("cli");
        let worker = WorkerNode::start(&redis.url, &keys, runtime_binary()).await?;
        let api = ApiNode::start_tuned(&redis.url, &keys, |c| c.auth = AuthMode::Tokens).await?;
        let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
        let scopes = [Scope::All].into_iter().collect();
        let token = store
            .create_token("default", scopes, None, None)
            .await?
            .secret;
        let env = Env {
            _redis: redis,
            api,
            _worker: worker,
            store,
            token,
            http: reqwest::Client::new(),
            home: scratch("cli-home"),
        };
        wait_until(|| async {
            let v = env.get("/api/v1/platforms").await.1;
            (v["items"][0]["available"] == true).then_some(())
        })
        .await?;
        Ok(env)
    }

    /// `draas ARGS --api URL` with `DRAAS_TOKEN=token` (none: unset), stdin closed.
    pub async fn run_as(&self, token: Option<&str>, args: &[&str], envs: &[(&str, &str)]) -> Out {
        let mut cmd = tokio::process::Command::new(draas_binary());
        cmd.args(args);
        if !args.contains(&"--api") {
            cmd.args(["--api", &self.api.url]);
        }
        cmd.env_remove("DRAAS_API")
            .env_remove("DRAAS_CONTEXT")
            .env_remove("EDITOR")
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("DRAAS_DATA_DIR", self.home.join("data"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        match token {
            Some(t) => cmd.env("DRAAS_TOKEN", t),
            None => cmd.env_remove("DRAAS_TOKEN"),
        };
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().await.expect("run draas");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_as(Some(&self.token), args, &[]).await
    }

    /// Runs and asserts the exit code.
    pub async fn expect(&self, code: i32, args: &[&str]) -> Out {
        let out = self.run(args).await;
        assert_eq!(out.code, code, "draas {args:?}: {out:?}");
        out
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.api.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        common::status_json(resp).await
    }

    /// The instance as the API shows it (by name).
    pub async fn instance(&self, name: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/instances/{name}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A DrasiInstance document of the walk-through's instance: an HTTP source, a query of the
/// sensors hotter than `threshold`, a log reaction.
pub fn document(name: &str, labels: &str, extra_spec: &str, threshold: u32) -> String {
    format!(
        r#"apiVersion: draas.io/v1
kind: DrasiInstance
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  platform: process
{extra_spec}  config:
    sources: [{{kind: http, id: readings}}]
    queries:
      - id: hot
        query: "MATCH (s:Sensor) WHERE s.temperature > {threshold} RETURN s.id AS id, s.temperature AS temperature"
        sources: [{{sourceId: readings}}]
    reactions: [{{kind: log, id: log, queries: [hot]}}]
"#
    )
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_string_lossy().into_owned()
}

async fn post_reading(env: &Env, name: &str, id: &str, temperature: u32) {
    let resp = env
        .http
        .post(format!(
            "{}/api/v1/instances/{name}/sources/readings/events",
            env.api.url
        ))
        .bearer_auth(&env.token)
        .json(
            &json!({"operation": "insert", "element": {"type": "node", "id": id,
            "labels": ["Sensor"], "properties": {"id": id, "temperature": temperature}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_with_draas_instances() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let dir = scratch("cli-walk");
    let file = write(
        &dir.join("sensors.yaml"),
        &document(
            "sensors",
            "app: walk",
            "  desiredState: stopped\n  description: first\n",
            75,
        ),
    );

    // create -f: created, not started (desiredState: stopped); again: a conflict (4).
    let out = env.expect(0, &["instances", "create", "-f", &file]).await;
    assert!(out.stdout.contains("instance/sensors created"), "{out:?}");
    let out = env.expect(4, &["instances", "create", "-f", &file]).await;
    assert!(out.stderr.contains("already exists"), "{out:?}");

    // list: a table for people, JSON for scripts.
    let out = env.expect(0, &["instances", "list"]).await;
    let header = out.stdout.lines().next().unwrap_or_default().to_owned();
    for column in [
        "NAME",
        "ID",
        "PLATFORM",
        "STATE",
        "DESIRED",
        "GENERATION",
        "AGE",
    ] {
        assert!(header.contains(column), "{out:?}");
    }
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("sensors"))
        .expect("a row");
    assert!(
        row.contains("process") && row.contains("created") && row.contains("stopped"),
        "{row}"
    );
    let out = env
        .expect(0, &["instances", "list", "-l", "app=walk", "-o", "json"])
        .await;
    let listed: Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(listed["items"][0]["name"], "sensors", "{listed}");
    assert_eq!(listed["items"][0]["state"], "created", "{listed}");
    let out = env
        .expect(0, &["instances", "list", "-l", "app=other", "-o", "json"])
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout)?["items"],
        json!([])
    );

    // get -o yaml: the document, without id, state or runtime; `draas get` says the same.
    let out = env
        .expect(0, &["instances", "get", "sensors", "-o", "yaml"])
        .await;
    let doc: Value = serde_yaml::from_str(&out.stdout)?;
    assert_eq!(doc["kind"], "DrasiInstance");
    assert_eq!(doc["metadata"]["name"], "sensors");
    assert_eq!(doc["spec"]["desiredState"], "stopped");
    assert!(
        doc.get("id").is_none() && doc["spec"].get("state").is_none(),
        "{doc}"
    );
    assert_eq!(
        env.expect(0, &["get", "sensors", "-o", "yaml"])
            .await
            .stdout,
        out.stdout
    );
    let id = env.instance("sensors").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = env
        .expect(0, &["instances", "get", &id, "-o", "json"])
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&by_id.stdout)?["name"],
        "sensors"
    );

    // start --wait: running, and the stored desired state follows.
    let out = env
        .expect(0, &["instances", "start", "sensors", "--wait"])
        .await;
    assert!(out.stdout.contains("instance/sensors started"), "{out:?}");
    let inst = env.instance("sensors").await;
    assert_eq!(
        (inst["state"].as_str(), inst["desiredState"].as_str()),
        (Some("running"), Some("running")),
        "{inst}"
    );
    // Starting a running instance is an illegal transition: a conflict.
    let out = env.expect(4, &["instances", "start", "sensors"]).await;
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("illegal_transition"),
        "{out:?}"
    );

    // logs: the log reaction's lines; logs -f prints new ones as they come.
    post_reading(&env, "sensors", "s1", 99).await;
    wait_until(|| async {
        let out = env
            .run(&["instances", "logs", "sensors", "--tail", "20"])
            .await;
        (out.code == 0 && out.stdout.contains("\"s1\"")).then_some(())
    })
    .await?;
    follow_logs(&env).await?;

    // events: the history as lines (and JSON lines), then the command ends by itself.
    let out = env.expect(0, &["instances", "events", "sensors"]).await;
    assert!(
        out.stdout.contains("stateChanged") && out.stdout.contains("starting -> running"),
        "{out:?}"
    );
    let out = env
        .expect(0, &["instances", "events", "sensors", "-o", "json"])
        .await;
    for line in out.stdout.lines() {
        let event: Value = serde_json::from_str(line)?;
        assert_eq!(event["instanceId"], id.as_str(), "{line}");
    }

    let out = env
        .expect(0, &["instances", "restart", "sensors", "--wait"])
        .await;
    assert!(out.stdout.contains("instance/sensors restarted"), "{out:?}");

    // stop without --wait: accepted, then followed through `operations get --wait`.
    let out = env.expect(0, &["instances", "stop", "sensors"]).await;
    let op = out
        .stdout
        .split("operation ")
        .nth(1)
        .and_then(|s| s.split(';').next());
    let op = op
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no operation in {out:?}"));
    let out = env.expect(0, &["operations", "get", &op, "--wait"]).await;
    assert!(
        out.stdout.contains("succeeded") && out.stdout.contains("stop"),
        "{out:?}"
    );
    let out = env
        .expect(0, &["operations", "get", &op, "-o", "json"])
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout)?["state"],
        "succeeded"
    );
    let inst = env.instance("sensors").await;
    assert_eq!(
        (inst["state"].as_str(), inst["desiredState"].as_str()),
        (Some("stopped"), Some("stopped")),
        "{inst}"
    );

    edit_and_errors::edit(&env, &dir).await?;
    edit_and_errors::exit_codes(&env).await;

    // delete: refused without a terminal or --yes (2), then done; gone (3).
    let out = env.expect(2, &["instances", "delete", "sensors"]).await;
    assert!(out.stderr.contains("--yes"), "{out:?}");
    let out = env
        .expect(0, &["instances", "delete", "sensors", "--yes", "--wait"])
        .await;
    assert!(out.stdout.contains("instance/sensors deleted"), "{out:?}");
    env.expect(3, &["instances", "get", "sensors"]).await;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// `logs -f` in the background prints a line written after it started, then is stopped.
async fn follow_logs(env: &Env) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(draas_binary())
        .args([
            "instances",
            "logs",
            "sensors",
            "-f",
            "--tail",
            "1",
            "--api",
            &env.api.url,
        ])
        .env("DRAAS_TOKEN", &env.token)
        .env("HOME", &env.home)
        .env("XDG_CONFIG_HOME", env.home.join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let seen = Arc::new(Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let sink = seen.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    // The first tail is printed before the new reading is posted.
    wait_until(|| async { (!seen.lock().unwrap().is_empty()).then_some(()) }).await?;
    post_reading(env, "sensors", "s2", 98).await;
    let followed =
        wait_until(|| async { seen.lock().unwrap().contains("\"s2\"").then_some(()) }).await;
    child.kill().await?;
    reader.abort();
    followed.map_err(|e| anyhow::anyhow!("{e}: logs -f printed {:?}", seen.lock().unwrap()))?;
    let printed = seen.lock().unwrap().clone();
    assert_eq!(
        printed.matches("\"s2\"").count(),
        1,
        "a line printed twice: {printed}"
    );
    Ok(())
}

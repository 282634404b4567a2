//! What DRaaS learns from and demands of a workload that is not (only) draas-runtime:
//! - "ready": a drasi-server-compatible server (here a small fake one, in Python, answering
//!   drasi-server's API) that stays up and healthy while a query failed to build, as
//!   drasi-server does with an invalid Cypher query, fails the start with the component's own
//!   message; a server whose components all run starts; and the worker's `--runtime-arg`s
//!   reach the workload after `--config <file>`;
//! - kinds: workers advertise what their workload says it supports (`<runtime>
//!   capabilities`) or what their `--capabilities-file` declares, and the API refuses a
//!   config whose kinds no live worker can run, naming the field; a workload that does not
//!   say is not judged; an unusable file stops the worker, naming the file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{System, scratch};
use serde_json::json;

/// A fake drasi-server: reads the port from the rendered config, records its arguments in
/// `args.txt` next to the config, answers /health with 200, and lists the config's source
/// `readings`, query `hot` (with `query_status`) and reaction `log`.
fn fake_server(dir: &Path, query_status: &str) -> PathBuf {
    let path = dir.join("fake-drasi-server.py");
    let script = format!(
        r#"#!/usr/bin/env python3
import json, re, sys, os
from http.server import BaseHTTPRequestHandler, HTTPServer
config = sys.argv[sys.argv.index("--config") + 1]
with open(os.path.join(os.path.dirname(config), "args.txt"), "w") as f:
    f.write(json.dumps(sys.argv[1:]))
port = int(re.search(r"^port: *(\d+)", open(config).read(), re.M).group(1))
lists = {{
    "/api/v1/sources": [{{"id": "readings", "status": "Running"}}],
    "/api/v1/queries": [{{"id": "hot", "status": "{query_status}", "error_message": "Failed to build query: Parser error at line 1"}}],
    "/api/v1/reactions": [{{"id": "log", "status": "Running"}}],
}}
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = {{"status": "ok"}}
        elif self.path in lists:
            body = {{"success": True, "data": lists[self.path], "error": None}}
        else:
            self.send_response(404); self.end_headers(); return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_in_error_fails_the_start_with_its_message() -> anyhow::Result<()> {
    let fake = fake_server(&scratch("fake"), "Error");
    let sys = System::start_tuned(fake, |c| {
        c.process.readiness_timeout = std::time::Duration::from_secs(20);
    })
    .await?;
    let id = sys.create("broken").await;
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["state"], "failed", "{op}");
    let error = op["error"].to_string();
    assert!(
        error.contains("query `hot` failed: Failed to build query: Parser error at line 1"),
        "{op}"
    );
    assert_eq!(sys.instance(&id).await["state"], "failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_components_run_starts_with_the_runtime_args() -> anyhow::Result<()> {
    let fake = fake_server(&scratch("fake"), "Running");
    let sys = System::start_tuned(fake, |c| {
        c.process.runtime_args = vec!["--plugins-dir".into(), "/opt/plugins".into()];
    })
    .await?;
    let id = sys.create("fine").await;
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let args_file = sys
        .worker
        .data_dir
        .join("instances")
        .join(&id)
        .join("args.txt");
    let args: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&args_file)?)?;
    assert_eq!(args[0], "--config");
    assert_eq!(&args[2..], ["--plugins-dir", "/opt/plugins"], "{args:?}");
    Ok(())
}

/// A wrapper that answers `capabilities` with a lean set of kinds and is draas-runtime
/// otherwise.
fn lean_runtime(dir: &Path) -> PathBuf {
    let path = dir.join("lean-runtime.sh");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = capabilities ]; then\n  echo '{{\"workload\":\"lean 1.0\",\"sources\":[\"http\"],\"reactions\":[\"log\"]}}'\n  exit 0\nfi\nexec {} \"$@\"\n",
        common::runtime_binary().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_no_live_workers_workload_has_is_refused_at_create() -> anyhow::Result<()> {
    let sys = System::start_with(lean_runtime(&scratch("lean"))).await?;
    let config = config_with_source;
    assert_refused(&sys, "mocked", config("mock"), "lean 1.0", "mock").await;

    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "plain", "platform": "process", "config": config("http")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A patch to a kind the workload lacks is refused the same way.
    let id = body["id"].as_str().unwrap();
    let patched = sys
        .http
        .patch(sys.url(&format!("/api/v1/instances/{id}")))
        .header("content-type", "application/merge-patch+json")
        .json(&json!({"config": config("mock")}))
        .send()
        .await?;
    let (status, body) = common::status_json(patched).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_kind", "{body}");
    Ok(())
}

/// Creating `name` with `config` is refused: 422 `unsupported_kind` naming the source's kind
/// field, and a message naming the advertised `workload` and the `kind`.
async fn assert_refused(
    sys: &System,
    name: &str,
    config: serde_json::Value,
    workload: &str,
    kind: &str,
) {
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": name, "platform": "process", "config": config}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_kind", "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "config.sources[0].kind",
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(workload) && message.contains(&format!("`{kind}`")),
        "{body}"
    );
}

/// A `--capabilities-file` in `dir` with `content`.
fn capabilities_file(dir: &Path, content: &str) -> PathBuf {
    let path = dir.join("kinds.json");
    std::fs::write(&path, content).unwrap();
    path
}

/// A config with one source of kind `source`, a query and a log reaction.
fn config_with_source(source: &str) -> serde_json::Value {
    json!({
        "sources": [{"kind": source, "id": "readings"}],
        "queries": [{"id": "hot", "query": "MATCH (s:Sensor) RETURN s.id AS id", "sources": [{"sourceId": "readings"}]}],
        "reactions": [{"kind": "log", "id": "log", "queries": ["hot"]}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capabilities_file_is_advertised_instead_of_asking_the_workload() -> anyhow::Result<()> {
    let file = capabilities_file(
        &scratch("kinds"),
        r#"{"workload": "declared 1.0", "sources": ["mock"], "reactions": ["log"]}"#,
    );
    // draas-runtime itself runs `http` sources: the file decides, the workload is not asked.
    let sys = System::start_tuned(common::runtime_binary(), |c| {
        c.capabilities_file = Some(file);
    })
    .await?;
    assert_refused(
        &sys,
        "http",
        config_with_source("http"),
        "declared 1.0",
        "http",
    )
    .await;
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "mock", "platform": "process", "config": config_with_source("mock")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_capabilities_file_stops_the_worker_naming_the_file() -> anyhow::Result<()> {
    let redis = common::RedisServer::start()?;
    let keys = common::fresh_keys("caps");

    // The binary: not the format (no `reactions`) → a non-zero exit naming file and problem.
    let invalid = capabilities_file(
        &scratch("kinds"),
        r#"{"workload": "half", "sources": ["mock"]}"#,
    );
    let child = std::process::Command::new(common::draas_binary())
        .args(["worker", "--platform", "process"])
        .args(["--redis-url", &redis.url, "--prefix", keys.prefix()])
        .arg("--data-dir")
        .arg(scratch("caps-worker"))
        .arg("--runtime")
        .arg(common::runtime_binary())
        .arg("--capabilities-file")
        .arg(&invalid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id() as i64;
    let waited = tokio::time::timeout(
        common::DEADLINE,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(out) = waited else {
        common::sigkill(pid);
        anyhow::bail!("the worker kept running with an invalid capabilities file");
    };
    let out = out??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&invalid.display().to_string())
            && stderr.contains("`reactions` is missing"),
        "{stderr}"
    );

    // In-process: a file that is not there.
    let missing = scratch("kinds").join("absent.json");
    let mut config = draas_worker::WorkerConfig::new(
        redis.url.as_str(),
        draas_protocol::Platform::Process,
        scratch("caps-worker"),
    );
    config.keys = keys.clone();
    config.process.executable = common::runtime_binary();
    config.capabilities_file = Some(missing.clone());
    let ran = tokio::time::timeout(
        common::DEADLINE,
        draas_worker::run(config, std::future::pending(), std::future::pending()),
    )
    .await;
    let Ok(Err(error)) = ran else {
        anyhow::bail!("the worker did not refuse a missing capabilities file: {ran:?}");
    };
    let error = error.to_string();
    assert!(
        error.contains(&missing.display().to_string()) && error.contains("cannot read it"),
        "{error}"
    );
    // Neither registered.
    let store = draas_bus::Store::new(draas_bus::connect::shared(&redis.url).await?, keys);
    assert!(
        store
            .advertisements(draas_protocol::Platform::Process)
            .await?
            .is_empty()
    );
    Ok(())
}

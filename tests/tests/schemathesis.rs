//! The contract under generated traffic: schemathesis (`tests/schemathesis/run.sh`) against a
//! live API with a process worker and real `draas-runtime` instances, with a token holding
//! every scope. At least 1,000 generated requests over every operation (but those excluded
//! below, each with its reason), its checks for server errors, status codes, content types
//! and response schemas, and its stateful phase over the document's links (create → read,
//! patch, start, stop, restart, delete); 0 failures. Then a seeded state machine of our own
//! drives create, get, patch, start, stop, restart and delete in generated orders with no 5xx,
//! and everything both left behind is deleted through the API, leaving no instance and no
//! instance process.

mod common;
#[path = "../schemathesis/venv.rs"]
mod venv;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    ApiNode, RedisServer, WorkerNode, fresh_keys, runtime_binary, scratch, sensor_config,
};
use draas_api::auth::AuthMode;
use draas_bus::{Store, connect};
use draas_protocol::auth::Scope;
use serde_json::{Value, json};

/// Operations schemathesis does not call, and why: none. (The endless event feeds are read
/// for a few events or 3 s each: `tests/schemathesis/schemathesis.toml`.)
const EXCLUDED_OPERATIONS: &[(&str, &str)] = &[];

/// Operations schemathesis leaves out by itself, and why.
const NOT_RUN: &[(&str, &str)] = &[(
    "getOpenApiDocument",
    "schemathesis loads the document from it and leaves the operation serving its own schema \
     out of the run; tests/tests/openapi.rs checks what it serves",
)];

/// Checks left out of the four the contract names: none.
const EXCLUDED_CHECKS: &[(&str, &str)] = &[];

/// Generated cases per operation and phase; with the coverage phase's own cases this is well
/// over 1,000 requests in all.
const MAX_EXAMPLES: u32 = 25;
const SEED: u64 = 20260115;
/// The whole schemathesis run may take this long before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(600);

struct Live {
    _redis: RedisServer,
    api: ApiNode,
    worker: WorkerNode,
    http: reqwest::Client,
    token: String,
    token_id: String,
}

impl Live {
    async fn start() -> Live {
        let redis = RedisServer::start().unwrap();
        let keys = fresh_keys("st");
        let worker = WorkerNode::start_tuned(
            &redis.url,
            &keys,
            runtime_binary(),
            scratch("st-worker"),
            |_| {},
        )
        .await
        .unwrap();
        let api = ApiNode::start_tuned(&redis.url, &keys, |c| {
            c.auth = AuthMode::Tokens;
            // Generated waits end within schemathesis' request timeout.
            c.max_wait = Duration::from_secs(20);
        })
        .await
        .unwrap();
        let store = Store::new(connect::shared(&redis.url).await.unwrap(), keys.clone());
        let made = store
            .create_token("default", [Scope::All].into_iter().collect(), None, None)
            .await
            .unwrap();
        let (token, token_id) = (made.secret, made.record.id);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let live = Live {
            _redis: redis,
            api,
            worker,
            http,
            token,
            token_id,
        };
        common::wait_until(|| async {
            let (_, v) = live.call("GET", "/api/v1/platforms", None).await;
            (v["items"][0]["available"] == true).then_some(())
        })
        .await
        .expect("the worker registers");
        live
    }

    async fn call(&self, method: &str, path: &str, body: Option<(&str, Value)>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api.url))
            .bearer_auth(&self.token);
        if let Some((media, body)) = body {
            req = req.header("content-type", media).body(body.to_string());
        }
        common::status_json(req.send().await.expect("request")).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_and_a_state_machine_find_no_defect() {
    let Some(schemathesis) = venv::schemathesis() else {
        let under = if venv::in_ci() { "under CI" } else { "here" };
        panic!("schemathesis is missing {under}: {}", venv::INSTALL);
    };
    let live = Live::start().await;
    run_schemathesis(&live, &schemathesis).await;
    state_machine(&live).await;
    clean_up(&live).await;
    let Live { api, worker, .. } = live;
    let dir = worker.data_dir.clone();
    api.shutdown().await;
    worker.shutdown().await;
    assert!(
        instance_processes(&dir).is_empty(),
        "instance processes left: {:?}",
        instance_processes(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run_schemathesis(live: &Live, schemathesis: &Path) {
    let dir = scratch("schemathesis");
    let report = dir.join("report.json");
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis/run.sh");
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(&runner)
        .arg(&live.api.url)
        .arg(&live.token)
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // One worker: with two, schemathesis' threads call `ast.parse` at once (hypothesis
        // describing its strategies' lambdas), and CPython 3.11's AST constructor keeps one
        // recursion counter per interpreter, so a parse fails at random with "SystemError:
        // AST constructor recursion depth mismatch" (python/cpython#106905).
        .args(["--workers", "1"])
        .args(["--request-timeout", "90"])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "ndjson"])
        .arg("--report-ndjson-path")
        .arg(&report);
    for (operation, _why) in EXCLUDED_OPERATIONS {
        command.args(["--exclude-operation-id", operation]);
    }
    for (check, _why) in EXCLUDED_CHECKS {
        command.args(["--exclude-checks", check]);
    }
    // Its output goes to a file, so a run that overstays is still explained.
    let log = dir.join("schemathesis.log");
    let output = std::fs::File::create(&log).unwrap();
    command
        .env("SCHEMATHESIS", schemathesis)
        .env("DRAAS_ST_TOKEN_ID", &live.token_id)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().expect("run schemathesis");
    let status = tokio::time::timeout(RUN_LIMIT, child.wait()).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("schemathesis ran {:?}:\n{text}", started.elapsed());
    let Ok(status) = status else {
        panic!("schemathesis did not finish within {RUN_LIMIT:?}");
    };
    let status = status.expect("schemathesis exit status");
    let events = std::fs::read_to_string(&report).unwrap_or_default();
    let summary = summarize(&events);
    eprintln!("{summary:#?}");
    assert!(
        status.success(),
        "schemathesis found failures (exit {:?}); see its output above",
        status.code()
    );
    assert!(
        summary.requests >= 1000,
        "only {} requests were generated",
        summary.requests
    );
    let doc = draas_api::openapi::document();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap_or_default();
            if EXCLUDED_OPERATIONS
                .iter()
                .chain(NOT_RUN)
                .any(|(e, _)| *e == id)
            {
                continue;
            }
            let label = summary.label_of(op, doc);
            assert!(
                summary.per_operation.get(&label).copied().unwrap_or(0) > 0,
                "{id} ({label}) was never called"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the ndjson report says: requests in all and per operation label (`GET /path`).
#[derive(Debug, Default)]
struct Summary {
    requests: usize,
    per_operation: BTreeMap<String, usize>,
}

impl Summary {
    fn label_of(&self, op: &Value, doc: &Value) -> String {
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, candidate) in item.as_object().unwrap() {
                if candidate == op {
                    return format!("{} {path}", method.to_uppercase());
                }
            }
        }
        String::new()
    }
}

/// Counts the requests the report records: every finished scenario's interactions, by the
/// scenario's label (`METHOD /template`, or `Stateful tests`).
fn summarize(ndjson: &str) -> Summary {
    let mut summary = Summary::default();
    for line in ndjson.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let recorder = &event["ScenarioFinished"]["recorder"];
        let Some(label) = recorder["label"].as_str() else {
            continue;
        };
        let requests = recorder["interactions"].as_object().map_or(0, |i| i.len());
        summary.requests += requests;
        *summary.per_operation.entry(label.to_owned()).or_default() += requests;
    }
    summary
}

/// A small deterministic generator (xorshift), so a failing order can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Create → get → patch → start → stop → restart → delete over three instances, in orders
/// drawn from a seeded generator: never a 5xx, and every answer one the document lists for
/// the operation.
async fn state_machine(live: &Live) {
    let mut rng = Rng(SEED);
    let names = ["sm-a", "sm-b", "sm-c"];
    let mut log = Vec::new();
    for step in 0..45 {
        let name = names[rng.next(names.len())];
        let action = [
            "create", "get", "patch", "start", "stop", "restart", "delete",
        ][rng.next(7)];
        let path = format!("/api/v1/instances/{name}");
        let (status, body) = match action {
            "create" => {
                let body = json!({"name": name, "platform": "process",
                                  "config": sensor_config()});
                live.call(
                    "POST",
                    "/api/v1/instances",
                    Some(("application/json", body)),
                )
                .await
            }
            "get" => live.call("GET", &path, None).await,
            // Every other patch changes the config: a running instance restarts on it.
            "patch" if step % 2 == 1 => {
                let query = format!(
                    "MATCH (s:Sensor) WHERE s.temperature > {} RETURN s.id AS id",
                    60 + step
                );
                let body = json!({"config": {"queries": [{"id": "hot", "query": query,
                                  "sources": [{"sourceId": "readings"}]}]}});
                live.call("PATCH", &path, Some(("application/merge-patch+json", body)))
                    .await
            }
            "patch" => {
                let body = json!({"description": format!("step {step}"),
                                  "labels": {"step": step.to_string()}});
                live.call("PATCH", &path, Some(("application/merge-patch+json", body)))
                    .await
            }
            "delete" => live.call("DELETE", &path, None).await,
            command => live.call("POST", &format!("{path}/{command}"), None).await,
        };
        log.push(format!("{step}: {action} {name} → {status}"));
        assert!(status < 500, "{}\n{body}", log.join("\n"));
        let allowed: &[u16] = match action {
            "create" => &[201, 409],
            "get" | "patch" => &[200, 404],
            _ => &[200, 202, 404, 409],
        };
        assert!(allowed.contains(&status), "{}\n{body}", log.join("\n"));
        if status == 409 && action != "create" {
            assert_eq!(
                body["error"]["code"],
                "illegal_transition",
                "{}",
                log.join("\n")
            );
        }
        if matches!(action, "start" | "stop" | "restart" | "delete") && status == 200 {
            assert_eq!(body["state"], "succeeded", "{}\n{body}", log.join("\n"));
        }
    }
    eprintln!("state machine:\n{}", log.join("\n"));
}

/// Deletes every instance left (waiting out ones still moving), then checks none is left.
async fn clean_up(live: &Live) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, page) = live.call("GET", "/api/v1/instances?limit=500", None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "instances left after clean-up: {}",
            items
                .iter()
                .map(|i| format!("{} {}", i["name"], i["state"]))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for item in items {
            let id = item["id"].as_str().unwrap();
            let (status, body) = live
                .call("DELETE", &format!("/api/v1/instances/{id}?wait=60"), None)
                .await;
            // A state that cannot be deleted yet (starting, stopping) settles on its own.
            assert!(matches!(status, 200 | 202 | 404 | 409), "{status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Processes whose command line names the worker's data directory (its instances).
fn instance_processes(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

//! The official drasi-server (0.2.2, with the http source, mock source and log reaction
//! plugins built against its plugin SDK) as the process worker's workload, through DRaaS's API
//! only: the walk-through (a pasted drasi-server config, start, source events and query
//! results through the data plane, logs, PATCH of a running instance, adoption by a restarted
//! worker, stop with exit 0, start again, restart, SIGKILL reported as failed 137, delete), an
//! invalid Cypher query failing the start with the server's own message, and a kind the server
//! has no plugin for. Needs the output of `deploy/official/build-drasi-server.sh` in
//! `DRAAS_DRASI_SERVER_DIR`: ignored by default, and failing, not skipping, when run with
//! `--ignored` without it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{System, WorkerNode, wait_until};
use draas_protocol::drasi::interpolate::yaml_to_json;
use serde_json::{Value, json};

const NEEDS: &str = "needs the official drasi-server: set DRAAS_DRASI_SERVER_DIR to the output of deploy/official/build-drasi-server.sh";

/// A drasi-server config as its users write it (REST API and http source on fixed ports,
/// `plugins` refs, `queryLanguage` and `autoStart` spelled out, since drasi-server defaults to
/// GQL and to not starting queries).
const PASTED: &str = r#"
apiVersion: drasi.io/v1
id: sensor-alerts
host: 0.0.0.0
port: 8080
logLevel: info
persistConfig: false
plugins:
  - ref: source/http
  - ref: reaction/log
sources:
  - kind: http
    id: readings
    autoStart: true
    host: 0.0.0.0
    port: 9000
    timeoutMs: 10000
  - kind: mock
    id: ticks
    autoStart: true
    dataType: {type: counter}
    intervalMs: 100
queries:
  - id: hot
    autoStart: true
    queryLanguage: Cypher
    query: |
      MATCH (s:Sensor)
      WHERE s.temperature > 75
      RETURN s.id AS id, s.temperature AS temperature
    sources:
      - sourceId: readings
  - id: counter
    autoStart: true
    queryLanguage: Cypher
    query: MATCH (c:Counter) RETURN c.value AS value
    sources:
      - sourceId: ticks
reactions:
  - kind: log
    id: alerts
    queries: [hot]
    autoStart: true
    defaultTemplate:
      added:
        template: "HOT {{after.id}}: {{after.temperature}}"
"#;

/// The server binary and its plugin directory, from `DRAAS_DRASI_SERVER_DIR`.
struct Official {
    server: PathBuf,
    plugins: PathBuf,
}

impl Official {
    fn from_env() -> Official {
        let dir = std::env::var_os("DRAAS_DRASI_SERVER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("DRAAS_DRASI_SERVER_DIR is not set: {NEEDS}"));
        let official = Official {
            server: dir.join("bin").join("drasi-server"),
            plugins: dir.join("plugins"),
        };
        assert!(
            official.server.is_file(),
            "{NEEDS}: no {}",
            official.server.display()
        );
        for lib in ["source_http", "source_mock", "reaction_log"] {
            let so = official.plugins.join(format!("libdrasi_{lib}.so"));
            assert!(so.is_file(), "{NEEDS}: no {}", so.display());
        }
        official
    }

    /// What a worker passes after `--config <file>`.
    fn runtime_args(&self) -> Vec<String> {
        vec![
            "--plugins-dir".into(),
            self.plugins.display().to_string(),
            "--skip-verification".into(),
        ]
    }

    /// Redis, an API node and a process worker running this drasi-server.
    async fn system(&self) -> anyhow::Result<System> {
        let args = self.runtime_args();
        System::start_tuned(self.server.clone(), |c| c.process.runtime_args = args).await
    }
}

/// Creates an instance named `name` from a drasi-server YAML config; returns the response.
async fn create(sys: &System, name: &str, yaml: &str) -> (u16, Value) {
    let config = yaml_to_json(yaml).expect("a YAML config");
    sys.post_json(
        "/api/v1/instances",
        &json!({"name": name, "platform": "process", "config": config}),
    )
    .await
}

fn fields(warnings: &Value) -> Vec<String> {
    let mut fields: Vec<String> = warnings
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["field"].as_str().map(str::to_owned))
        .collect();
    fields.sort();
    fields
}

/// The executable a live process runs.
fn exe_of(pid: u64) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("a live process")
}

/// Whether `pid` runs: it exists and is no zombie (a crashed in-process worker's children are
/// still this test's, reaped whenever tokio gets to it).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    })
}

/// POSTs one source event through the API's data plane; the server must accept it.
async fn post_event(sys: &System, id: &str, path: &str, event: Value) {
    let url = format!("/api/v1/instances/{id}/sources/readings/{path}");
    let (status, body) = sys.post_json(&url, &event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
}

fn sensor(id: &str, temperature: i64) -> Value {
    json!({"operation": "insert", "element": {"type": "node", "id": id, "labels": ["Sensor"],
        "properties": {"id": id, "temperature": temperature}}})
}

/// Waits until the query `hot`'s results, read through the API, are `expected` (in any
/// order: a result set has none).
async fn results_become(sys: &System, id: &str, expected: Value) {
    let url = format!("/api/v1/instances/{id}/queries/hot/results");
    let by_id = |rows: &Value| {
        let mut rows = rows.as_array().cloned().unwrap_or_default();
        rows.sort_by_key(|r| r["id"].to_string());
        rows
    };
    let want = by_id(&expected);
    let seen = wait_until(|| async {
        let (status, body) = sys.get(&url).await;
        (status == 200 && body["items"].is_array() && by_id(&body["items"]) == want).then_some(())
    })
    .await;
    if seen.is_err() {
        panic!("results never became {expected}: {:?}", sys.get(&url).await);
    }
}

/// The pid of a running instance.
async fn pid_of(sys: &System, id: &str) -> u64 {
    let inst = sys.instance(id).await;
    assert_eq!(inst["state"], "running", "{inst}");
    inst["runtime"]["pid"].as_u64().expect("a pid")
}

/// A stop through the API: the instance is `stopped` with `exit_code` (`None`: unknown).
async fn stop(sys: &System, id: &str, exit_code: Option<i64>) {
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let inst = sys.instance(id).await;
    assert_eq!(inst["state"], "stopped", "{inst}");
    assert_eq!(inst["runtime"]["exitCode"].as_i64(), exit_code, "{inst}");
}

/// A start through the API; returns the operation.
async fn start(sys: &System, id: &str) -> Value {
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(status, 200, "{op}");
    op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the official drasi-server: set DRAAS_DRASI_SERVER_DIR to the output of deploy/official/build-drasi-server.sh"]
async fn the_walkthrough_runs_on_the_official_drasi_server() -> anyhow::Result<()> {
    let official = Official::from_env();
    let sys = official.system().await?;

    // A pasted config: accepted, with the listeners DRaaS replaces and the plugin list it
    // ignores named in `warnings`.
    let (status, created) = create(&sys, "sensors", PASTED).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        fields(&created["warnings"]),
        [
            "config.host",
            "config.id",
            "config.plugins",
            "config.port",
            "config.sources[0].host",
            "config.sources[0].port"
        ],
        "{created}"
    );
    let id = created["id"].as_str().unwrap().to_owned();

    let began = Instant::now();
    let op = start(&sys, &id).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    eprintln!("official drasi-server: start took {:?}", began.elapsed());
    let inst = sys.instance(&id).await;
    assert_eq!(inst["state"], "running", "{inst}");
    let pid = inst["runtime"]["pid"].as_u64().expect("pid");
    assert_eq!(
        exe_of(pid),
        official.server.canonicalize()?,
        "not the official server"
    );

    // Its queries, as the server reports them; the mock source's counter counts.
    let (status, queries) = sys.get(&format!("/api/v1/instances/{id}/queries")).await;
    assert_eq!(status, 200, "{queries}");
    let mut listed: Vec<Value> = queries["items"].as_array().cloned().unwrap_or_default();
    listed.sort_by_key(|q| q["id"].to_string());
    let running =
        json!([{"id": "counter", "status": "Running"}, {"id": "hot", "status": "Running"}]);
    assert_eq!(json!(listed), running, "{queries}");
    let counted = wait_until(|| async {
        let url = format!("/api/v1/instances/{id}/queries/counter/results");
        let (status, body) = sys.get(&url).await;
        (status == 200 && body["items"][0]["value"].as_i64()? > 0).then_some(())
    })
    .await;
    assert!(counted.is_ok(), "the mock source never counted");

    // Source events through the data plane; results through the API.
    post_event(&sys, &id, "events", sensor("s1", 80)).await;
    results_become(&sys, &id, json!([{"id": "s1", "temperature": 80}])).await;
    let mut update = sensor("s1", 90);
    update["operation"] = json!("update");
    post_event(&sys, &id, "events", update).await;
    results_become(&sys, &id, json!([{"id": "s1", "temperature": 90}])).await;
    let delete = json!({"operation": "delete", "id": "s1", "labels": ["Sensor"]});
    post_event(&sys, &id, "events", delete).await;
    results_become(&sys, &id, json!([])).await;
    let batch = json!({"events": [sensor("s2", 99), sensor("s3", 20)]});
    post_event(&sys, &id, "events/batch", batch).await;
    results_become(&sys, &id, json!([{"id": "s2", "temperature": 99}])).await;

    // Logs through the API: the server's own lines and the log reaction's, without colour.
    let logs = wait_until(|| async {
        let (status, body) = sys
            .get(&format!("/api/v1/instances/{id}/logs?tail=400"))
            .await;
        let lines = body["lines"].as_str()?.to_owned();
        (status == 200 && lines.contains("HOT s2: 99")).then_some(lines)
    })
    .await
    .map_err(|e| anyhow::anyhow!("the log reaction's line never showed: {e}"))?;
    assert!(logs.contains("Drasi Server started successfully"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI colour codes in the logs: {logs}"
    );

    // draas-runtime's change feed is not a drasi-server route: an error answer, not a hang.
    let changes = sys
        .http
        .get(sys.url(&format!("/api/v1/instances/{id}/queries/hot/changes")))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let (status, body) = common::status_json(changes).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "upstream_error", "{body}");

    // Stop: SIGINT, and the server exits 0. Started again, then restarted: a new process
    // each time, and its (in-memory) query starts empty.
    stop(&sys, &id, Some(0)).await;
    assert!(!alive(pid), "process {pid} survived stop");
    assert_eq!(start(&sys, &id).await["state"], "succeeded");
    let again = pid_of(&sys, &id).await;
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/restart")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let restarted = pid_of(&sys, &id).await;
    assert!(
        restarted != again && !alive(again),
        "restart replaces the process"
    );
    post_event(&sys, &id, "events", sensor("s4", 98)).await;
    results_become(&sys, &id, json!([{"id": "s4", "temperature": 98}])).await;

    // PATCH of the running instance: applied by a new process with the new query.
    let patch = json!([{"op": "replace", "path": "/config/queries/0/query",
        "value": "MATCH (s:Sensor) WHERE s.temperature > 95 RETURN s.id AS id, s.temperature AS temperature"}]);
    let resp = sys
        .http
        .patch(sys.url(&format!("/api/v1/instances/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await?;
    let (status, inst) = common::status_json(resp).await;
    assert_eq!((status, &inst["state"]), (200, &json!("running")), "{inst}");
    let patched = inst["runtime"]["pid"].as_u64().expect("pid");
    assert!(
        patched != restarted && !alive(restarted),
        "applyConfig runs a new process"
    );
    let batch = json!({"events": [sensor("s5", 96), sensor("s6", 90)]});
    post_event(&sys, &id, "events/batch", batch).await;
    results_become(&sys, &id, json!([{"id": "s5", "temperature": 96}])).await;

    // The worker dies; a new worker on the node adopts the running server (same process),
    // and the data plane reaches it again. Until the new worker registers, the dead one's
    // address is all the API has, hence the wait.
    let sys = adopt_after_crash(sys, &official).await?;
    assert_eq!(sys.instance(&id).await["state"], "running");
    assert_eq!(pid_of(&sys, &id).await, patched);
    results_become(&sys, &id, json!([{"id": "s5", "temperature": 96}])).await;
    post_event(&sys, &id, "events", sensor("s7", 97)).await;
    let both = json!([{"id": "s5", "temperature": 96}, {"id": "s7", "temperature": 97}]);
    results_become(&sys, &id, both).await;
    // An adopted process is not the new worker's child: it stops, its exit code unknown.
    stop(&sys, &id, None).await;
    assert!(!alive(patched), "adopted process {patched} survived stop");

    // SIGKILL from outside: failed, 137.
    assert_eq!(start(&sys, &id).await["state"], "succeeded");
    common::sigkill(pid_of(&sys, &id).await as i64);
    let inst = sys.wait_state(&id, "failed").await;
    assert_eq!(inst["runtime"]["exitCode"], 137, "{inst}");

    // Delete: gone, with its working directory.
    let (status, op) = sys.delete(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    assert_eq!(sys.get(&format!("/api/v1/instances/{id}")).await.0, 404);
    assert!(!sys.worker.data_dir.join("instances").join(&id).exists());
    Ok(())
}

/// Crashes the system's worker (its instances keep running) and starts a new one on the same
/// node (data directory), which adopts them.
async fn adopt_after_crash(sys: System, official: &Official) -> anyhow::Result<System> {
    let System {
        redis,
        keys,
        api,
        worker,
        http,
    } = sys;
    let data_dir = worker.data_dir.clone();
    worker.crash();
    let args = official.runtime_args();
    let worker =
        WorkerNode::start_tuned(&redis.url, &keys, official.server.clone(), data_dir, |c| {
            c.process.runtime_args = args
        })
        .await?;
    Ok(System {
        redis,
        keys,
        api,
        worker,
        http,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the official drasi-server: set DRAAS_DRASI_SERVER_DIR to the output of deploy/official/build-drasi-server.sh"]
async fn an_invalid_cypher_query_fails_the_start_with_the_servers_message() -> anyhow::Result<()> {
    let official = Official::from_env();
    let sys = official.system().await?;
    let broken = PASTED.replace("WHERE s.temperature > 75", "WHERE s.temperature >");
    let (status, created) = create(&sys, "broken", &broken).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let op = start(&sys, id).await;
    assert_eq!(op["state"], "failed", "{op}");
    let message = op["error"]["message"].as_str().unwrap_or_default();
    eprintln!("official drasi-server, invalid Cypher: {message}");
    assert!(message.contains("query `hot` failed: "), "{op}");
    assert!(
        message.contains("Failed to build query"),
        "the server's own message: {op}"
    );
    let inst = sys.instance(id).await;
    assert_eq!(inst["state"], "failed", "{inst}");
    assert!(
        inst["runtime"].get("pid").is_none(),
        "the server was stopped: {inst}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the official drasi-server: set DRAAS_DRASI_SERVER_DIR to the output of deploy/official/build-drasi-server.sh"]
async fn a_kind_without_its_plugin_is_accepted_at_create_and_fails_the_start() -> anyhow::Result<()>
{
    let official = Official::from_env();
    let sys = official.system().await?;
    // drasi-server has no `capabilities` command: the worker's registration says no kinds,
    // and the API cannot judge them at create.
    let mut conn = sys
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await?;
    let platform = draas_protocol::Platform::Process;
    let consumers: Vec<String> = redis::cmd("ZRANGE")
        .arg(sys.keys.workers(platform))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await?;
    assert_eq!(consumers.len(), 1, "{consumers:?}");
    let kinds: Option<String> = redis::cmd("HGET")
        .arg(sys.keys.worker(platform, &consumers[0]))
        .arg("kinds")
        .query_async(&mut conn)
        .await?;
    assert_eq!(kinds, None, "drasi-server cannot say its kinds");
    let grpc = PASTED.replace("kind: http", "kind: grpc");
    let (status, created) = create(&sys, "no-plugin", &grpc).await;
    assert_eq!(
        status, 201,
        "a workload that does not say what it runs is not judged: {created}"
    );
    let id = created["id"].as_str().unwrap();
    let op = start(&sys, id).await;
    assert_eq!(op["state"], "failed", "{op}");
    let message = op["error"]["message"].as_str().unwrap_or_default();
    eprintln!("official drasi-server, no grpc plugin: {message}");
    assert!(
        message.contains("exited before it was ready (code Some(1)")
            && message.contains("- source/grpc (referenced by source 'readings')"),
        "the server exits 1 naming the missing plugin, and the log tail says so: {op}"
    );
    Ok(())
}

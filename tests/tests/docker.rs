//! The docker platform on a real Docker daemon (`DOCKER_HOST`): the README walk-through (its
//! data also through the API's data plane), a container killed from outside, adoption by a
//! restarted worker, a missing image, and the kinds a worker's image says it runs. The image
//! is the locally built runtime image (deploy/docker/build-runtime-image.sh); containers use
//! host networking only: the test daemon has no bridge (`dockerd --bridge=none`), so bridge
//! and named networks are not tested here.

#[path = "docker/capabilities.rs"]
mod capabilities;
mod common;

use std::process::Command;
use std::sync::OnceLock;

use common::sse::Feed;
use common::{
    ApiNode, RedisServer, WorkerNode, endpoint, runtime_binary, scratch, sensor_config,
    status_json, wait_until,
};
use draas_protocol::{Keyspace, Platform};
use serde_json::{Value, json};

const IMAGE: &str = "draas-runtime:test";

/// Builds the runtime image once per test binary.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        assert!(
            std::env::var_os("DOCKER_HOST").is_some()
                || std::path::Path::new("/var/run/docker.sock").exists(),
            "these tests need a Docker daemon: set DOCKER_HOST (see .ci/run)"
        );
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let status = Command::new("bash")
            .arg(root.join("deploy/docker/build-runtime-image.sh"))
            .arg(runtime_binary())
            .arg(IMAGE)
            .status()
            .expect("run the image build script");
        assert!(status.success(), "building {IMAGE} failed");
    });
    IMAGE
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

struct DockerSystem {
    redis: RedisServer,
    keys: Keyspace,
    api: ApiNode,
    worker: Option<WorkerNode>,
    http: reqwest::Client,
}

impl DockerSystem {
    async fn start() -> anyhow::Result<Self> {
        image();
        let redis = RedisServer::start()?;
        let keys = common::fresh_keys("d");
        let worker = Self::worker(&redis, &keys).await?;
        // The operator lets tenants name images (a missing one is tested below).
        let api = ApiNode::start_tuned(&redis.url, &keys, |c| {
            c.allowed_images = draas_protocol::image::ImagePolicy::new(["*"]);
        })
        .await?;
        let sys = DockerSystem {
            redis,
            keys,
            api,
            worker: Some(worker),
            http: reqwest::Client::new(),
        };
        sys.wait_available().await?;
        Ok(sys)
    }

    async fn worker(redis: &RedisServer, keys: &Keyspace) -> anyhow::Result<WorkerNode> {
        WorkerNode::start_tuned(
            &redis.url,
            keys,
            runtime_binary(),
            scratch("docker-worker"),
            |c| {
                c.platform = Platform::Docker;
                c.docker.image = IMAGE.to_owned();
                c.docker.allowed_images = draas_protocol::image::ImagePolicy::new(["*"]);
                c.stop_instances_on_exit = false;
                c.process.stop_grace = std::time::Duration::from_secs(5);
            },
        )
        .await
    }

    async fn wait_available(&self) -> anyhow::Result<()> {
        wait_until(|| async {
            let v =
                common::get_json(&self.http, &format!("{}/api/v1/platforms", self.api.url)).await?;
            (v["items"][1]["platform"] == "docker" && v["items"][1]["workers"] == 1).then_some(())
        })
        .await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.api.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        status_json(req.send().await.expect("request")).await
    }

    async fn create(&self, name: &str, extra: Value) -> String {
        let mut body = json!({"name": name, "platform": "docker", "config": sensor_config()});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, inst) = self
            .call(reqwest::Method::POST, "/api/v1/instances", Some(body))
            .await;
        assert_eq!(status, 201, "{inst}");
        inst["id"].as_str().unwrap().to_owned()
    }

    /// Sends a lifecycle request and asserts that its operation succeeded; returns it.
    async fn succeed(&self, method: reqwest::Method, path: &str) -> Value {
        let (status, op) = self.call(method, path, None).await;
        assert_eq!(
            (status, op["state"].clone()),
            (200, json!("succeeded")),
            "{op}"
        );
        op
    }

    async fn instance(&self, id: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/instances/{id}"),
            None,
        )
        .await
        .1
    }
}

impl Drop for DockerSystem {
    fn drop(&mut self) {
        // Remove every container and volume this test's deployment (its key prefix) left.
        let managed = format!("label=io.draas.managed-by={}", self.keys.prefix());
        let (_, ids) = docker(&["ps", "-aq", "--filter", &managed]);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = docker(&["rm", "-f", "-v", id]);
        }
        let (_, volumes) = docker(&["volume", "ls", "-q", "--filter", &managed]);
        for volume in volumes.lines().filter(|l| !l.is_empty()) {
            let _ = docker(&["volume", "rm", "-f", volume]);
        }
    }
}

/// A sensor reading as the http source takes it.
fn reading(operation: &str, id: &str, temperature: i64) -> Value {
    json!({"operation": operation, "element": {"type": "node", "id": id, "labels": ["Sensor"], "properties": {"id": id, "temperature": temperature}}})
}

/// Result rows ordered by their `id`, so sets compare whatever order the instance keeps.
fn by_id(rows: &Value) -> Vec<Value> {
    let mut rows = rows.as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_owned());
    rows
}

/// The README walk-through on a container: the container is what the spec says, the
/// instance answers on the address it recorded, and its data is reachable through the API's
/// data plane (API → the worker's data-plane listener → the container): the query list, a
/// change feed (snapshot, then added, updated and deleted in order, resumed with
/// `Last-Event-ID`), events and batches posted to its http source, the results.
///
/// Only host networking is covered: the test daemon runs without a bridge
/// (`dockerd --bridge=none`), so containers on a bridge or a named network, and the worker
/// reaching them there, cannot be tested on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_on_the_docker_platform() -> anyhow::Result<()> {
    let sys = DockerSystem::start().await?;
    let name = format!("t-{}-walk", sys.keys.prefix());
    let id = sys
        .create(
            &name,
            json!({"image": IMAGE, "resources": {"memoryMb": 256, "cpuMillis": 500}}),
        )
        .await;
    sys.succeed(
        reqwest::Method::POST,
        &format!("/api/v1/instances/{id}/start"),
    )
    .await;
    let inst = sys.instance(&id).await;
    assert_eq!(inst["state"], "running");
    let container = format!("draas-{id}");
    assert_eq!(
        inst["runtime"]["containerId"].as_str().map(|c| c.len()),
        Some(64),
        "{inst}"
    );

    // The container is what the spec says.
    let (_, facts) = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.HostConfig.NetworkMode}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.Config.StopSignal}} {{index .Config.Labels \"io.draas.instance.id\"}}",
        &container,
    ]);
    assert_eq!(facts, format!("true host 268435456 500000000 SIGINT {id}"));
    let (_, mounts) = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Destination}}:{{.RW}} {{end}}",
        &container,
    ]);
    assert!(
        mounts.contains("/app/config/server.yaml:false"),
        "config is mounted read-only: {mounts}"
    );
    assert!(mounts.contains("/app/data:true"), "a data volume: {mounts}");

    // Health, an event, the results.
    let api = endpoint(&inst, "api");
    let health = sys.http.get(format!("{api}/health")).send().await?;
    assert_eq!(health.status(), 200);
    let source = endpoint(&inst, "source:readings");
    let event = json!({"operation": "insert", "element": {"type": "node", "id": "s1", "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 91}}});
    assert_eq!(
        sys.http
            .post(format!("{source}/sources/readings/events"))
            .json(&event)
            .send()
            .await?
            .status(),
        200
    );
    wait_until(|| async {
        let body =
            common::get_json(&sys.http, &format!("{api}/api/v1/queries/hot/results")).await?;
        (body["data"] == json!([{"id": "s1", "temperature": 91}])).then_some(())
    })
    .await?;
    let (status, logs) = sys
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/instances/{id}/logs?tail=50"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{logs}");
    assert!(!logs["lines"].as_str().unwrap().is_empty(), "{logs}");

    // The same instance through the API's data plane: its queries, as it reports them.
    let (status, queries) = sys
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/instances/{id}/queries"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{queries}");
    assert_eq!(
        queries["items"],
        json!([{"id": "hot", "status": "Running"}]),
        "{queries}"
    );

    // Follow the query's changes: a snapshot of what the instance holds, then each change.
    let changes = format!("{}/api/v1/instances/{id}/queries/hot/changes", sys.api.url);
    let mut feed = Feed::open(&sys.http, &changes, &[]).await?;
    assert_eq!(feed.status, 200);
    let snapshot = feed.next().await?;
    assert_eq!(snapshot.event, "snapshot", "{snapshot:?}");
    assert_eq!(
        snapshot.data["results"],
        json!([{"id": "s1", "temperature": 91}]),
        "{snapshot:?}"
    );
    let events = format!("/api/v1/instances/{id}/sources/readings/events");
    for event in [
        reading("insert", "s2", 80),
        reading("update", "s2", 95),
        json!({"operation": "delete", "id": "s2", "labels": ["Sensor"]}),
    ] {
        let (status, body) = sys
            .call(reqwest::Method::POST, &events, Some(event.clone()))
            .await;
        assert_eq!(status, 200, "{event}: {body}");
        assert_eq!(body["success"], true, "{event}: {body}");
    }
    let added = feed.next_change().await?;
    assert_eq!(added.event, "change", "{added:?}");
    assert_eq!(
        added.data["added"],
        json!([{"id": "s2", "temperature": 80}]),
        "{added:?}"
    );
    let updated = feed.next_change().await?;
    assert_eq!(updated.event, "change", "{updated:?}");
    assert_eq!(
        updated.data["updated"],
        json!([{"before": {"id": "s2", "temperature": 80}, "after": {"id": "s2", "temperature": 95}}]),
        "{updated:?}"
    );
    let deleted = feed.next_change().await?;
    assert_eq!(deleted.event, "change", "{deleted:?}");
    assert_eq!(
        deleted.data["deleted"],
        json!([{"id": "s2", "temperature": 95}]),
        "{deleted:?}"
    );
    let resume_from = deleted.id.clone().expect("change events carry ids");
    drop(feed);

    // A batch while nobody follows; the results through the API; the feed resumed from the
    // last change seen sends only what was missed.
    let (status, body) = sys
        .call(
            reqwest::Method::POST,
            &format!("{events}/batch"),
            Some(json!({"events": [reading("insert", "s3", 99), reading("insert", "s4", 20)]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = format!("/api/v1/instances/{id}/queries/hot/results");
    let expected = vec![
        json!({"id": "s1", "temperature": 91}),
        json!({"id": "s3", "temperature": 99}),
    ];
    let seen = wait_until(|| async {
        let (status, body) = sys.call(reqwest::Method::GET, &results, None).await;
        (status == 200 && body["queryId"] == "hot" && by_id(&body["items"]) == expected)
            .then_some(())
    })
    .await;
    assert!(
        seen.is_ok(),
        "results through the API never became {expected:?}: {:?}",
        sys.call(reqwest::Method::GET, &results, None).await
    );
    let mut resumed = Feed::open(&sys.http, &changes, &[("last-event-id", &resume_from)]).await?;
    assert_eq!(resumed.status, 200);
    let missed = resumed.next().await?;
    assert_eq!(
        (missed.event.as_str(), &missed.data["added"]),
        ("change", &json!([{"id": "s3", "temperature": 99}])),
        "a resumed feed sends only what was missed: {missed:?}"
    );
    drop(resumed);

    let op = sys
        .succeed(
            reqwest::Method::POST,
            &format!("/api/v1/instances/{id}/stop"),
        )
        .await;
    assert_eq!(
        op["result"]["exitCode"], 0,
        "SIGINT stops the runtime gracefully: {op}"
    );
    // A stopped instance has no data to give: 409 naming its state.
    let (status, body) = sys.call(reqwest::Method::GET, &results, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "instance_not_running", "{body}");
    assert_eq!(body["error"]["details"]["state"], "stopped", "{body}");
    sys.succeed(reqwest::Method::DELETE, &format!("/api/v1/instances/{id}"))
        .await;
    let (status, body) = sys.call(reqwest::Method::GET, &results, None).await;
    assert_eq!(status, 404, "{body}");
    assert!(!docker(&["inspect", &container]).0, "container removed");
    assert!(
        !docker(&["volume", "inspect", &format!("draas-{id}-data")]).0,
        "volume removed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_killed_from_outside_fails_then_restarts_by_policy() -> anyhow::Result<()> {
    let sys = DockerSystem::start().await?;
    let name = format!("t-{}-kill", sys.keys.prefix());
    let id = sys
        .create(
            &name,
            json!({"restartPolicy": {"mode": "on-failure", "initialBackoffMs": 50}}),
        )
        .await;
    assert_eq!(
        sys.call(
            reqwest::Method::POST,
            &format!("/api/v1/instances/{id}/start"),
            None
        )
        .await
        .0,
        200
    );
    let first = sys.instance(&id).await["runtime"]["containerId"].clone();
    assert!(docker(&["kill", &format!("draas-{id}")]).0);
    let back = wait_until(|| async {
        let inst = sys.instance(&id).await;
        (inst["state"] == "running" && inst["runtime"]["containerId"] != first).then_some(inst)
    })
    .await?;
    assert_eq!(back["runtime"]["restarts"], 1, "{back}");
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&sys.redis.url).await?,
        sys.keys.clone(),
    );
    let kinds: Vec<String> = store
        .recent_events(200)
        .await?
        .into_iter()
        .filter(|e| e.event.instance_id.to_string() == id)
        .map(|e| serde_json::to_value(&e.event).unwrap())
        .map(|v| {
            format!(
                "{}:{}",
                v["type"].as_str().unwrap(),
                v["to"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        kinds.contains(&"stateChanged:failed".to_owned()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"restartScheduled:".to_owned()), "{kinds:?}");
    let _ = sys
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/instances/{id}"),
            None,
        )
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_adopts_running_containers() -> anyhow::Result<()> {
    let mut sys = DockerSystem::start().await?;
    let name = format!("t-{}-adopt", sys.keys.prefix());
    let id = sys.create(&name, json!({})).await;
    assert_eq!(
        sys.call(
            reqwest::Method::POST,
            &format!("/api/v1/instances/{id}/start"),
            None
        )
        .await
        .0,
        200
    );
    let container = sys.instance(&id).await["runtime"]["containerId"].clone();

    sys.worker.take().unwrap().crash();
    sys.worker = Some(DockerSystem::worker(&sys.redis, &sys.keys).await?);
    sys.wait_available().await?;
    let (_, running) = docker(&[
        "inspect",
        "-f",
        "{{.Id}} {{.State.Running}}",
        &format!("draas-{id}"),
    ]);
    assert_eq!(
        running,
        format!("{} true", container.as_str().unwrap()),
        "the new worker left the container alone"
    );
    assert_eq!(sys.instance(&id).await["state"], "running");
    // The same container keeps running and is not duplicated; the new worker can restart it.
    sys.succeed(
        reqwest::Method::POST,
        &format!("/api/v1/instances/{id}/restart"),
    )
    .await;
    let (_, count) = docker(&["ps", "-q", "--filter", &format!("name=draas-{id}")]);
    assert_eq!(count.lines().count(), 1, "exactly one container");
    assert_ne!(
        sys.instance(&id).await["runtime"]["containerId"],
        container,
        "restart replaced it"
    );
    let _ = sys
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/instances/{id}"),
            None,
        )
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_the_start_clearly() -> anyhow::Result<()> {
    let sys = DockerSystem::start().await?;
    let name = format!("t-{}-noimage", sys.keys.prefix());
    let id = sys
        .create(&name, json!({"image": "draas-no-such-image:nope"}))
        .await;
    let (status, op) = sys
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/instances/{id}/start"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["state"], "failed", "{op}");
    let message = op["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("draas-no-such-image:nope") && message.contains("not available"),
        "{message}"
    );
    assert_eq!(sys.instance(&id).await["state"], "failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_behind_draas_back_is_reported() -> anyhow::Result<()> {
    let sys = DockerSystem::start().await?;
    let name = format!("t-{}-gone", sys.keys.prefix());
    let id = sys.create(&name, json!({})).await;
    assert_eq!(
        sys.call(
            reqwest::Method::POST,
            &format!("/api/v1/instances/{id}/start"),
            None
        )
        .await
        .0,
        200
    );
    assert!(docker(&["rm", "-f", &format!("draas-{id}")]).0);
    let inst = wait_until(|| async {
        let inst = sys.instance(&id).await;
        (inst["state"] == "failed").then_some(inst)
    })
    .await?;
    let message = inst["runtime"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("removed outside DRaaS") || message.contains("exited"),
        "{inst}"
    );
    // It can be started again: a fresh container.
    sys.succeed(
        reqwest::Method::POST,
        &format!("/api/v1/instances/{id}/start"),
    )
    .await;
    Ok(())
}

/// `persistIndex: true` on the Docker platform: the index lives on the instance's data volume
/// (`/app/data`), so a query's result set and an aggregation survive a stop (the container
/// is removed) and a start (a new container on the same volume), without re-feeding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_index_survives_a_stop_and_start_on_the_data_volume() -> anyhow::Result<()> {
    let sys = DockerSystem::start().await?;
    let config = json!({
        "persistIndex": true,
        "sources": [{"kind": "http", "id": "readings", "durability": {"enabled": true}}],
        "queries": [
            {"id": "hot",
             "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id, s.temperature AS temperature",
             "sources": [{"sourceId": "readings"}]},
            {"id": "total", "query": "MATCH (s:Sensor) RETURN count(s) AS n",
             "sources": [{"sourceId": "readings"}]}
        ],
        "reactions": [{"kind": "log", "id": "log", "queries": ["hot", "total"]}]
    });
    let id = sys.create("persisted", json!({ "config": config })).await;
    let base = format!("/api/v1/instances/{id}");
    sys.succeed(reqwest::Method::POST, &format!("{base}/start"))
        .await;
    for (sensor, t) in [("s1", 80), ("s2", 90)] {
        let (status, body) = sys
            .call(
                reqwest::Method::POST,
                &format!("{base}/sources/readings/events"),
                Some(reading("insert", sensor, t)),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let expected = (
        json!([{"id": "s1", "temperature": 80}, {"id": "s2", "temperature": 90}]),
        json!([{"n": 2}]),
    );
    let state = || async {
        let (s1, hot) = sys
            .call(
                reqwest::Method::GET,
                &format!("{base}/queries/hot/results"),
                None,
            )
            .await;
        let (s2, total) = sys
            .call(
                reqwest::Method::GET,
                &format!("{base}/queries/total/results"),
                None,
            )
            .await;
        (s1 == 200 && s2 == 200).then(|| (json!(by_id(&hot["items"])), total["items"].clone()))
    };
    let fed = wait_until(|| async { state().await.filter(|s| *s == expected) }).await;
    assert!(fed.is_ok(), "never fed: {:?}", state().await);

    sys.succeed(reqwest::Method::POST, &format!("{base}/stop"))
        .await;
    sys.succeed(reqwest::Method::POST, &format!("{base}/start"))
        .await;
    // Running means every component runs: what the queries show now is what they started with.
    let after = wait_until(|| async { state().await }).await?;
    assert_eq!(
        after, expected,
        "the result set and the count survive on the volume"
    );
    Ok(())
}

//! The README walk-through as a test, through the API only: create an instance with an HTTP
//! source and a Cypher query, start it, list its queries, follow the query's changes, post
//! insert/update/delete events, read the results, stop it, delete it. Real Redis, real API
//! and worker (its data plane), real `draas-runtime` process, real HTTP; the test never
//! talks to the instance itself.

mod common;

use common::sse::Feed;
use common::{System, wait_until};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_on_the_process_platform() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("sensors").await;
    assert_eq!(sys.instance(&id).await["state"], "created");

    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["command"], "start");
    let inst = sys.instance(&id).await;
    assert_eq!(inst["state"], "running");
    let pid = inst["runtime"]["pid"].as_u64().expect("pid");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "instance process {pid} is not alive"
    );

    // The instance's queries, as it reports them.
    let (status, queries) = sys.get(&format!("/api/v1/instances/{id}/queries")).await;
    assert_eq!(status, 200, "{queries}");
    assert_eq!(queries["items"][0]["id"], "hot", "{queries}");
    assert_eq!(queries["items"][0]["status"], "Running", "{queries}");

    // Follow the query's changes: a snapshot first (empty), then each change.
    let changes = sys.url(&format!("/api/v1/instances/{id}/queries/hot/changes"));
    let mut feed = Feed::open(&sys.http, &changes, &[]).await?;
    assert_eq!(feed.status, 200);
    let snapshot = feed.next().await?;
    assert_eq!(snapshot.event, "snapshot", "{snapshot:?}");
    assert_eq!(snapshot.data["results"], json!([]), "{snapshot:?}");

    let events = format!("/api/v1/instances/{id}/sources/readings/events");
    let post = |event: Value| {
        let events = events.clone();
        let sys = &sys;
        async move {
            let (status, body) = sys.post_json(&events, &event).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["success"], true, "{body}");
        }
    };
    post(json!({"operation": "insert", "element": {"type": "node", "id": "s1", "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 80}}})).await;
    post(json!({"operation": "update", "element": {"type": "node", "id": "s1", "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 90}}})).await;
    post(json!({"operation": "delete", "id": "s1", "labels": ["Sensor"]})).await;

    // The three changes, in order.
    let added = feed.next_change().await?;
    assert_eq!(added.event, "change", "{added:?}");
    assert_eq!(
        added.data["added"],
        json!([{"id": "s1", "temperature": 80}]),
        "{added:?}"
    );
    let updated = feed.next_change().await?;
    assert_eq!(
        updated.data["updated"],
        json!([{"before": {"id": "s1", "temperature": 80}, "after": {"id": "s1", "temperature": 90}}]),
        "{updated:?}"
    );
    let deleted = feed.next_change().await?;
    assert_eq!(
        deleted.data["deleted"],
        json!([{"id": "s1", "temperature": 90}]),
        "{deleted:?}"
    );
    drop(feed);

    // A batch, then the results through the API.
    let (status, body) = sys
        .post_json(
            &format!("{events}/batch"),
            &json!({"events": [
                {"operation": "insert", "element": {"type": "node", "id": "s2", "labels": ["Sensor"], "properties": {"id": "s2", "temperature": 99}}},
                {"operation": "insert", "element": {"type": "node", "id": "s3", "labels": ["Sensor"], "properties": {"id": "s3", "temperature": 20}}}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = format!("/api/v1/instances/{id}/queries/hot/results");
    wait_until(|| async {
        let (status, body) = sys.get(&results).await;
        (status == 200 && body["items"] == json!([{"id": "s2", "temperature": 99}])).then_some(())
    })
    .await?;

    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let inst = sys.instance(&id).await;
    assert_eq!(inst["state"], "stopped");
    assert_eq!(
        inst["runtime"]["exitCode"], 0,
        "SIGINT stop exits 0: {inst}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived stop"
    );
    // A stopped instance has no data to give: 409 naming its state.
    let (status, body) = sys.get(&results).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "instance_not_running", "{body}");
    assert_eq!(body["error"]["details"]["state"], "stopped", "{body}");

    // Every state change is in the instance's history, in order.
    let events = sys.keys.events();
    let mut conn = sys
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await?;
    let n: usize = redis::cmd("XLEN")
        .arg(&events)
        .query_async(&mut conn)
        .await?;
    assert_eq!(
        n, 4,
        "created→starting→running→stopping→stopped is 4 events"
    );

    let (status, op) = sys.delete(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let (status, _) = sys.get(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, 404);
    let (status, body) = sys.get(&results).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        !sys.worker.data_dir.join("instances").join(&id).exists(),
        "working directory not removed"
    );
    // The name is free again.
    sys.create("sensors").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_the_process_and_events_stream_over_sse() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("restarter").await;
    let mut sse = sys
        .http
        .get(sys.url(&format!("/api/v1/instances/{id}/events")))
        .send()
        .await?;
    assert_eq!(sse.headers()["content-type"], "text/event-stream");

    assert_eq!(
        sys.post(&format!("/api/v1/instances/{id}/start")).await.0,
        200
    );
    let first = sys.instance(&id).await["runtime"]["pid"].as_u64();
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/restart")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let inst = sys.instance(&id).await;
    assert_eq!(inst["state"], "running");
    assert_ne!(
        inst["runtime"]["pid"].as_u64(),
        first,
        "restart must replace the process"
    );

    // created→starting→running, then running→stopping→stopped→starting→running: 6 events.
    let mut seen = Vec::new();
    let mut buf = String::new();
    while seen.len() < 6 {
        let chunk = tokio::time::timeout(common::DEADLINE, sse.chunk())
            .await??
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame = buf[..end].to_owned();
            buf.drain(..end + 2);
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let event: Value = serde_json::from_str(data)?;
                assert_eq!(event["instanceId"], id.as_str());
                seen.push(format!(
                    "{}>{}",
                    event["from"].as_str().unwrap(),
                    event["to"].as_str().unwrap()
                ));
            }
        }
    }
    assert_eq!(
        seen,
        [
            "created>starting",
            "starting>running",
            "running>stopping",
            "stopping>stopped",
            "stopped>starting",
            "starting>running"
        ]
    );
    Ok(())
}

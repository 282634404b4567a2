//! The README walk-through as a test: create an instance with an HTTP source and a Cypher
//! query, start it, post insert/update/delete events to its source, read the results from the
//! instance, stop it, delete it. Real Redis, real worker, real `draas-runtime` process.

mod common;

use common::{System, endpoint, wait_until};
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

    let source = endpoint(&inst, "source:readings");
    let api = endpoint(&inst, "api");
    let http = &sys.http;
    let results = |expected: Value| {
        let url = format!("{api}/api/v1/queries/hot/results");
        async move {
            wait_until(|| {
                let (url, expected) = (url.clone(), expected.clone());
                async move {
                    let body = common::get_json(http, &url).await?;
                    (body["data"] == expected).then_some(())
                }
            })
            .await
        }
    };
    let post = |event: Value| {
        let url = format!("{source}/sources/readings/events");
        async move {
            let resp = http
                .post(url)
                .json(&event)
                .send()
                .await
                .expect("post event");
            assert_eq!(resp.status(), 200);
        }
    };

    post(json!({"operation": "insert", "element": {"type": "node", "id": "s1", "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 80}}})).await;
    post(json!({"operation": "insert", "element": {"type": "node", "id": "s2", "labels": ["Sensor"], "properties": {"id": "s2", "temperature": 20}}})).await;
    results(json!([{"id": "s1", "temperature": 80}])).await?;

    post(json!({"operation": "update", "element": {"type": "node", "id": "s2", "labels": ["Sensor"], "properties": {"id": "s2", "temperature": 90}}})).await;
    let both = wait_until(|| async {
        let body = common::get_json(http, &format!("{api}/api/v1/queries/hot/results")).await?;
        let mut ids: Vec<String> = body["data"]
            .as_array()?
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        (ids == ["s1", "s2"]).then_some(())
    })
    .await;
    assert!(both.is_ok(), "update did not enter the result set");

    post(json!({"operation": "delete", "id": "s1", "labels": ["Sensor"]})).await;
    results(json!([{"id": "s2", "temperature": 90}])).await?;

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

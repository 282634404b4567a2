//! End to end through the real binary: an http source, a Cypher query and a log reaction;
//! insert, update and delete events change the query's result rows; the REST API answers
//! in drasi-server's envelope; SIGINT then stops it with exit 0.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Runtime, TempDir, free_port, pipeline_config, post_event};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn sensor(op: &str, id: &str, temperature: i64) -> Value {
    json!({"operation": op, "element": {"type": "node", "id": id, "labels": ["Sensor"],
        "properties": {"id": id, "temperature": temperature}}})
}

/// Waits until the results of `hot`, sorted by id, equal `expected`.
async fn expect_rows(rt: &Runtime, expected: Value) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = rt.get("/api/v1/queries/hot/results").await?;
        anyhow::ensure!(
            status == 200 && body["success"] == true,
            "bad response {body}"
        );
        let mut rows = body["data"].as_array().cloned().unwrap_or_default();
        rows.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_string());
        if Value::Array(rows.clone()) == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "rows never became {expected} within {WAIT:?}; last: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn insert_update_delete_flow_through_the_query() -> Result<()> {
    let dir = TempDir::new("pipeline");
    let (api_port, source_port) = (free_port(), free_port());
    let mut rt = Runtime::start(
        dir.path(),
        &pipeline_config(api_port, source_port),
        api_port,
    )
    .await?;

    // Health and component listings in the drasi-server shapes.
    let (status, health) = rt.get("/health").await?;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert!(
        health["timestamp"]
            .as_str()
            .is_some_and(|t| t.contains('T')),
        "{health}"
    );
    for (path, id) in [
        ("/api/v1/sources", "sensors"),
        ("/api/v1/queries", "hot"),
        ("/api/v1/reactions", "out"),
    ] {
        let (status, body) = rt.get(path).await?;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["success"], true);
        assert_eq!(body["error"], Value::Null);
        let items = body["data"].as_array().expect("list");
        assert_eq!(items.len(), 1, "{path}: {body}");
        assert_eq!(items[0]["id"], id);
        assert_eq!(items[0]["status"], "Running");
    }
    let (status, query) = rt.get("/api/v1/queries/hot").await?;
    assert_eq!(
        (status, &query["data"]["id"], &query["data"]["status"]),
        (200, &json!("hot"), &json!("Running"))
    );
    let (status, scoped) = rt
        .get("/api/v1/instances/test-instance/queries/hot/results")
        .await?;
    assert_eq!((status, &scoped["data"]), (200, &json!([])));

    // Unknown ids: 404 with the error in the envelope.
    for path in [
        "/api/v1/queries/nope",
        "/api/v1/queries/nope/results",
        "/api/v1/sources/nope",
        "/api/v1/reactions/nope",
        "/api/v1/instances/nope/queries",
    ] {
        let (status, body) = rt.get(path).await?;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["success"], false, "{path}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("nope")),
            "{path}: {body}"
        );
    }

    // Insert: one hot sensor, one cool one.
    post_event(source_port, sensor("insert", "s1", 80)).await?;
    post_event(source_port, sensor("insert", "s2", 60)).await?;
    expect_rows(&rt, json!([{"id": "s1", "temperature": 80}])).await?;

    // Update: s2 heats up and enters; s1 changes value.
    post_event(source_port, sensor("update", "s2", 90)).await?;
    post_event(source_port, sensor("update", "s1", 85)).await?;
    expect_rows(
        &rt,
        json!([{"id": "s1", "temperature": 85}, {"id": "s2", "temperature": 90}]),
    )
    .await?;

    // Update out of range, then delete: the set empties.
    post_event(source_port, sensor("update", "s1", 70)).await?;
    expect_rows(&rt, json!([{"id": "s2", "temperature": 90}])).await?;
    post_event(
        source_port,
        json!({"operation": "delete", "id": "s2", "labels": ["Sensor"]}),
    )
    .await?;
    expect_rows(&rt, json!([])).await?;

    let status = rt.signal_and_wait(Signal::SIGINT, Duration::from_secs(15))?;
    assert_eq!(status.code(), Some(0), "{}", rt.logs());
    assert!(
        rt.logs().contains("[out]"),
        "the log reaction printed changes:\n{}",
        rt.logs()
    );
    Ok(())
}

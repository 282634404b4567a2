//! `persistIndex: true`: draas-runtime keeps its query indexes in RocksDB under the instance's
//! own directory (`data/<id>/index`), so a query's state survives a stop and a start of the
//! instance on the process platform: the result set is there again without re-feeding, and an
//! aggregation goes on counting from where it was. The http source has no bootstrap, so with
//! `persistIndex: false` the same instance starts empty again. Real Redis, API, worker and
//! `draas-runtime`.

mod common;

use common::{System, wait_until};
use serde_json::{Value, json};

fn config(persist: bool) -> Value {
    json!({
        "persistIndex": persist,
        // drasi-lib replays a persistent query's source from its checkpoint, which an http
        // source can do only from its write-ahead log.
        "sources": [{"kind": "http", "id": "readings", "durability": {"enabled": true}}],
        "queries": [
            {"id": "hot",
             "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id, s.temperature AS temperature",
             "sources": [{"sourceId": "readings"}]},
            {"id": "total",
             "query": "MATCH (s:Sensor) RETURN count(s) AS n",
             "sources": [{"sourceId": "readings"}]}
        ],
        "reactions": [{"kind": "log", "id": "log", "queries": ["hot", "total"]}]
    })
}

async fn op(sys: &System, id: &str, what: &str) {
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/{what}")).await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{what}: {op}"
    );
}

async fn sensor(sys: &System, id: &str, sensor: &str, temperature: i64) {
    let event = json!({"operation": "insert", "element": {"type": "node", "id": sensor,
        "labels": ["Sensor"], "properties": {"id": sensor, "temperature": temperature}}});
    let (status, body) = sys
        .post_json(
            &format!("/api/v1/instances/{id}/sources/readings/events"),
            &event,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The `hot` rows as sorted ids, and the `total` count (`None` before it has a row).
async fn state(sys: &System, id: &str) -> Option<(Vec<String>, Option<i64>)> {
    let (status, hot) = sys
        .get(&format!("/api/v1/instances/{id}/queries/hot/results"))
        .await;
    let (status2, total) = sys
        .get(&format!("/api/v1/instances/{id}/queries/total/results"))
        .await;
    if status != 200 || status2 != 200 {
        return None;
    }
    let mut ids: Vec<String> = hot["items"]
        .as_array()?
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    let n = total["items"]
        .as_array()?
        .first()
        .and_then(|r| r["n"].as_i64());
    Some((ids, n))
}

async fn state_becomes(sys: &System, id: &str, ids: &[&str], n: Option<i64>) {
    let expected = (ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), n);
    let seen =
        wait_until(|| async { (state(sys, id).await.as_ref() == Some(&expected)).then_some(()) })
            .await;
    if seen.is_err() {
        let (_, logs) = sys
            .get(&format!("/api/v1/instances/{id}/logs?tail=60"))
            .await;
        panic!(
            "state never became {expected:?}: {:?}\nlogs: {logs}",
            state(sys, id).await
        );
    }
}

/// Feeds two sensors, restarts the instance, and returns what it shows once running again,
/// before anything new is fed.
async fn feed_and_restart(
    sys: &System,
    persist: bool,
) -> (String, Option<(Vec<String>, Option<i64>)>) {
    let (status, created) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": format!("persist-{persist}"), "platform": "process",
                    "config": config(persist)}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    op(sys, &id, "start").await;
    sys.wait_state(&id, "running").await;
    sensor(sys, &id, "s1", 80).await;
    sensor(sys, &id, "s2", 90).await;
    state_becomes(sys, &id, &["s1", "s2"], Some(2)).await;

    op(sys, &id, "stop").await;
    sys.wait_state(&id, "stopped").await;
    op(sys, &id, "start").await;
    sys.wait_state(&id, "running").await;
    // Running means every component is running and the API answers: whatever the queries
    // show now is what they started with.
    let after = wait_until(|| async { state(sys, &id).await.map(Some) })
        .await
        .unwrap_or(None);
    (id, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_persistent_index_keeps_query_state_across_a_restart() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let (id, after) = feed_and_restart(&sys, true).await;
    assert_eq!(
        after,
        Some((vec!["s1".to_owned(), "s2".to_owned()], Some(2))),
        "the result set and the count survive the restart"
    );
    // The aggregation goes on from its persisted state.
    sensor(&sys, &id, "s3", 70).await;
    state_becomes(&sys, &id, &["s1", "s2"], Some(3)).await;
    // The index lives inside the instance's own directory.
    let dirs = index_dirs(&sys.worker.data_dir);
    assert!(
        dirs.iter().any(|d| d.contains(&id)),
        "no data/<id>/index under the worker's directory: {dirs:?}"
    );
    op(&sys, &id, "stop").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_persistent_index_a_restart_starts_empty() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let (id, after) = feed_and_restart(&sys, false).await;
    let (ids, n) = after.expect("the queries answer after the restart");
    assert!(
        ids.is_empty(),
        "nothing survives without persistence: {ids:?}"
    );
    assert!(n.is_none() || n == Some(0), "the count starts over: {n:?}");
    sensor(&sys, &id, "s3", 70).await;
    state_becomes(&sys, &id, &[], Some(1)).await;
    op(&sys, &id, "stop").await;
    Ok(())
}

/// Every `…/data/<x>/index` directory under `dir`.
fn index_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let text = path.to_string_lossy().into_owned();
        if path.file_name().is_some_and(|n| n == "index")
            && path
                .parent()
                .and_then(|p| p.parent())
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "data")
        {
            out.push(text);
        } else {
            out.extend(index_dirs(&path));
        }
    }
    out
}

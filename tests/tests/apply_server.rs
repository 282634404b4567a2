//! The server side of declarative apply, end to end (real Redis, API, process workers and
//! draas-runtime): `PUT /api/v1/instances/{name}` creating, updating and moving an instance
//! toward its `desiredState`, `If-Match` and `ETag`, documents refused naming the field,
//! names in every instance route, and the workers' controller: drift reported once for a crash
//! its restart policy never restarts, and a lost instance started again exactly once by the
//! one controller that holds the lease.

mod common;
#[path = "apply_server/controller.rs"]
mod controller;
#[path = "apply_server/put.rs"]
mod put;

use std::time::Duration;

use common::{System, sensor_config, status_json};
use draas_bus::{Store, connect};
use draas_protocol::{Event, EventKind, InstanceState, Platform};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// An instance document for the process platform.
fn doc(name: &str, desired: &str, config: Value) -> Value {
    json!({
        "apiVersion": "draas.io/v1",
        "kind": "DrasiInstance",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {
            "platform": "process",
            "desiredState": desired,
            "config": config,
            "env": {"GREETING": "hello"},
        }
    })
}

/// `PUT /api/v1/instances/{name}` with an optional `If-Match`.
async fn put(
    sys: &System,
    name: &str,
    body: &Value,
    if_match: Option<&str>,
) -> (u16, HeaderMap, Value) {
    let mut req = sys
        .http
        .put(sys.url(&format!("/api/v1/instances/{name}")))
        .json(body);
    if let Some(tag) = if_match {
        req = req.header("If-Match", tag);
    }
    let resp = req.send().await.expect("request");
    let headers = resp.headers().clone();
    let (status, body) = status_json(resp).await;
    (status, headers, body)
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn error_field(body: &Value) -> &str {
    body["error"]["details"]["field"]
        .as_str()
        .unwrap_or_default()
}

/// The sensor config with another threshold: a changed config.
fn hotter_config() -> Value {
    let mut config = sensor_config();
    config["queries"][0]["query"] = json!(
        "MATCH (s:Sensor) WHERE s.temperature > 80 RETURN s.id AS id, s.temperature AS temperature"
    );
    config
}

async fn store(sys: &System) -> Store {
    Store::new(
        connect::shared(&sys.redis.url).await.unwrap(),
        sys.keys.clone(),
    )
}

/// The instance's events, oldest first.
async fn events(store: &Store, id: &str) -> Vec<Event> {
    store
        .recent_events(2000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.instance_id.to_string() == id)
        .map(|e| e.event)
        .collect()
}

fn moves(events: &[Event], from: InstanceState, to: InstanceState) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StateChanged { from: f, to: t, .. } if f == from && t == to))
        .count()
}

/// Waits until the platform's controller has renewed its lease `n` more times: `n` more looks
/// (a renewal resets the lease's PTTL upwards).
async fn controller_looks(sys: &System, n: usize) {
    let key = sys.keys.converge_lease(Platform::Process);
    let mut conn = sys
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut last: i64 = -2;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    while seen < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the controller renewed its lease only {seen} of {n} times"
        );
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if pttl > last && last >= 0 {
            seen += 1;
        }
        last = pttl;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

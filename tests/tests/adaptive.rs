//! drasi-server's `http-adaptive` reaction end to end: real Redis, the real API and worker,
//! real `draas-runtime`, which runs it as the http reaction with adaptive batching. Events go
//! in through the API's data plane (`…/sources/{s}/events/batch`); a small HTTP receiver on
//! loopback (allowed by the test's egress policy) records what the reaction posts: batches to
//! `{baseUrl}/batch` as `{"batch": [...]}`, together carrying every result change.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{System, runtime_binary, wait_until};
use draas_protocol::egress::EgressPolicy;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the receiver got: method, path, `Authorization`, body.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// An HTTP/1.1 receiver answering every request `200` after `delay` (so result changes pile
/// up while a batch is in flight, as under load).
async fn receiver(delay: Duration) -> anyhow::Result<(u16, Arc<Mutex<Vec<Received>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &log, delay).await;
            });
        }
    });
    Ok((port, seen))
}

/// Serves the requests of one connection (keep-alive, or one per connection through the
/// egress proxy, which says `Connection: close`).
async fn serve(
    mut stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    delay: Duration,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let mut request_line = lines.next().unwrap_or_default().split_whitespace();
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        // Through a proxy the target is absolute (`http://host:port/path`).
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_owned()),
            None => target,
        };
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut rest = buf.split_off(head_end);
        buf.clear();
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
                    read_more(&mut stream, &mut rest).await?;
                    continue;
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&rest[..line_end])
                        .split(';')
                        .next()
                        .unwrap_or("0")
                        .trim(),
                    16,
                )?;
                if rest.len() < line_end + 2 + size + 2 {
                    read_more(&mut stream, &mut rest).await?;
                    continue;
                }
                body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
                rest.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
            buf = rest;
            body
        } else {
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while rest.len() < length {
                read_more(&mut stream, &mut rest).await?;
            }
            buf = rest.split_off(length);
            rest
        };
        log.lock().unwrap().push(Received {
            method,
            path,
            authorization: header("authorization"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        tokio::time::sleep(delay).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
        if close {
            return Ok(());
        }
    }
}

async fn read_more(stream: &mut TcpStream, into: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    anyhow::ensure!(n > 0, "connection closed mid-request");
    into.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Redis, API and worker whose egress policy allows loopback, where the receiver listens.
async fn system() -> anyhow::Result<System> {
    let loopback: EgressPolicy = "127.0.0.1/32".parse()?;
    let (worker_egress, api_egress) = (loopback.clone(), loopback);
    System::start_configured(
        runtime_binary(),
        |w| w.process.egress = worker_egress,
        |a| a.egress = api_egress,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_adaptive_reaction_delivers_result_changes_in_batches() -> anyhow::Result<()> {
    const EVENTS: usize = 20;
    let (port, seen) = receiver(Duration::from_millis(300)).await?;
    let sys = system().await?;
    let config = json!({
        "sources": [{"kind": "http", "id": "readings", "host": "0.0.0.0", "port": 9000}],
        "queries": [{"id": "hot", "queryLanguage": "Cypher",
                     "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id, s.temperature AS temperature",
                     "sources": [{"sourceId": "readings"}]}],
        "reactions": [{
            "kind": "http-adaptive", "id": "batched", "queries": ["hot"],
            "baseUrl": format!("http://127.0.0.1:{port}"), "token": "${INGEST_TOKEN}",
            "timeoutMs": 5000,
            "adaptiveMinBatchSize": 5, "adaptiveMaxBatchSize": 50,
            "adaptiveWindowSize": 50, "adaptiveBatchTimeoutMs": 200,
            "routes": {"hot": {"added": {"url": "/unused", "method": "POST",
                                         "body": "{\"sensor\": {{json after.id}}, \"t\": {{json after.temperature}}}"}}}
        }]
    });
    let (status, created) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "adaptive", "platform": "process", "config": config,
                    "env": {"INGEST_TOKEN": {"value": "t0k3n", "secret": true}}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );

    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            json!({"operation": "insert", "element": {"type": "node", "id": format!("s{i}"),
                "labels": ["Sensor"], "properties": {"id": format!("s{i}"), "temperature": 80 + i}}})
        })
        .collect();
    let (status, body) = sys
        .post_json(
            &format!("/api/v1/instances/{id}/sources/readings/events/batch"),
            &json!({ "events": events }),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");

    let items = |log: &[Received]| -> Vec<Value> {
        log.iter()
            .flat_map(|r| r.body["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let delivered = wait_until(|| async {
        let log = seen.lock().unwrap().clone();
        (items(&log).len() >= EVENTS).then_some(log)
    })
    .await;
    let log = match delivered {
        Ok(log) => log,
        Err(_) => {
            let (_, logs) = sys
                .get(&format!("/api/v1/instances/{id}/logs?tail=60"))
                .await;
            panic!(
                "the receiver never got {EVENTS} items: {:?}\nlogs: {logs}",
                seen.lock().unwrap()
            );
        }
    };
    // Every request is a batch POST to {baseUrl}/batch with the bearer token.
    for r in &log {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/batch"),
            "{r:?}"
        );
        assert_eq!(r.authorization.as_deref(), Some("Bearer t0k3n"), "{r:?}");
        assert!(r.body["batch"].is_array(), "{r:?}");
    }
    // Each item is the route's body template, rendered; all twenty sensors, once each.
    let mut sensors: Vec<String> = items(&log)
        .iter()
        .map(|item| {
            assert!(item["t"].as_i64().is_some_and(|t| t >= 80), "{item}");
            item["sensor"].as_str().unwrap().to_owned()
        })
        .collect();
    sensors.sort();
    let mut expected: Vec<String> = (0..EVENTS).map(|i| format!("s{i}")).collect();
    expected.sort();
    assert_eq!(sensors, expected);
    // Batched: fewer requests than changes, and some request carried several.
    assert!(
        log.len() < EVENTS,
        "{} requests for {EVENTS} changes",
        log.len()
    );
    assert!(
        log.iter()
            .any(|r| r.body["batch"].as_array().is_some_and(|b| b.len() > 1)),
        "{log:?}"
    );

    let (status, _) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_eq!(status, 200);
    Ok(())
}

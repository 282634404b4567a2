//! What one client can cost an API node (real Redis, real HTTP, raw sockets): the per-caller
//! rate limit (429 `rate_limited` with `Retry-After`, allowed again after waiting that long;
//! health probes never limited) and the slow-client timeouts (a client that stalls in its
//! request head, or in its body, is disconnected within the timeout). The body-size limit
//! (413) is covered by `http_contract.rs`.

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::{ApiNode, RedisServer, fresh_keys};
use draas_api::limits::RateLimit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn over_the_rate_limit_is_a_429_with_retry_after_then_allowed_again() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("rate");
    let api = ApiNode::start_tuned(&redis.url, &keys, |c| {
        c.rate_limit = Some(RateLimit {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        })
    })
    .await?;
    let http = reqwest::Client::new();
    let list = format!("{}/api/v1/instances", api.url);
    for n in 0..3 {
        let resp = http.get(&list).send().await?;
        assert_eq!(resp.status(), 200, "request {n} is within the burst");
    }
    let resp = http.get(&list).send().await?;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Health probes carry no caller and are never limited.
    let health = http.get(format!("{}/healthz", api.url)).send().await?;
    assert_eq!(health.status(), 200);
    // Waiting what Retry-After said is enough.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let resp = http.get(&list).send().await?;
    assert_eq!(resp.status(), 200);
    Ok(())
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let remaining = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still connected after {limit:?}; received {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_header_and_slow_body_clients_are_disconnected() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("slow");
    let api = ApiNode::start_tuned(&redis.url, &keys, |c| {
        c.header_read_timeout = Duration::from_secs(1);
        c.body_read_timeout = Duration::from_secs(1);
    })
    .await?;
    let addr = api.url.trim_start_matches("http://").to_owned();

    // Half a header line, then nothing.
    let mut slow = TcpStream::connect(&addr).await?;
    slow.write_all(b"GET /api/v1/instances HTTP/1.1\r\nHost: lo")
        .await?;
    let (_, after) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );

    // A whole head announcing 100 bytes of body, then 4 of them.
    let mut slow = TcpStream::connect(&addr).await?;
    slow.write_all(
        b"POST /api/v1/instances HTTP/1.1\r\nHost: lo\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na",
    )
    .await?;
    let (answer, after) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // A prompt client on the same node is served as usual.
    let resp = reqwest::get(format!("{}/api/v1/instances", api.url)).await?;
    assert_eq!(resp.status(), 200);
    Ok(())
}

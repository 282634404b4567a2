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
    // The bucket refills one a second: on a slow machine a request or two more may pass
    // before the bucket is empty, but not twenty in a row.
    let mut refused = None;
    for _ in 0..20 {
        let resp = http.get(&list).send().await?;
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let resp = refused.expect("a 429 once the burst is spent");
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

#[tokio::test]
async fn a_flood_of_bad_tokens_is_bounded_per_peer_and_not_audited_one_by_one() -> anyhow::Result<()>
{
    let redis = RedisServer::start()?;
    let keys = fresh_keys("failauth");
    let api = ApiNode::start_tuned(&redis.url, &keys, |c| {
        c.auth = draas_api::auth::AuthMode::Tokens;
        c.failed_auth_limit = Some(RateLimit {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(5).unwrap(),
        });
    })
    .await?;
    let store = draas_bus::Store::new(draas_bus::connect::shared(&redis.url).await?, keys.clone());
    let admin = store
        .create_token(
            "default",
            [draas_protocol::auth::Scope::All].into_iter().collect(),
            None,
            None,
        )
        .await?
        .secret;
    let http = reqwest::Client::new();
    let list = format!("{}/api/v1/instances", api.url);
    let (mut unauthorized, mut blocked, mut retry) = (0, 0, 0);
    for _ in 0..40 {
        let resp = http
            .get(&list)
            .bearer_auth("draas_notarealtoken0000000000000000000000000000000000000")
            .send()
            .await?;
        match resp.status().as_u16() {
            401 => unauthorized += 1,
            429 => {
                blocked += 1;
                retry = resp.headers()["retry-after"].to_str()?.parse::<u64>()?;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (5..=10).contains(&unauthorized),
        "{unauthorized} answered 401"
    );
    assert_eq!(unauthorized + blocked, 40);
    assert!(retry >= 1, "Retry-After {retry}");
    // The block holds for the peer, whatever the token; it lifts after Retry-After.
    let resp = http.get(&list).bearer_auth(&admin).send().await?;
    assert_eq!(resp.status(), 429);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = http.get(&list).bearer_auth(&admin).send().await?;
        if resp.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the block never lifted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Only the answered 401s were audited (written in the background), not the blocked flood.
    let deadline = Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let page = store.audit_page(None, 1000).await?;
        if page.items.iter().filter(|e| e.status == 401).count() >= unauthorized {
            break page.items;
        }
        assert!(
            Instant::now() < deadline,
            "audit entries never written: {:?}",
            page.items
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused = entries.iter().filter(|e| e.status == 401).count();
    assert_eq!(refused, unauthorized, "{entries:?}");
    assert!(
        entries.iter().all(|e| e.status != 429),
        "blocked requests are not audited one by one: {entries:?}"
    );
    Ok(())
}

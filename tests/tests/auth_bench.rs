//! What token authentication adds to a request: two API nodes on one Redis, one with
//! `--auth tokens` and one with `--auth none`, measured in the same run, interleaved, 3 rounds:
//! p50 of `GET /api/v1/instances/{id}` and of a command through the bus and a worker and back
//! (`POST /api/v1/platforms/process/ping`). A benchmark, not a test of correctness: run it
//! with `cargo test --release -p draas-tests --test auth_bench -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::{ApiNode, RedisServer, WorkerNode, fresh_keys, runtime_binary, wait_until};
use draas_api::auth::AuthMode;
use draas_bus::{Store, connect};
use draas_protocol::auth::Scope;

const GETS: usize = 3000;
const PINGS: usize = 1000;

async fn p50(http: &reqwest::Client, n: usize, send: impl Fn() -> reqwest::RequestBuilder) -> f64 {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let resp = send().send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let _ = resp.bytes().await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = http;
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[n / 2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run it in release with --ignored --nocapture"]
async fn authentication_overhead() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("authbench");
    let _worker = WorkerNode::start(&redis.url, &keys, runtime_binary()).await?;
    let open = ApiNode::start_tuned(&redis.url, &keys, |c| c.auth = AuthMode::None).await?;
    let guarded = ApiNode::start_tuned(&redis.url, &keys, |c| c.auth = AuthMode::Tokens).await?;
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let token = store
        .create_token("default", [Scope::All].into_iter().collect(), None, None)
        .await?
        .secret;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let created: serde_json::Value = http
        .post(format!("{}/api/v1/instances", open.url))
        .json(&serde_json::json!({"name": "bench", "platform": "process", "config": {}}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap().to_owned();
    wait_until(|| async {
        let v = common::get_json(&http, &format!("{}/api/v1/platforms", open.url)).await?;
        (v["items"][0]["available"] == true).then_some(())
    })
    .await?;

    let (mut get_none, mut get_tokens, mut ping_none, mut ping_tokens) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=3 {
        for (base, bearer, gets, pings) in [
            (&open.url, None, &mut get_none, &mut ping_none),
            (
                &guarded.url,
                Some(&token),
                &mut get_tokens,
                &mut ping_tokens,
            ),
        ] {
            let request = |method: reqwest::Method, path: String| {
                let mut req = http.request(method, format!("{base}{path}"));
                if let Some(token) = bearer {
                    req = req.bearer_auth(token);
                }
                req
            };
            gets.push(
                p50(&http, GETS, || {
                    request(reqwest::Method::GET, format!("/api/v1/instances/{id}"))
                })
                .await,
            );
            pings.push(
                p50(&http, PINGS, || {
                    request(
                        reqwest::Method::POST,
                        "/api/v1/platforms/process/ping".to_owned(),
                    )
                })
                .await,
            );
        }
        println!(
            "round {round}: GET p50 none {:.3} ms, tokens {:.3} ms; ping p50 none {:.3} ms, tokens {:.3} ms",
            get_none[round - 1],
            get_tokens[round - 1],
            ping_none[round - 1],
            ping_tokens[round - 1]
        );
    }
    let (g0, g1) = (median(get_none), median(get_tokens));
    let (p0, p1) = (median(ping_none), median(ping_tokens));
    println!(
        "median of 3: GET /api/v1/instances/{{id}} p50 {g0:.3} ms without auth, {g1:.3} ms with tokens: +{:.3} ms",
        g1 - g0
    );
    println!(
        "median of 3: ping through the bus p50 {p0:.3} ms without auth, {p1:.3} ms with tokens: +{:.3} ms",
        p1 - p0
    );
    Ok(())
}

/// The cost of authenticating one request with a token the node has verified recently (the
/// steady state): SHA-256 of the secret and a map lookup, timed directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run it in release with --ignored --nocapture"]
async fn cached_verification_cost() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("verifybench");
    let store = Store::new(connect::shared(&redis.url).await?, keys);
    let secret = store
        .create_token("default", [Scope::All].into_iter().collect(), None, None)
        .await?
        .secret;
    let verifier = draas_api::auth::verify::Verifier::new(store);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {secret}").parse()?,
    );
    verifier.verify(&headers).await.expect("valid");
    const N: u32 = 200_000;
    let mut per_call = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..N {
            // Within the cache's lifetime every call is a hit, as for a busy client.
            let caller = verifier.verify(&headers).await.expect("valid");
            std::hint::black_box(caller);
        }
        per_call.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(N));
    }
    println!(
        "cached token verification: {:.2} µs per request (median of 3 × {N})",
        median(per_call)
    );
    Ok(())
}

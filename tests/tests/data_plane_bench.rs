//! What the data plane through the API costs against talking to the instance directly, in
//! the same run, 3 rounds, medians reported: ingest with `/events/batch` (100 events per
//! batch, 4 batches in flight; readings below the query's threshold, so the result set stays
//! at its ten seeded rows), the latency `GET …/results` adds (p50 over the direct read),
//! and event posted → change delivered on `/changes` (p50 and p99). Real Redis, API, worker
//! and `draas-runtime`. A benchmark, not a test of correctness: run it with
//! `cargo test --release -p draas-tests --test data_plane_bench -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::System;
use common::sse::Feed;
use futures::StreamExt;
use serde_json::{Value, json};

const BATCHES: usize = 100;
const BATCH: usize = 100;
const IN_FLIGHT: usize = 4;
const GETS: usize = 1000;
const CHANGES: usize = 300;

fn batch(round: &str, b: usize) -> Value {
    let events: Vec<Value> = (0..BATCH)
        .map(|i| {
            let id = format!("{round}-{b}-{i}");
            json!({"operation": "insert", "element": {"type": "node", "id": id, "labels": ["Sensor"], "properties": {"id": id, "temperature": (i % 50) as i64}}})
        })
        .collect();
    json!({ "events": events })
}

/// Events per second posting `BATCHES` batches to `url`, `IN_FLIGHT` at a time.
async fn ingest(http: &reqwest::Client, url: &str, round: &str) -> f64 {
    let bodies: Vec<Vec<u8>> = (0..BATCHES)
        .map(|b| serde_json::to_vec(&batch(round, b)).unwrap())
        .collect();
    let started = Instant::now();
    futures::stream::iter(bodies)
        .map(|body| async move {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let _ = resp.bytes().await;
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    (BATCHES * BATCH) as f64 / started.elapsed().as_secs_f64()
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

/// p50 in ms of `GETS` sequential GETs of `url`.
async fn get_p50(http: &reqwest::Client, url: &str) -> f64 {
    let mut samples = Vec::with_capacity(GETS);
    for _ in 0..GETS {
        let started = Instant::now();
        let resp = http.get(url).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let _ = resp.bytes().await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    percentile(&mut samples, 0.5)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run it in release with --ignored --nocapture"]
async fn data_plane_overhead() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("bench").await;
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(status, 200, "{op}");
    let inst = sys.instance(&id).await;
    let source = common::endpoint(&inst, "source:readings");
    let runtime = common::endpoint(&inst, "api");
    let http = reqwest::Client::new();

    let via_api = sys.url(&format!(
        "/api/v1/instances/{id}/sources/readings/events/batch"
    ));
    let direct = format!("{source}/sources/readings/events/batch");
    let results_api = sys.url(&format!("/api/v1/instances/{id}/queries/hot/results"));
    let results_direct = format!("{runtime}/api/v1/queries/hot/results");
    // Ten rows in the result set, then warm both paths (connections, caches).
    let seed: Vec<Value> = (0..10)
        .map(|i| json!({"operation": "insert", "element": {"type": "node", "id": format!("hot-{i}"), "labels": ["Sensor"], "properties": {"id": format!("hot-{i}"), "temperature": 90}}}))
        .collect();
    let resp = http
        .post(&direct)
        .json(&json!({ "events": seed }))
        .send()
        .await?;
    assert!(resp.status().is_success());
    ingest(&http, &via_api, "warm-a").await;
    ingest(&http, &direct, "warm-d").await;

    let (mut api_eps, mut direct_eps, mut api_get, mut direct_get) =
        (vec![], vec![], vec![], vec![]);
    for round in 0..3 {
        api_eps.push(ingest(&http, &via_api, &format!("a{round}")).await);
        direct_eps.push(ingest(&http, &direct, &format!("d{round}")).await);
        api_get.push(get_p50(&http, &results_api).await);
        direct_get.push(get_p50(&http, &results_direct).await);
    }
    // Event posted through the API → its change on the API's feed.
    let events = sys.url(&format!("/api/v1/instances/{id}/sources/readings/events"));
    let (mut p50s, mut p99s) = (vec![], vec![]);
    for round in 0..3 {
        let changes = sys.url(&format!(
            "/api/v1/instances/{id}/queries/hot/changes?snapshot=false"
        ));
        let mut feed = Feed::open(&http, &changes, &[]).await?;
        let mut samples = Vec::with_capacity(CHANGES);
        for i in 0..CHANGES {
            let sensor = format!("c{round}-{i}");
            let event = json!({"operation": "insert", "element": {"type": "node", "id": sensor, "labels": ["Sensor"], "properties": {"id": sensor, "temperature": 99}}});
            let started = Instant::now();
            let resp = http.post(&events).json(&event).send().await?;
            assert!(resp.status().is_success());
            loop {
                let change = feed.next().await?;
                if change.data["added"][0]["id"] == sensor.as_str() {
                    break;
                }
            }
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        p50s.push(percentile(&mut samples, 0.5));
        p99s.push(percentile(&mut samples, 0.99));
    }

    let (a, d) = (median(api_eps), median(direct_eps));
    let (ga, gd) = (median(api_get), median(direct_get));
    println!("data plane, release build, median of 3 rounds:");
    println!(
        "  ingest /events/batch ({BATCH}/batch, {IN_FLIGHT} in flight): through the API {a:.0} events/s, direct {d:.0} events/s, {:.0} % of direct",
        100.0 * a / d
    );
    println!(
        "  GET results p50: through the API {ga:.3} ms, direct {gd:.3} ms, added {:.3} ms",
        ga - gd
    );
    println!(
        "  event posted → change on /changes through the API: p50 {:.2} ms, p99 {:.2} ms",
        median(p50s),
        median(p99s)
    );
    Ok(())
}

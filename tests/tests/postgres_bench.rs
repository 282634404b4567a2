//! PostgreSQL change → result change: one row of a private PostgreSQL server (logical
//! replication on, `fsync=off`) is updated 1,000 times, one at a time; each time the clock
//! runs from the UPDATE's commit being sent until the runtime's own results endpoint (the
//! instance's `api` endpoint, `GET /api/v1/queries/{q}/results`, polled back to back) shows
//! the new value. p50 and p99 are reported. Real Redis, API, worker and `draas-runtime`.
//! A benchmark, not a test of correctness: run it in release after
//! `cargo build --release -p draas-runtime` with
//! `cargo test --release -p draas-tests --test postgres_bench -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::postgres::PgServer;
use common::{System, runtime_binary, wait_until};
use draas_protocol::egress::EgressPolicy;
use serde_json::{Value, json};

const CHANGES: usize = 1000;
const PASSWORD: &str = "bench-password";

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

/// The value of `n` in the query's only row, from the runtime's results envelope.
fn current(body: &Value) -> Option<i64> {
    body["data"].as_array()?.first()?["n"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run it in release with --ignored --nocapture"]
async fn postgres_change_to_result_latency() -> anyhow::Result<()> {
    let pg = PgServer::start().await?;
    pg.create_app("drasi", PASSWORD, "bench").await?;
    let db = pg.connect("bench", "drasi", PASSWORD).await?;
    db.batch_execute(
        "CREATE TABLE counters (id integer PRIMARY KEY, n integer NOT NULL);
         INSERT INTO counters VALUES (1, 0);
         CREATE PUBLICATION bench_pub FOR TABLE counters;",
    )
    .await?;

    let loopback: EgressPolicy = "127.0.0.1/32".parse()?;
    let (worker_egress, api_egress) = (loopback.clone(), loopback);
    let sys = System::start_configured(
        runtime_binary(),
        |w| w.process.egress = worker_egress,
        |a| a.egress = api_egress,
    )
    .await?;
    let config = json!({
        "sources": [{
            "kind": "postgres", "id": "pg",
            "host": "127.0.0.1", "port": pg.port, "database": "bench",
            "user": "drasi", "password": "${PG_PASSWORD}",
            "tables": ["counters"], "publicationName": "bench_pub", "sslMode": "disable",
            "bootstrapProvider": {"kind": "postgres"}
        }],
        "queries": [{"id": "q", "query": "MATCH (c:counters) RETURN c.id AS id, c.n AS n",
                     "sources": [{"sourceId": "pg"}]}]
    });
    let (status, created) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "pg-bench", "platform": "process", "config": config,
                    "env": {"PG_PASSWORD": {"value": PASSWORD, "secret": true}}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(status, 200, "{op}");
    let inst = sys.wait_state(&id, "running").await;
    let results = format!(
        "{}/api/v1/queries/q/results",
        common::endpoint(&inst, "api")
    );
    let http = reqwest::Client::new();
    wait_until(|| async {
        (current(&common::get_json(&http, &results).await?) == Some(0)).then_some(())
    })
    .await?;
    pg.wait_streaming().await?;

    let update = db
        .prepare("UPDATE counters SET n = $1 WHERE id = 1")
        .await?;
    let mut samples = Vec::with_capacity(CHANGES);
    for i in 1..=CHANGES as i32 {
        let started = Instant::now();
        db.execute(&update, &[&i]).await?;
        loop {
            let body: Value = http.get(&results).send().await?.json().await?;
            if current(&body) == Some(i64::from(i)) {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 30,
                "change {i} never became visible: {body}"
            );
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let total: f64 = samples.iter().sum();
    let (p50, p99) = (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    );
    let max = samples.last().copied().unwrap_or_default();
    println!(
        "postgres row change → result visible on the runtime's results endpoint, {CHANGES} changes:"
    );
    println!(
        "  p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, {:.0} changes/s one at a time",
        CHANGES as f64 / (total / 1000.0)
    );
    Ok(())
}

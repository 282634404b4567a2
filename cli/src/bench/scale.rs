//! `draas bench --scale N[,M…]`: how the API's reads hold up as instance records pile up.
//! For each size, a fresh keyspace and API process: N instances created through the API (not
//! started; 64 in flight) at a measured rate, then `GET /api/v1/instances?limit=100` for the
//! first page, a middle page and a label filter, and `GET` of one instance, each p50/p99; and
//! Redis memory per record beyond its config bytes (`MEMORY USAGE` of one record's keys, and
//! `INFO memory` before/after the N). Sizes side by side show whether reads depend on the total.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use draas_protocol::Keyspace;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::{BenchArgs, forget_keys, spawn_self, stop, summary, wait_for_api};

/// Timed requests per read shape.
const READS: usize = 300;
/// The labels' spread: one instance in ten carries `shard=3`.
const SHARDS: usize = 10;

/// Runs every size of `sizes` and prints the table and the JSON.
pub async fn run(args: &BenchArgs, sizes: &[usize]) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &n in sizes {
        let row = one(args, n).await?;
        eprintln!(
            "{n:>6} records: create {:.0}/s | list first p50 {:.2} ms p99 {:.2} | middle p50 {:.2} p99 {:.2} | label p50 {:.2} p99 {:.2} | get p50 {:.3} p99 {:.3} ms | {:.0} B/record beyond config ({} B one record)",
            row["create_per_s"].as_f64().unwrap_or(0.0),
            row["list_first_ms"]["p50"].as_f64().unwrap_or(0.0),
            row["list_first_ms"]["p99"].as_f64().unwrap_or(0.0),
            row["list_middle_ms"]["p50"].as_f64().unwrap_or(0.0),
            row["list_middle_ms"]["p99"].as_f64().unwrap_or(0.0),
            row["list_label_ms"]["p50"].as_f64().unwrap_or(0.0),
            row["list_label_ms"]["p99"].as_f64().unwrap_or(0.0),
            row["get_ms"]["p50"].as_f64().unwrap_or(0.0),
            row["get_ms"]["p99"].as_f64().unwrap_or(0.0),
            row["memory"]["per_record_beyond_config_bytes"]
                .as_f64()
                .unwrap_or(0.0),
            row["memory"]["one_record_bytes"],
        );
        rows.push(row);
    }
    println!("{}", serde_json::to_string_pretty(&json!({"scale": rows}))?);
    Ok(())
}

/// One size in its own keyspace and API process.
async fn one(args: &BenchArgs, n: usize) -> anyhow::Result<Value> {
    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let scratch = std::env::temp_dir().join(&prefix);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut api = spawn_self(
        &[
            "api",
            "--redis-url",
            &args.redis_url,
            "--prefix",
            &prefix,
            "--listen",
            &listen,
            "--no-rate-limit",
            "--auth",
            "none",
        ],
        None,
        &scratch,
        "api",
        args.metrics,
    )?;
    let url = format!("http://{listen}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.in_flight.max(1))
        .build()?;
    let result = async {
        wait_for_api(&http, &url).await?;
        let mut redis = redis::Client::open(args.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let before = used_memory(&mut redis).await?;
        let (rate, ids, config_bytes) = create_all(&http, &url, n, args.in_flight.max(1)).await?;
        let after = used_memory(&mut redis).await?;
        let keys = Keyspace::new(&prefix);
        let one_id = ids[ids.len() / 2];
        let one_record: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(keys.instance(one_id))
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut redis)
            .await?;
        let middle = middle_cursor(&http, &url, n).await?;
        let first = reads(&http, &format!("{url}/api/v1/instances?limit=100")).await?;
        let middle = reads(
            &http,
            &format!("{url}/api/v1/instances?limit=100&cursor={middle}"),
        )
        .await?;
        let label = reads(
            &http,
            &format!("{url}/api/v1/instances?limit=100&label=shard=3"),
        )
        .await?;
        let get = reads(&http, &format!("{url}/api/v1/instances/{one_id}")).await?;
        let per_record = (after.saturating_sub(before)) as f64 / n as f64;
        anyhow::Ok(json!({
            "records": n,
            "create_per_s": rate,
            "list_first_ms": first,
            "list_middle_ms": middle,
            "list_label_ms": label,
            "get_ms": get,
            "memory": {
                "config_bytes": config_bytes,
                "one_record_bytes": one_record,
                "used_memory_delta_bytes": after.saturating_sub(before),
                "per_record_bytes": per_record,
                "per_record_beyond_config_bytes": per_record - config_bytes as f64,
            },
        }))
    }
    .await;
    stop(&mut api).await;
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(error) = forget_keys(&args.redis_url, &prefix).await {
        eprintln!("could not remove the run's keys ({prefix}:*): {error}");
    }
    result
}

/// The config every record carries (a mock source, a query, a log reaction).
fn config() -> Value {
    json!({
        "sources": [{"id": "sensors", "kind": "mock", "autoStart": true}],
        "queries": [{"id": "hot", "query": "MATCH (s:Sensor) WHERE s.value > 50 RETURN s.id AS id, s.value AS value", "sources": [{"sourceId": "sensors"}]}],
        "reactions": [{"id": "out", "kind": "log", "queries": ["hot"]}],
    })
}

/// Creates `n` instances with `in_flight` callers: the rate, the ids in creation order, and
/// the config's size as JSON.
async fn create_all(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    in_flight: usize,
) -> anyhow::Result<(f64, Vec<uuid::Uuid>, usize)> {
    let config = config();
    let config_bytes = serde_json::to_vec(&config)?.len();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (http, url, next, config) =
            (http.clone(), url.to_owned(), next.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(made);
                }
                let body = json!({
                    "name": format!("scale-{i:06}"),
                    "platform": "process",
                    "labels": {"shard": (i % SHARDS).to_string()},
                    "config": config,
                });
                let resp = http
                    .post(format!("{url}/api/v1/instances"))
                    .json(&body)
                    .send()
                    .await?;
                let status = resp.status();
                let view: Value = resp.json().await?;
                if status != 201 {
                    bail!("create {i}: {status} {view}");
                }
                let id = view["id"]
                    .as_str()
                    .context("a created instance has an id")?;
                made.push((i, id.parse::<uuid::Uuid>()?));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await??);
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok((
        rate,
        all.into_iter().map(|(_, id)| id).collect(),
        config_bytes,
    ))
}

/// The cursor that starts the page in the middle of the list, found by paging through once.
async fn middle_cursor(http: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<String> {
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    while seen < n / 2 {
        let limit = (n / 2 - seen).min(500);
        let mut page = format!("{url}/api/v1/instances?limit={limit}");
        if let Some(c) = &cursor {
            page.push_str(&format!("&cursor={c}"));
        }
        let body: Value = http.get(page).send().await?.json().await?;
        seen += body["items"].as_array().map_or(0, Vec::len);
        cursor = body["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            bail!("the list ended after {seen} of {n} records");
        }
    }
    cursor.context("no middle page")
}

/// [`READS`] sequential GETs of `url` (after a few untimed ones); the latency summary.
async fn reads(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let mut hist = Histogram::<u64>::new(3)?;
    for i in 0..READS + 20 {
        let started = Instant::now();
        let resp = http.get(url).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if status != 200 {
            bail!("GET {url}: {status} {}", String::from_utf8_lossy(&body));
        }
        if i >= 20 {
            hist.record(started.elapsed().as_micros() as u64)?;
        }
    }
    Ok(summary(&hist))
}

/// Redis's `used_memory`.
async fn used_memory(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO memory has no used_memory")
}

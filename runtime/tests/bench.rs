//! Benchmark numbers (printed, never asserted; run with `--ignored --nocapture`): time from
//! exec to the first 200 on `/health`, RSS after start, and events per second through the
//! http source's batch endpoint until they show in the query results.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Runtime, TempDir, free_port, pipeline_config};
use nix::sys::signal::Signal;
use serde_json::json;

#[tokio::test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn report_startup_rss_and_throughput() -> Result<()> {
    const EVENTS: usize = 5000;
    const BATCH: usize = 250;
    let dir = TempDir::new("bench");
    let (api_port, source_port) = (free_port(), free_port());
    let mut rt = Runtime::spawn(dir.path(), &pipeline_config(api_port, source_port), &[])?;
    rt.api = format!("http://127.0.0.1:{api_port}");
    let ready = rt.wait_ready(Duration::from_secs(60)).await?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", rt.child.id()))?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?")
        .to_string();

    let client = reqwest::Client::new();
    let started = Instant::now();
    for chunk in 0..EVENTS / BATCH {
        let events: Vec<_> = (0..BATCH)
            .map(|i| {
                let id = format!("s{}", chunk * BATCH + i);
                json!({"operation": "insert", "element": {"type": "node", "id": id,
                    "labels": ["Sensor"], "properties": {"id": id, "temperature": 100}}})
            })
            .collect();
        let resp = client
            .post(format!(
                "http://127.0.0.1:{source_port}/sources/sensors/events/batch"
            ))
            .json(&json!({"events": events}))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "batch rejected");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = rt.get("/api/v1/queries/hot/results").await?;
        if body["data"].as_array().map(Vec::len) == Some(EVENTS) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "results incomplete");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    println!("exec -> first /health 200: {ready:?}");
    println!(
        "RSS after start: {}",
        rss.trim_start_matches("VmRSS:").trim()
    );
    println!(
        "{EVENTS} events in {elapsed:?}: {:.0} events/s",
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    rt.signal_and_wait(Signal::SIGINT, Duration::from_secs(15))?;
    Ok(())
}

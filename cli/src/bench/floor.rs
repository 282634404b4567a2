//! The physical floor `draas bench` states its latency against: two processes bouncing one
//! message through Redis with blocking reads, one message at a time, exactly the shape of a
//! command and its reply with no work done. This process (A) does `RPUSH q1` then `BLPOP q2`;
//! a child `draas bench --echo Q1,Q2` (B) does `BLPOP q1` then `RPUSH q2`. Same client library
//! and connection kind as the bus, same idle gap between messages as the latency phase.
//! Both sides run as tasks on the runtime's worker threads, as every `draas` command does
//! (`cli/src/main.rs`). Until they did, each side's future ran on the `block_on` thread and
//! every message woke it from another thread, which added a wake-up per side to the floor
//! (0.41 against 0.24 ms on the machine of the README's figures) and to DRaaS's own paths.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use draas_bus::connect;
use hdrhistogram::Histogram;
use redis::AsyncCommands;
use serde_json::Value;

/// What B sends back to end: A pushes it on q1, B answers it and exits.
const STOP: &str = "stop";
/// How long one blocking read waits before it looks again (seconds).
const BLOCK_S: f64 = 5.0;

/// The queue names of one floor run under `prefix`.
pub fn queues(prefix: &str) -> (String, String) {
    (format!("{prefix}:floor:q1"), format!("{prefix}:floor:q2"))
}

/// B: answers every message of `q1` on `q2` until [`STOP`] or `deadline`.
pub async fn echo(url: &str, q1: &str, q2: &str, deadline: Duration) -> anyhow::Result<()> {
    let mut conn = connect::blocking(url).await?;
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        let got: Option<(String, String)> = conn.blpop(q1, BLOCK_S).await?;
        let Some((_, message)) = got else { continue };
        let _: i64 = conn.rpush(q2, &message).await?;
        if message == STOP {
            return Ok(());
        }
    }
    bail!("the floor's echo saw no stop within {deadline:?}")
}

/// A: `n` round trips (after `warmup` untimed ones), `gap` apart; the latency summary.
pub async fn measure(
    url: &str,
    (q1, q2): (&str, &str),
    n: usize,
    warmup: usize,
    gap: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let mut conn = connect::blocking(url).await?;
    let mut hist = Histogram::<u64>::new(3)?;
    for i in 0..warmup + n {
        let started = Instant::now();
        let _: i64 = conn.rpush(q1, i.to_string()).await?;
        let got: Option<(String, String)> = conn.blpop(q2, BLOCK_S).await?;
        got.context("the floor's echo did not answer within 5 s")?;
        if i >= warmup {
            hist.record(started.elapsed().as_micros() as u64)?;
        }
        idle(gap).await;
    }
    let _: i64 = conn.rpush(q1, STOP).await?;
    let _: Option<(String, String)> = conn.blpop(q2, BLOCK_S).await?;
    Ok(hist)
}

/// Waits `gap` between messages, so each one finds the other side idle.
pub async fn idle(gap: Duration) {
    if !gap.is_zero() {
        tokio::time::sleep(gap).await;
    }
}

/// `ours` against the floor: the ratio of the two p50s.
pub fn ratio(ours: &Value, floor: &Value) -> Option<f64> {
    let (a, b) = (ours["p50"].as_f64()?, floor["p50"].as_f64()?);
    (b > 0.0).then(|| a / b)
}

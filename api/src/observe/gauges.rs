//! The stream, worker and instance gauges, read from Redis every [`INTERVAL`] by each API
//! node (only when metrics are on), never per scrape: a timed PING (the Redis connection's
//! round trip), per stream a pipeline of O(1) reads
//! (XLEN, XINFO GROUPS, the XPENDING summary and its oldest entry, through the operator
//! tooling's overview), per platform the live-worker and live-node counts, and one HGETALL of
//! the per-state instance counts that every transition keeps.

use std::time::{Duration, Instant};

use draas_bus::admin::Admin;
use draas_bus::{Store, clock};
use draas_protocol::{InstanceState, Keyspace, Platform};
use draas_telemetry::names;
use tokio_util::sync::CancellationToken;

use crate::App;

/// How often the gauges are read.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Reads the gauges every [`INTERVAL`] until `stop`.
pub fn spawn(app: &App) {
    let admin = Admin::new(app.store.clone(), app.config.worker_ttl);
    let store = app.store.clone();
    let keys = app.config.keys.clone();
    let ttl = app.config.worker_ttl;
    let stop: CancellationToken = app.stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let started = Instant::now();
            // The Redis connection's round trip, as every request of this node sees it.
            match redis::cmd("PING")
                .query_async::<String>(&mut store.conn())
                .await
            {
                Ok(_) => metrics::histogram!(names::REDIS_LATENCY, "op" => "ping")
                    .record(started.elapsed().as_secs_f64()),
                Err(error) => tracing::warn!(message = "redis ping failed", %error),
            }
            if let Err(error) = read_streams(&admin).await {
                tracing::warn!(message = "stream gauges not read", %error);
            }
            if let Err(error) = read_nodes(&store, &keys, ttl).await {
                tracing::warn!(message = "node gauges not read", %error);
            }
            match store.state_counts().await {
                Ok(counts) => record_instances(&counts),
                Err(error) => tracing::warn!(message = "instance gauges not read", %error),
            }
            metrics::histogram!(names::STREAMS_READ).record(started.elapsed().as_secs_f64());
        }
    });
}

async fn read_streams(admin: &Admin) -> Result<(), draas_bus::admin::AdminError> {
    let report = admin.streams(&[]).await?;
    for p in report.platforms {
        let platform = p.platform.as_str();
        metrics::gauge!(names::WORKERS_LIVE, "platform" => platform).set(p.live_workers as f64);
        metrics::gauge!(names::DLQ_LENGTH, "platform" => platform).set(p.dlq_length as f64);
        for s in p.streams {
            let node = s.node.clone().unwrap_or_default();
            let labels = [("platform", platform.to_owned()), ("node", node)];
            metrics::gauge!(names::STREAM_LENGTH, &labels).set(s.length as f64);
            let (pending, lag) = s
                .group
                .as_ref()
                .map_or((0, 0), |g| (g.pending, g.lag.unwrap_or(0)));
            metrics::gauge!(names::STREAM_PENDING, &labels).set(pending as f64);
            metrics::gauge!(names::STREAM_LAG, &labels).set(lag as f64);
            let age = s
                .oldest_pending
                .as_ref()
                .and_then(|o| o.age_ms)
                .unwrap_or(0);
            metrics::gauge!(names::STREAM_OLDEST_PENDING, &labels).set(age as f64 / 1000.0);
        }
    }
    Ok(())
}

/// Nodes whose heartbeat is within the TTL: one ZCOUNT per platform.
async fn read_nodes(
    store: &Store,
    keys: &Keyspace,
    ttl: Duration,
) -> Result<(), redis::RedisError> {
    let since = clock::now().millis().saturating_sub(ttl.as_millis() as u64);
    for platform in Platform::ALL {
        let live: u64 = redis::cmd("ZCOUNT")
            .arg(keys.nodes(platform))
            .arg(since)
            .arg("+inf")
            .query_async(&mut store.conn())
            .await?;
        metrics::gauge!(names::NODES_LIVE, "platform" => platform.as_str()).set(live as f64);
    }
    Ok(())
}

/// Sets `draas_instances{platform,state}` for every platform and state (0 when absent, so a
/// series never vanishes and never goes stale at its last value).
fn record_instances(counts: &std::collections::HashMap<String, i64>) {
    for platform in Platform::ALL {
        for state in InstanceState::ALL {
            let field = format!("{}:{}", platform.as_str(), state.as_str());
            let n = counts.get(&field).copied().unwrap_or(0).max(0);
            metrics::gauge!(names::INSTANCES, "platform" => platform.as_str(), "state" => state.as_str())
                .set(n as f64);
        }
    }
}

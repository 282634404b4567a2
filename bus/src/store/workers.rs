//! Worker heartbeats: a per-platform sorted set of consumer → last beat, plus a hash per worker
//! that expires when beats stop. Liveness is `ZRANGEBYSCORE` over the set: O(log n + live).

use std::collections::HashMap;

use draas_protocol::{Platform, Timestamp};
use redis::AsyncCommands;

use super::Store;
use crate::BusError;
use crate::clock::now;

/// A live worker as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub consumer: String,
    pub platform: Platform,
    pub node: String,
    pub last_heartbeat: Timestamp,
    pub started_at: Option<Timestamp>,
}

impl Store {
    /// Records a heartbeat; the worker counts as live for `ttl_ms` after it.
    pub async fn heartbeat(
        &self,
        platform: Platform,
        consumer: &str,
        node: &str,
        started_at: Timestamp,
        ttl_ms: u64,
    ) -> Result<(), BusError> {
        let now = now().millis();
        let hash = self.keys.worker(platform, consumer);
        redis::pipe()
            .zadd(self.keys.workers(platform), consumer, now)
            .ignore()
            .hset_multiple(
                &hash,
                &[
                    ("node", node.to_owned()),
                    ("started", started_at.millis().to_string()),
                ],
            )
            .ignore()
            .pexpire(&hash, ttl_ms as i64)
            .ignore()
            // Forget members that have been silent for a long time, so the set stays small.
            .zrembyscore(
                self.keys.workers(platform),
                0,
                now.saturating_sub(ttl_ms * 100),
            )
            .ignore()
            .exec_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Removes a worker from the live set (graceful shutdown).
    pub async fn deregister(&self, platform: Platform, consumer: &str) -> Result<(), BusError> {
        redis::pipe()
            .zrem(self.keys.workers(platform), consumer)
            .ignore()
            .del(self.keys.worker(platform, consumer))
            .ignore()
            .exec_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// How many workers of the platform beat within `ttl_ms`.
    pub async fn live_worker_count(
        &self,
        platform: Platform,
        ttl_ms: u64,
    ) -> Result<u64, BusError> {
        let since = now().millis().saturating_sub(ttl_ms);
        Ok(self
            .conn()
            .zcount(self.keys.workers(platform), since, "+inf")
            .await?)
    }

    /// The live workers of a platform, with their details.
    pub async fn live_workers(
        &self,
        platform: Platform,
        ttl_ms: u64,
    ) -> Result<Vec<WorkerInfo>, BusError> {
        let mut conn = self.conn();
        let since = now().millis().saturating_sub(ttl_ms);
        let members: Vec<(String, u64)> = conn
            .zrangebyscore_withscores(self.keys.workers(platform), since, "+inf")
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (consumer, _) in &members {
            pipe.hgetall(self.keys.worker(platform, consumer));
        }
        let details: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(members
            .into_iter()
            .zip(details)
            .map(|((consumer, beat), d)| WorkerInfo {
                consumer,
                platform,
                node: d.get("node").cloned().unwrap_or_default(),
                last_heartbeat: Timestamp(beat),
                started_at: d.get("started").and_then(|s| s.parse().ok()).map(Timestamp),
            })
            .collect())
    }
}

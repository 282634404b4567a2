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
            .zadd(self.keys.nodes(platform), node, now)
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

impl Store {
    /// Records that `instance` is placed on `node`.
    pub async fn place(
        &self,
        platform: Platform,
        node: &str,
        instance: uuid::Uuid,
    ) -> Result<(), BusError> {
        self.conn()
            .sadd::<_, _, ()>(
                self.keys.node_instances(platform, node),
                instance.to_string(),
            )
            .await?;
        Ok(())
    }

    /// Forgets that `instance` is placed on `node`.
    pub async fn unplace(
        &self,
        platform: Platform,
        node: &str,
        instance: uuid::Uuid,
    ) -> Result<(), BusError> {
        self.conn()
            .srem::<_, _, ()>(
                self.keys.node_instances(platform, node),
                instance.to_string(),
            )
            .await?;
        Ok(())
    }

    /// The instances placed on `node`.
    pub async fn placed(
        &self,
        platform: Platform,
        node: &str,
    ) -> Result<Vec<uuid::Uuid>, BusError> {
        let ids: Vec<String> = self
            .conn()
            .smembers(self.keys.node_instances(platform, node))
            .await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Nodes whose last heartbeat is older than `ttl_ms`.
    pub async fn dead_nodes(
        &self,
        platform: Platform,
        ttl_ms: u64,
    ) -> Result<Vec<String>, BusError> {
        let before = now().millis().saturating_sub(ttl_ms);
        Ok(self
            .conn()
            .zrangebyscore(self.keys.nodes(platform), 0, before)
            .await?)
    }

    /// Forgets a dead node once nothing is placed on it any more.
    pub async fn forget_node_if_empty(
        &self,
        platform: Platform,
        node: &str,
    ) -> Result<(), BusError> {
        let placed: u64 = self
            .conn()
            .scard(self.keys.node_instances(platform, node))
            .await?;
        if placed == 0 {
            self.conn()
                .zrem::<_, _, ()>(self.keys.nodes(platform), node)
                .await?;
        }
        Ok(())
    }
}

//! Worker heartbeats: a per-platform sorted set of consumer → last beat, plus a hash per worker
//! (its registration: node, start time, the heartbeat TTL it runs with, and what it
//! advertises: its data-plane address and its workload's kinds) that expires when beats stop. Liveness is `ZRANGEBYSCORE` over the set: O(log n + live).
//!
//! Operator tooling judges each worker by the TTL the worker registered
//! ([`Store::registrations`]), not by a TTL of its own: a worker that beats every second with a
//! 2 s TTL is dead 2 s after its last beat, whatever the tool's default says.

use std::collections::HashMap;

use draas_protocol::capabilities::WorkloadKinds;
use draas_protocol::{Platform, Timestamp};
use redis::AsyncCommands;
use serde::Serialize;

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
    /// Where its data plane listens, when it serves one.
    pub data_plane: Option<String>,
}

/// The registration field holding the heartbeat TTL (ms) a worker runs with.
pub const TTL_FIELD: &str = "ttl";
/// The registration field holding the worker's data-plane address (`http://host:port`), when
/// it serves one.
pub const DATA_FIELD: &str = "data";

/// A live worker that serves the data plane, as the API routes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlane {
    pub consumer: String,
    pub node: String,
    /// The address it advertised (`--data-advertise`), `http://host:port`.
    pub url: String,
    pub last_heartbeat: Timestamp,
}

/// The registration field holding what the worker's workload can run (JSON
/// [`WorkloadKinds`]), when the workload said.
pub const KINDS_FIELD: &str = "kinds";

/// What a live worker advertises in its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    pub consumer: String,
    pub node: String,
    /// Its data-plane address.
    pub data: Option<String>,
    /// What its workload can run; `None` when the workload did not say.
    pub kinds: Option<WorkloadKinds>,
    pub last_heartbeat: Timestamp,
}

/// What a worker puts in its registration besides node, start time and TTL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertised {
    /// Its data-plane address.
    pub data: Option<String>,
    /// What its workload can run.
    pub kinds: Option<WorkloadKinds>,
}

/// Workers read per lookup by [`Store::advertisements`], newest beat first.
const DATA_PLANE_PAGE: isize = 100;

/// Where the TTL a worker was judged by came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TtlSource {
    /// The worker recorded it in its registration.
    Registered,
    /// The worker recorded none (an older version): the caller's fallback.
    Fallback,
    /// The caller asked to judge every worker by one TTL.
    Override,
    /// The registration expired: the beats stopped for longer than the worker's own TTL.
    Expired,
}

/// A worker's registration, judged live or dead by its TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub consumer: String,
    /// `None` once the registration hash has expired (the worker stopped beating).
    pub node: Option<String>,
    pub last_heartbeat: Timestamp,
    /// Milliseconds since the last heartbeat, when judged.
    pub since_heartbeat_ms: u64,
    /// The TTL the worker was judged by (unknown once its registration expired), and where it
    /// came from.
    pub ttl_ms: Option<u64>,
    pub ttl_source: TtlSource,
    pub live: bool,
}

impl Registration {
    /// Why the worker counts as live or dead, for people.
    pub fn explain(&self) -> String {
        let since = self.since_heartbeat_ms;
        let source = match self.ttl_source {
            TtlSource::Registered => "its registered heartbeat TTL",
            TtlSource::Fallback => "the fallback TTL (it registered none)",
            TtlSource::Override => "the TTL given as an override",
            TtlSource::Expired => {
                return format!(
                    "last heartbeat {since} ms ago; its registration expired with its own TTL"
                );
            }
        };
        let verdict = if self.live { "within" } else { "past" };
        let ttl = self.ttl_ms.unwrap_or_default();
        format!("last heartbeat {since} ms ago, {verdict} {source} of {ttl} ms")
    }
}

/// Members of the heartbeat set read per round trip by [`Store::registrations`].
const REGISTRATION_PAGE: isize = 200;

impl Store {
    /// Records a heartbeat; the worker counts as live for `ttl_ms` after it, and says so in its
    /// registration (`ttl`), so tools judge it by the TTL it runs with, and where its data
    /// plane listens (`data`), so API nodes can route to it. One MULTI (every key shares the
    /// platform's hash tag): nobody sees the beat without the registration.
    pub async fn heartbeat(
        &self,
        platform: Platform,
        consumer: &str,
        node: &str,
        started_at: Timestamp,
        ttl_ms: u64,
        advertised: &Advertised,
    ) -> Result<(), BusError> {
        let now = now().millis();
        let hash = self.keys.worker(platform, consumer);
        let mut pipe = redis::pipe();
        match &advertised.data {
            Some(url) => pipe.hset(&hash, DATA_FIELD, url).ignore(),
            None => pipe.hdel(&hash, DATA_FIELD).ignore(),
        };
        match advertised
            .kinds
            .as_ref()
            .and_then(|k| serde_json::to_string(k).ok())
        {
            Some(kinds) => pipe.hset(&hash, KINDS_FIELD, kinds).ignore(),
            None => pipe.hdel(&hash, KINDS_FIELD).ignore(),
        };
        pipe.atomic()
            .zadd(self.keys.workers(platform), consumer, now)
            .ignore()
            .zadd(self.keys.nodes(platform), node, now)
            .ignore()
            .hset_multiple(
                &hash,
                &[
                    ("node", node.to_owned()),
                    ("started", started_at.millis().to_string()),
                    (TTL_FIELD, ttl_ms.to_string()),
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

    /// The live workers of `platform` that serve the data plane, newest heartbeat first; only
    /// those of `node` when given.
    pub async fn data_planes(
        &self,
        platform: Platform,
        node: Option<&str>,
    ) -> Result<Vec<DataPlane>, BusError> {
        Ok(self
            .advertisements(platform)
            .await?
            .into_iter()
            .filter(|a| node.is_none_or(|n| n == a.node))
            .filter_map(|a| {
                Some(DataPlane {
                    url: a.data?,
                    consumer: a.consumer,
                    node: a.node,
                    last_heartbeat: a.last_heartbeat,
                })
            })
            .collect())
    }

    /// What the live workers of `platform` advertise, newest heartbeat first. A registration
    /// hash expires one TTL after its worker's last beat, so every worker returned is live by
    /// its own TTL. Reads the most recently beating workers only (one page), in two round
    /// trips.
    pub async fn advertisements(&self, platform: Platform) -> Result<Vec<Advertisement>, BusError> {
        let mut conn = self.conn();
        let members: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(self.keys.workers(platform))
            .arg("+inf")
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(DATA_PLANE_PAGE)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (consumer, _) in &members {
            pipe.cmd("HMGET")
                .arg(self.keys.worker(platform, consumer))
                .arg("node")
                .arg(DATA_FIELD)
                .arg(KINDS_FIELD);
        }
        let details: Vec<(Option<String>, Option<String>, Option<String>)> =
            pipe.query_async(&mut conn).await?;
        Ok(members
            .into_iter()
            .zip(details)
            .filter_map(|((consumer, beat), (node, data, kinds))| {
                Some(Advertisement {
                    consumer,
                    node: node?,
                    data,
                    kinds: kinds.and_then(|k| serde_json::from_str(&k).ok()),
                    last_heartbeat: Timestamp(beat),
                })
            })
            .collect())
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
                data_plane: d.get(DATA_FIELD).cloned(),
            })
            .collect())
    }
}

impl Store {
    /// Every worker in the platform's heartbeat set, each judged by the TTL it registered;
    /// `fallback_ttl_ms` for one that registered none, `override_ttl_ms` (when given) for all.
    ///
    /// A registration hash expires one TTL after the last beat, so a member whose hash is gone
    /// is dead (the set keeps members far longer, so they can be listed). The set is read a
    /// page at a time; it holds only workers heard from recently (see [`Store::heartbeat`]).
    pub async fn registrations(
        &self,
        platform: Platform,
        fallback_ttl_ms: u64,
        override_ttl_ms: Option<u64>,
    ) -> Result<Vec<Registration>, BusError> {
        let mut conn = self.conn();
        let mut out = Vec::new();
        let mut start = 0isize;
        loop {
            let members: Vec<(String, u64)> = conn
                .zrange_withscores(
                    self.keys.workers(platform),
                    start,
                    start + REGISTRATION_PAGE - 1,
                )
                .await?;
            if members.is_empty() {
                return Ok(out);
            }
            let mut pipe = redis::pipe();
            for (consumer, _) in &members {
                pipe.cmd("HMGET")
                    .arg(self.keys.worker(platform, consumer))
                    .arg("node")
                    .arg(TTL_FIELD);
            }
            let details: Vec<(Option<String>, Option<u64>)> = pipe.query_async(&mut conn).await?;
            let now = now().millis();
            let done = (members.len() as isize) < REGISTRATION_PAGE;
            for ((consumer, beat), (node, ttl)) in members.into_iter().zip(details) {
                let since = now.saturating_sub(beat);
                // Without an override, a registration that expired means the beats stopped.
                let (ttl_ms, ttl_source) = match (override_ttl_ms, &node, ttl) {
                    (Some(ttl), _, _) => (Some(ttl), TtlSource::Override),
                    (None, None, _) => (None, TtlSource::Expired),
                    (None, Some(_), Some(ttl)) => (Some(ttl), TtlSource::Registered),
                    (None, Some(_), None) => (Some(fallback_ttl_ms), TtlSource::Fallback),
                };
                out.push(Registration {
                    consumer,
                    node,
                    last_heartbeat: Timestamp(beat),
                    since_heartbeat_ms: since,
                    ttl_ms,
                    ttl_source,
                    live: ttl_ms.is_some_and(|ttl| since < ttl),
                });
            }
            if done {
                return Ok(out);
            }
            start += REGISTRATION_PAGE;
        }
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

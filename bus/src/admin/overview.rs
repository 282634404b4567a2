//! The streams overview (lengths, group, pending, lag, DLQ size), the consumer list and
//! pruning of dead consumers that hold nothing.
//!
//! Costs: per stream one pipeline of XLEN, EXISTS, XINFO GROUPS (O(groups) = 1), the XPENDING
//! summary (O(consumers)) and XPENDING `- + 1` (O(1)); XINFO CONSUMERS is O(consumers).

use draas_protocol::Platform;
use draas_protocol::keys::WORKER_GROUP;
use redis::Value;
use serde::Serialize;

use super::{
    ActionItem, ActionReport, Admin, AdminError, StreamRef, entry_age_ms, group_exists, info_map,
    value_text, value_u64,
};

/// Everything `ops streams` shows: per platform, its command streams, their consumer groups
/// and the dead-letter queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamsReport {
    pub platforms: Vec<PlatformStreams>,
}

/// One platform's streams.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformStreams {
    pub platform: Platform,
    pub live_workers: u64,
    /// The dead-letter stream's key.
    pub dlq: String,
    pub dlq_length: u64,
    pub streams: Vec<StreamOverview>,
}

/// One command stream.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamOverview {
    /// The stream's key.
    pub stream: String,
    /// The node of a node stream; `null` for the platform stream.
    #[schema(required = true)]
    pub node: Option<String>,
    pub length: u64,
    /// The worker group; `null` while no worker has joined the stream yet.
    #[schema(required = true)]
    pub group: Option<GroupInfo>,
    #[schema(required = true)]
    pub oldest_pending: Option<OldestPending>,
}

/// The worker group of a stream, from XINFO GROUPS.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupInfo {
    pub consumers: u64,
    pub pending: u64,
    pub last_delivered_id: String,
    /// Entries not yet delivered to the group, when the server reports it (7.0+).
    #[schema(required = true)]
    pub lag: Option<u64>,
}

/// The pending entry with the lowest id.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OldestPending {
    pub id: String,
    pub consumer: String,
    /// Since it was appended.
    #[schema(required = true)]
    pub age_ms: Option<u64>,
    /// Since it was last delivered.
    pub idle_ms: u64,
    pub deliveries: u64,
}

/// One consumer of one stream's worker group.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsumerRow {
    pub stream: String,
    #[schema(required = true)]
    pub node: Option<String>,
    pub consumer: String,
    pub pending: u64,
    /// Since its last read attempt.
    pub idle_ms: u64,
    /// Since its last successful read (Redis 7.2+ only).
    #[schema(required = true)]
    pub inactive_ms: Option<u64>,
    /// Whether it belongs to a worker whose heartbeat is current.
    pub live: bool,
}

impl Admin {
    /// The overview of `platforms` (all when empty).
    pub async fn streams(&self, platforms: &[Platform]) -> Result<StreamsReport, AdminError> {
        let platforms = if platforms.is_empty() {
            Platform::ALL.to_vec()
        } else {
            platforms.to_vec()
        };
        let mut report = StreamsReport {
            platforms: Vec::new(),
        };
        for platform in platforms {
            let dlq = self.keys().dead_letters(platform);
            let dlq_length: u64 = redis::cmd("XLEN")
                .arg(&dlq)
                .query_async(&mut self.store.conn())
                .await?;
            let live_workers = self.live_consumers(platform).await?.len() as u64;
            let mut streams = Vec::new();
            for target in self.streams_of(platform).await? {
                streams.push(self.stream_overview(&target).await?);
            }
            report.platforms.push(PlatformStreams {
                platform,
                live_workers,
                dlq,
                dlq_length,
                streams,
            });
        }
        Ok(report)
    }

    async fn stream_overview(&self, target: &StreamRef) -> Result<StreamOverview, AdminError> {
        let stream = target.key(self.keys());
        let mut conn = self.store.conn();
        let length: u64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut conn)
            .await?;
        let mut overview = StreamOverview {
            stream: stream.clone(),
            node: target.node.clone(),
            length,
            group: None,
            oldest_pending: None,
        };
        if !group_exists(&mut conn, &stream).await? {
            return Ok(overview);
        }
        let groups: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await?;
        if let Value::Array(groups) = groups {
            for g in groups.iter().map(info_map) {
                if g.get("name").and_then(value_text).as_deref() != Some(WORKER_GROUP) {
                    continue;
                }
                overview.group = Some(GroupInfo {
                    consumers: value_u64(g.get("consumers")).unwrap_or(0),
                    pending: value_u64(g.get("pending")).unwrap_or(0),
                    last_delivered_id: g
                        .get("last-delivered-id")
                        .and_then(value_text)
                        .unwrap_or_default(),
                    lag: value_u64(g.get("lag")),
                });
            }
        }
        let first: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        overview.oldest_pending = first.ids.into_iter().next().map(|p| OldestPending {
            age_ms: entry_age_ms(&p.id),
            id: p.id,
            consumer: p.consumer,
            idle_ms: p.last_delivered_ms as u64,
            deliveries: p.times_delivered as u64,
        });
        Ok(overview)
    }

    /// Every consumer of every stream of `platform`.
    pub async fn consumers(&self, platform: Platform) -> Result<Vec<ConsumerRow>, AdminError> {
        let live = self.live_consumers(platform).await?;
        let mut rows = Vec::new();
        let mut conn = self.store.conn();
        for target in self.streams_of(platform).await? {
            let stream = target.key(self.keys());
            if !group_exists(&mut conn, &stream).await? {
                continue;
            }
            let reply: Value = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg(WORKER_GROUP)
                .query_async(&mut conn)
                .await?;
            let Value::Array(consumers) = reply else {
                continue;
            };
            for c in consumers.iter().map(info_map) {
                let name = c.get("name").and_then(value_text).unwrap_or_default();
                rows.push(ConsumerRow {
                    stream: stream.clone(),
                    node: target.node.clone(),
                    live: live.contains(&name),
                    consumer: name,
                    pending: value_u64(c.get("pending")).unwrap_or(0),
                    idle_ms: value_u64(c.get("idle")).unwrap_or(0),
                    inactive_ms: value_u64(c.get("inactive")),
                });
            }
        }
        Ok(rows)
    }

    /// Deletes consumers of `platform`'s streams that are not live, hold no pending entries
    /// and have been idle for at least `min_idle_ms`. Pending is checked again right before
    /// each delete ([`Store::leave_group_if_idle`](crate::Store::leave_group_if_idle)):
    /// deleting a consumer drops its pending entries, and that work would be lost.
    pub async fn prune(
        &self,
        platform: Platform,
        min_idle_ms: u64,
        dry_run: bool,
    ) -> Result<Vec<ActionReport>, AdminError> {
        let rows = self.consumers(platform).await?;
        let mut reports: Vec<ActionReport> = Vec::new();
        for row in rows {
            if reports.last().is_none_or(|r| r.stream != row.stream) {
                reports.push(ActionReport::new("prune", &row.stream, dry_run));
            }
            let report = reports.last_mut().expect("pushed above");
            let skip = |why: String| (ActionItem::new(&row.consumer, "kept", why), false, false);
            let (item, matched, changed) = if row.live {
                skip("live worker".into())
            } else if row.pending > 0 {
                skip(format!(
                    "{} pending entries: claim, retry or drop them first",
                    row.pending
                ))
            } else if row.idle_ms < min_idle_ms {
                skip(format!("idle {} ms < {min_idle_ms} ms", row.idle_ms))
            } else if dry_run {
                (
                    ActionItem::new(&row.consumer, "would delete", "not live, 0 pending"),
                    true,
                    false,
                )
            } else if self
                .store
                .leave_group_if_idle(&row.stream, &row.consumer)
                .await?
            {
                (
                    ActionItem::new(&row.consumer, "deleted", "not live, 0 pending"),
                    true,
                    true,
                )
            } else {
                skip("an entry became pending meanwhile".into())
            };
            report.push(item, matched, changed);
        }
        Ok(reports)
    }
}

//! Operator tooling over the streams: what `draas ops` and `/api/v1/admin/…` run.
//!
//! Every function returns plain data (serde-serialisable) and uses only O(1) or paged Redis
//! commands: XLEN, XINFO GROUPS/CONSUMERS, XPENDING (summary and extended, paged with `(id`),
//! XRANGE `id id` or `COUNT`-bounded pages, XCLAIM/XDEL/XACK on given ids. No KEYS, no SCAN,
//! no Lua. Node streams are found through the platform's node index, never by scanning.
//!
//! Safety rules kept here:
//! - Nothing ever re-runs a finished command: re-enqueued entries carry the original payload,
//!   so the same command id meets its operation record and a terminal one answers instead.
//! - A consumer is deleted only when it is not live and has no pending entries (checked again
//!   right before the delete); pending entries are never trimmed.
//! - A worker is live while its last heartbeat is younger than the heartbeat TTL it registered
//!   ([`Store::registrations`](crate::Store::registrations)); the fallback TTL applies only to
//!   workers that registered none, unless the caller overrides the TTL for everyone.
//! - An entry left alone is reported with the reason, counted in the report's `skipped` and
//!   `skipReasons`, never dropped silently.
//! - Everything that changes state has a dry run that reads the same selection and changes
//!   nothing.
//!
//! - [`overview`]: stream overview, consumers, prune.
//! - [`pending`]: pending entries: the decoded, paged list and selections.
//! - [`actions`]: claim, retry and drop pending entries.
//! - [`dlq`]: dead letters: list, show, replay, purge.
//! - [`trim`]: the DLQ by length or age, command streams of acked leftovers.
//! - [`report`]: decoded payloads and action reports.
//! - [`audit`]: pages of the audit stream.

mod actions;
mod audit;
mod dlq;
mod overview;
mod pending;
mod report;
mod trim;

use std::collections::HashMap;
use std::time::Duration;

use draas_protocol::codec::PAYLOAD_FIELD;
use draas_protocol::keys::WORKER_GROUP;
use draas_protocol::{Keyspace, Platform};
use redis::Value;
use redis::streams::StreamId;
use serde::{Deserialize, Serialize};

pub use audit::MAX_AUDIT_PAGE;
pub use dlq::{DeadLetter, DlqPage, DlqSelection};
pub use overview::{
    ConsumerRow, GroupInfo, OldestPending, PlatformStreams, StreamOverview, StreamsReport,
};
pub use pending::{PendingPage, PendingQuery, PendingRow, Selection};
pub use report::{ActionItem, ActionReport, Payload, SkipReason, Skipped};
pub use trim::TrimTarget;

use crate::store::Registration;
use crate::{BusError, Store};

/// Entries read or changed per round trip in bulk operations.
pub const PAGE: usize = 200;

/// At most this many per-entry rows are kept in an [`ActionReport`]; the counts stay exact.
pub const REPORT_ITEMS: usize = 1000;

/// What an operator action could not do, or was asked wrongly.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A request field is wrong; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// The action would be unsafe (a consumer that is not live, a payload that cannot run).
    #[error("{0}")]
    Refused(String),
}

impl From<redis::RedisError> for AdminError {
    fn from(e: redis::RedisError) -> Self {
        AdminError::Bus(BusError::Redis(e))
    }
}

impl AdminError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AdminError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Progress of a bulk operation (a bar in the CLI, nothing elsewhere).
pub trait Progress: Send + Sync {
    /// The number of entries to go through, when known.
    fn total(&self, _total: u64) {}
    /// `n` more entries were handled.
    fn advance(&self, _n: u64) {}
}

/// Reports progress to nobody.
pub struct NoProgress;

impl Progress for NoProgress {}

/// One command stream of a platform: the platform stream, or a node's own stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRef {
    pub platform: Platform,
    pub node: Option<String>,
}

impl StreamRef {
    pub fn platform(platform: Platform) -> Self {
        StreamRef {
            platform,
            node: None,
        }
    }

    /// The stream's key.
    pub fn key(&self, keys: &Keyspace) -> String {
        match &self.node {
            Some(node) => keys.node_commands(self.platform, node),
            None => keys.commands(self.platform),
        }
    }
}

/// Operator actions over one store. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    store: Store,
    fallback_ttl_ms: u64,
    override_ttl_ms: Option<u64>,
}

impl Admin {
    /// Judges each worker by the heartbeat TTL it registered; `fallback_ttl` only for workers
    /// that registered none (versions before the TTL was recorded).
    pub fn new(store: Store, fallback_ttl: Duration) -> Self {
        Admin {
            store,
            fallback_ttl_ms: fallback_ttl.as_millis() as u64,
            override_ttl_ms: None,
        }
    }

    /// Judges every worker by `ttl` instead of the TTL it registered.
    pub fn with_ttl_override(mut self, ttl: Duration) -> Self {
        self.override_ttl_ms = Some(ttl.as_millis() as u64);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn keys(&self) -> &Keyspace {
        self.store.keys()
    }

    /// The platform's workers, each judged live or dead by its own TTL.
    pub async fn registrations(&self, platform: Platform) -> Result<Vec<Registration>, AdminError> {
        Ok(self
            .store
            .registrations(platform, self.fallback_ttl_ms, self.override_ttl_ms)
            .await?)
    }

    /// The platform's workers by consumer name.
    pub(crate) async fn liveness(
        &self,
        platform: Platform,
    ) -> Result<HashMap<String, Registration>, AdminError> {
        Ok(self
            .registrations(platform)
            .await?
            .into_iter()
            .map(|r| (r.consumer.clone(), r))
            .collect())
    }

    /// The names of the platform's live consumers.
    pub async fn live_consumers(&self, platform: Platform) -> Result<Vec<String>, AdminError> {
        Ok(self
            .registrations(platform)
            .await?
            .into_iter()
            .filter(|r| r.live)
            .map(|r| r.consumer)
            .collect())
    }

    /// The platform stream and every node stream of the platform, found through the node
    /// index (paged ZRANGE), never by scanning keys.
    pub async fn streams_of(&self, platform: Platform) -> Result<Vec<StreamRef>, AdminError> {
        let mut refs = vec![StreamRef::platform(platform)];
        let mut start = 0isize;
        loop {
            let nodes: Vec<String> = redis::cmd("ZRANGE")
                .arg(self.keys().nodes(platform))
                .arg(start)
                .arg(start + PAGE as isize - 1)
                .query_async(&mut self.store.conn())
                .await?;
            let done = nodes.len() < PAGE;
            refs.extend(nodes.into_iter().map(|node| StreamRef {
                platform,
                node: Some(node),
            }));
            if done {
                return Ok(refs);
            }
            start += PAGE as isize;
        }
    }

    /// Reads the bodies of `ids` (XRANGE id id each, pipelined); `None` where it is gone.
    async fn bodies(
        &self,
        stream: &str,
        ids: &[String],
    ) -> Result<Vec<Option<StreamId>>, AdminError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XRANGE").arg(stream).arg(id).arg(id);
        }
        let pages: Vec<redis::streams::StreamRangeReply> =
            pipe.query_async(&mut self.store.conn()).await?;
        Ok(pages
            .into_iter()
            .map(|p| p.ids.into_iter().next())
            .collect())
    }

    /// The state of each operation (one pipelined read); `None` where there is no record.
    async fn operation_states(
        &self,
        ids: &[Option<uuid::Uuid>],
    ) -> Result<Vec<Option<String>>, AdminError> {
        let known: Vec<uuid::Uuid> = ids.iter().flatten().copied().collect();
        let mut states = self
            .store
            .operation_fields(&known)
            .await?
            .into_iter()
            .map(|fields| fields.and_then(|mut f| f.remove("state")));
        Ok(ids
            .iter()
            .map(|id| id.and_then(|_| states.next().flatten()))
            .collect())
    }
}

/// The payload bytes of an entry, if it has them.
pub(crate) fn payload_bytes(entry: &StreamId) -> Option<&[u8]> {
    field_bytes(entry, PAYLOAD_FIELD)
}

pub(crate) fn field_bytes<'a>(entry: &'a StreamId, field: &str) -> Option<&'a [u8]> {
    match entry.map.get(field) {
        Some(Value::BulkString(bytes)) => Some(bytes.as_slice()),
        _ => None,
    }
}

pub(crate) fn field_text(entry: &StreamId, field: &str) -> Option<String> {
    field_bytes(entry, field).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Milliseconds since the entry id's timestamp (its age on the stream).
pub fn entry_age_ms(id: &str) -> Option<u64> {
    let ms: u64 = id.split('-').next()?.parse().ok()?;
    Some(crate::clock::now().millis().saturating_sub(ms))
}

/// Checks that `id` looks like a stream entry id (`<ms>-<seq>` or `<ms>`).
pub(crate) fn check_id(field: &'static str, id: &str) -> Result<(), AdminError> {
    let mut parts = id.splitn(2, '-');
    let ms_ok = parts.next().is_some_and(|p| p.parse::<u64>().is_ok());
    let seq_ok = parts.next().is_none_or(|p| p.parse::<u64>().is_ok());
    if ms_ok && seq_ok {
        Ok(())
    } else {
        Err(AdminError::invalid(
            field,
            format!("`{id}` is not a stream entry id (like 1712345678901-0)"),
        ))
    }
}

/// A reply of XINFO as a map (RESP2 flat arrays and RESP3 maps alike).
pub(crate) fn info_map(value: &Value) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    match value {
        Value::Array(items) => {
            for pair in items.chunks(2) {
                if let [k, v] = pair
                    && let Some(k) = value_text(k)
                {
                    out.insert(k, v.clone());
                }
            }
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                if let Some(k) = value_text(k) {
                    out.insert(k, v.clone());
                }
            }
        }
        _ => {}
    }
    out
}

pub(crate) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn value_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => value_text(other)?.parse().ok(),
    }
}

/// Whether the worker group exists on `stream` (a missing stream has none).
pub(crate) async fn group_exists(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<bool, AdminError> {
    let exists: bool = redis::cmd("EXISTS").arg(stream).query_async(conn).await?;
    if !exists {
        return Ok(false);
    }
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await?;
    let Value::Array(groups) = groups else {
        return Ok(false);
    };
    Ok(groups
        .iter()
        .any(|g| info_map(g).get("name").and_then(value_text).as_deref() == Some(WORKER_GROUP)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("ids", "1712345678901-0").is_ok());
        assert!(check_id("ids", "1712345678901").is_ok());
        assert!(check_id("ids", "abc").is_err());
        assert!(check_id("ids", "1-x").is_err());
    }

    #[test]
    fn garbage_payload_is_reported_not_panicked() {
        assert!(matches!(
            Payload::decode(Some(b"not msgpack")),
            Payload::Undecodable { .. }
        ));
        assert_eq!(Payload::decode(None), Payload::Missing);
    }
}

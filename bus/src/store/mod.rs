//! The Redis-backed store: one handle over the shared connection and the keyspace.
//!
//! - [`instances`]: instance records, names and the instance index.
//! - [`labels`]: the label index (per tenant and for every tenant) of label-filtered lists.
//! - [`operations`]: operation records (client view and execution record) and idempotency keys.
//! - [`workers`]: worker heartbeats and liveness.
//! - [`events`]: the events stream.
//! - [`audit`]: the audit stream of API requests.
//! - [`quotas`]: tenant quotas, usage counters and the running set.
//! - [`tokens`]: API tokens (records keyed by the secret's SHA-256).
//! - [`converge`]: the workers' controller: its lease per platform and its marks.

mod audit;
mod converge;
mod events;
mod fused;
mod instances;
mod labels;
mod operations;
mod quotas;
pub mod tokens;
mod workers;

pub use audit::{AuditEntry, AuditPage};
pub use events::EventEntry;
pub use fused::Fused;
pub use instances::{CreateOutcome, StoredInstance, Transition};
pub use operations::{Claim, Remembered};
pub use quotas::{Limit, LimitChange, Quota, QuotaExceeded, TENANT_FIELD, Usage, is_active};
pub use workers::{
    Advertised, Advertisement, DATA_FIELD, DataPlane, KINDS_FIELD, Registration, TTL_FIELD,
    TtlSource, WorkerInfo,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::coalesce::Coalescer;
use crate::connect::Conn;
use draas_protocol::Keyspace;

/// How long a finished operation stays readable unless the worker is told otherwise
/// ([`Store::with_operation_retention`], `draas worker --operation-retention`).
pub const OPERATION_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// The shortest retention an operator may set: twice the API's longest wait (300 s). An API
/// node that answers after its wait without a reply writes the pending record unless one
/// exists ([`Store::record_operation`]); a finished record must still be there then, or the
/// answer would be a pending record for a command that already ran.
pub const MIN_OPERATION_RETENTION_SECS: u64 = 600;

/// The oldest Redis DRaaS runs on: 7.0 (`SET … NX … GET`, the claim of an operation).
pub const MIN_REDIS_VERSION: [u32; 2] = [7, 0];

/// Approximate cap on the events stream (`MAXLEN ~`).
pub const EVENTS_MAXLEN: usize = 100_000;

/// Shared handle to everything DRaaS keeps in Redis. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) conn: Conn,
    keys: Keyspace,
    /// XACKDEL is available (Redis 8.2+); set by [`Store::detect_features`].
    pub(crate) xackdel: Arc<AtomicBool>,
    /// Whether the label index is built, or being built by this process ([`labels`]).
    label_index: Arc<labels::IndexState>,
    /// Batches the acks, claims and finishes made together ([`crate::coalesce`]).
    pub(crate) acker: Coalescer<crate::acks::Acks>,
    pub(crate) claims: Coalescer<operations::Claims>,
    pub(crate) finishes: Coalescer<operations::Finishes>,
    pub(crate) fresh_finishes: Coalescer<fused::FreshFinishes>,
    /// Seconds a finished operation record is kept ([`OPERATION_RETENTION_SECS`] by default).
    retention_secs: u64,
}

impl Store {
    pub fn new(conn: Conn, keys: Keyspace) -> Self {
        Store {
            conn,
            keys,
            xackdel: Arc::default(),
            label_index: Arc::default(),
            acker: Coalescer::default(),
            claims: Coalescer::default(),
            finishes: Coalescer::default(),
            fresh_finishes: Coalescer::default(),
            retention_secs: OPERATION_RETENTION_SECS,
        }
    }

    /// Keeps finished operation records for `secs` (at least
    /// [`MIN_OPERATION_RETENTION_SECS`]) instead of [`OPERATION_RETENTION_SECS`]: records are
    /// about 0.5 KB each, so at a sustained command rate R the operation records hold about
    /// R × retention × 0.5 KB of Redis memory.
    pub fn with_operation_retention(mut self, secs: u64) -> Self {
        self.retention_secs = secs.max(MIN_OPERATION_RETENTION_SECS);
        self
    }

    /// Seconds a finished operation record is kept.
    pub fn operation_retention(&self) -> u64 {
        self.retention_secs
    }

    /// The server's version, from `INFO server`.
    pub async fn server_version(&self) -> Result<Vec<u32>, redis::RedisError> {
        let info: redis::Value = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn())
            .await?;
        // One server answers with its text; a cluster with a map of node → text. A feature
        // counts only if every node has it, so a cluster reports its oldest node.
        let texts: Vec<String> = match info {
            redis::Value::Map(nodes) => nodes
                .into_iter()
                .map(|(_, text)| redis::from_redis_value(text))
                .collect::<Result<_, _>>()?,
            single => vec![redis::from_redis_value(single)?],
        };
        Ok(texts
            .iter()
            .map(|t| parse_version(t))
            .min()
            .unwrap_or_default())
    }

    /// The server's version, refused below [`MIN_REDIS_VERSION`] with an error that says why.
    pub async fn checked_version(&self) -> Result<Vec<u32>, redis::RedisError> {
        let version = self.server_version().await?;
        if version.as_slice() < MIN_REDIS_VERSION.as_slice() {
            let found: Vec<String> = version.iter().map(u32::to_string).collect();
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "Redis is too old",
                format!(
                    "DRaaS needs Redis 7.0 or later (operation records are claimed with `SET … NX … GET`); this server is {}",
                    found.join(".")
                ),
            )));
        }
        Ok(version)
    }

    /// Checks the version ([`Store::checked_version`]) and detects optional server features
    /// (XACKDEL, 8.2+) so newer servers get the better command and older ones still work.
    pub async fn detect_features(&self) -> Result<Vec<u32>, redis::RedisError> {
        let version = self.checked_version().await?;
        self.xackdel
            .store(version.as_slice() >= [8, 2].as_slice(), Ordering::Relaxed);
        Ok(version)
    }

    pub(crate) fn has_xackdel(&self) -> bool {
        self.xackdel.load(Ordering::Relaxed)
    }

    pub fn keys(&self) -> &Keyspace {
        &self.keys
    }

    /// Up to `count` members of the score-0 sorted set `index` after `after` (from the start
    /// when `None`), in lexical order: one `ZRANGE … BYLEX LIMIT`, the cursor paging of every
    /// index.
    pub(crate) async fn lex_page(
        &self,
        index: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, crate::BusError> {
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        Ok(redis::cmd("ZRANGE")
            .arg(index)
            .arg(min)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.conn())
            .await?)
    }

    /// A clone of the shared connection, for callers composing their own pipelines.
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// PING: is Redis reachable?
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(|_| ())
    }
}

/// `redis_version:7.0.15` in an INFO reply → `[7, 0, 15]`.
pub fn parse_version(info: &str) -> Vec<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().split('.').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_compare_as_numbers() {
        let v =
            super::parse_version("# Server\r\nredis_version:8.10.1\r\nredis_mode:standalone\r\n");
        assert_eq!(v, [8, 10, 1]);
        assert!(v.as_slice() >= [8, 2].as_slice());
        assert!(super::parse_version("redis_version:7.0.15").as_slice() < [7, 2].as_slice());
    }
}

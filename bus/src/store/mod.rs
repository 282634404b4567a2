//! The Redis-backed store: one handle over the shared connection and the keyspace.
//!
//! - [`instances`]: instance records, names and the instance index.
//! - [`operations`]: operation records (client view and execution record) and idempotency keys.
//! - [`workers`]: worker heartbeats and liveness.
//! - [`events`]: the events stream.

mod events;
mod instances;
mod operations;
mod workers;

pub use events::EventEntry;
pub use instances::{CreateOutcome, StoredInstance, Transition};
pub use operations::{Claim, Remembered};
pub use workers::WorkerInfo;

use draas_protocol::Keyspace;
use redis::aio::ConnectionManager;

/// How long a finished operation stays readable.
pub const OPERATION_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// Approximate cap on the events stream (`MAXLEN ~`).
pub const EVENTS_MAXLEN: usize = 100_000;

/// Shared handle to everything DRaaS keeps in Redis. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Keyspace,
}

impl Store {
    pub fn new(conn: ConnectionManager, keys: Keyspace) -> Self {
        Store { conn, keys }
    }

    pub fn keys(&self) -> &Keyspace {
        &self.keys
    }

    /// A clone of the shared connection, for callers composing their own pipelines.
    pub fn conn(&self) -> ConnectionManager {
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

//! API configuration: every knob with its default.

use std::time::Duration;

use draas_protocol::Keyspace;

/// Everything the API needs to run.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub redis_url: String,
    pub keys: Keyspace,
    /// This API node's name; its reply stream is keyed by it.
    pub node: String,
    /// How long lifecycle requests wait for completion when `?wait=` is absent.
    pub default_wait: Duration,
    /// The largest `?wait=` accepted.
    pub max_wait: Duration,
    /// A worker whose last heartbeat is older than this counts as dead.
    pub worker_ttl: Duration,
    /// Wait for the command to reach the AOF (WAITAOF 1 0) before answering, when the server
    /// supports it (Redis 7.2+). On older servers this is reported at startup and skipped.
    pub wait_aof: bool,
}

impl ApiConfig {
    pub fn new(redis_url: impl Into<String>) -> Self {
        ApiConfig {
            redis_url: redis_url.into(),
            keys: Keyspace::default(),
            node: format!("api-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            default_wait: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
            worker_ttl: Duration::from_secs(10),
            wait_aof: false,
        }
    }
}

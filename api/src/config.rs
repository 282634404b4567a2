//! API configuration: every knob with its default.

use std::time::Duration;

use draas_protocol::{EgressPolicy, Keyspace};

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
    /// Browser origins (`scheme://host[:port]`) whose requests are served besides same-origin
    /// ones; a request with any other `Origin` header is refused (403). Empty by default.
    pub allowed_origins: Vec<String>,
    /// The largest request body accepted; a larger one is a 413 before it is buffered.
    pub max_body_bytes: usize,
    /// Where instances may connect to: literal outbound URLs of a config are checked against
    /// it when the config is accepted (give the workers the same `--egress`).
    pub egress: EgressPolicy,
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
            allowed_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            egress: EgressPolicy::default(),
        }
    }
}

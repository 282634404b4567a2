//! API configuration: every knob with its default.

use std::time::Duration;

use draas_bus::connect::RedisTarget;
use draas_protocol::image::ImagePolicy;
use draas_protocol::{EgressPolicy, Keyspace};

/// Everything the API needs to run.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Which Redis, and the TLS files for `rediss://`.
    pub redis_url: RedisTarget,
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
    /// Images an instance may name (`--allowed-image`); none by default, so a create or patch
    /// naming `image` is refused (422 naming `image`). Give the workers the same list.
    pub allowed_images: ImagePolicy,
    /// Per-caller request rate limit of this node (`None`: off).
    pub rate_limit: Option<crate::limits::RateLimit>,
    /// Failed authentications (401) one peer address may have before it is answered 429
    /// without further work (`None`: off). With `--no-rate-limit` it is off too.
    pub failed_auth_limit: Option<crate::limits::RateLimit>,
    /// A client must send a whole request head within this, or is disconnected.
    pub header_read_timeout: Duration,
    /// A client must send a whole request body within this, or gets a 408 and is
    /// disconnected.
    pub body_read_timeout: Duration,
    /// Approximate cap on the audit stream (`MAXLEN ~`).
    pub audit_maxlen: usize,
    /// How requests are authenticated. The library's default is `None` (tests and embedding);
    /// `draas api` and `draas up` run with `Tokens`.
    pub auth: crate::auth::AuthMode,
    /// The secret this node presents to workers' data-plane listeners (the workers' own);
    /// `None`: data requests are answered 503 `data_plane_disabled`.
    pub data_secret: Option<draas_protocol::dataplane::DataSecret>,
}

impl ApiConfig {
    pub fn new(redis_url: impl Into<RedisTarget>) -> Self {
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
            allowed_images: ImagePolicy::default(),
            rate_limit: Some(crate::limits::RateLimit::DEFAULT),
            failed_auth_limit: Some(crate::limits::RateLimit::FAILED_AUTH),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            audit_maxlen: 100_000,
            auth: crate::auth::AuthMode::None,
            data_secret: None,
        }
    }
}

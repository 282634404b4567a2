//! The DRaaS REST API (axum). It never touches a platform: every lifecycle request becomes a
//! command on the platform's Redis stream, and the reply comes back through [`dispatch`].
//!
//! Layout:
//! - [`config`]: the `ApiConfig` settings.
//! - [`routes`]: the router and one module per resource.
//! - [`dispatch`]: request/reply over the bus (one reply reader per node).
//! - [`feed`]: the live event feed behind the SSE endpoints.
//! - [`dataplane`]: data requests forwarded to the worker that owns the instance.
//! - [`body`]: JSON bodies whose errors name the field.
//! - [`guard`]: the middleware every request passes: URI length, `Origin`, body size and
//!   media type, path encoding; every error response in the error shape.
//! - [`error`]: `ApiError`, the single mapping to HTTP.
//! - [`audit`]: the audit trail of mutating and refused requests (a background writer).
//! - [`limits`]: the per-caller rate limit and the slow-client timeouts.
//! - [`kinds`]: a config's kinds against what the live workers' workloads advertise.
//! - [`quota`]: tenant quotas at create, patch and start (409 `quota_exceeded`).
//! - [`openapi`]: the OpenAPI document generated from the code, and its reference page.
//!
//! Entry point: [`App::connect`] then [`serve`].

pub mod audit;
pub mod auth;
pub mod body;
pub mod config;
pub mod dataplane;
pub mod dispatch;
pub mod error;
pub mod feed;
pub mod guard;
pub mod kinds;
pub mod limits;
pub mod observe;
pub mod openapi;
pub mod quota;
pub mod routes;

use std::future::Future;
use std::sync::Arc;

use draas_bus::store::EventEntry;
use draas_bus::{Store, connect};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use config::ApiConfig;
pub use error::{ApiError, ApiResult};

/// Shared state of one API node.
#[derive(Clone)]
pub struct App {
    pub config: Arc<ApiConfig>,
    pub store: Store,
    pub dispatcher: Arc<dispatch::Dispatcher>,
    pub events: broadcast::Sender<EventEntry>,
    /// Cancelled when the node shuts down; long-lived responses end with it.
    pub stop: CancellationToken,
    /// How requests are authenticated (`config.auth`), with this node's token cache.
    pub auth: auth::Authenticator,
    /// This node's audit writer.
    pub audit: audit::Recorder,
    /// This node's per-caller rate limiter.
    pub limiter: limits::rate::Limiter,
    /// This node's way to the workers' data planes.
    pub data: Arc<dataplane::Forwarder>,
}

impl App {
    /// Connects to Redis and starts this node's reply reader and event feed.
    pub async fn connect(config: ApiConfig) -> Result<Self, redis::RedisError> {
        let store = Store::new(
            connect::shared(&config.redis_url).await?,
            config.keys.clone(),
        );
        let stop = CancellationToken::new();
        let mut config = config;
        store.checked_version().await?;
        if config.wait_aof && connect::is_cluster(&config.redis_url) {
            // WAITAOF waits on the node it is sent to; a cluster would route it to any node.
            tracing::warn!(
                message = "WAITAOF is not used with a Redis Cluster; commands are acknowledged without it"
            );
            config.wait_aof = false;
        }
        if config.wait_aof && !supports_waitaof(&store).await? {
            tracing::warn!(
                message = "WAITAOF needs Redis 7.2+; commands are acknowledged without it"
            );
            config.wait_aof = false;
        }
        // A user without the least-privilege rule is refused here, in one line.
        draas_bus::acl::check(&config.redis_url, &config.keys, config.wait_aof).await?;
        let dispatcher = dispatch::Dispatcher::start(
            store.clone(),
            &config.redis_url,
            &config.node,
            config.worker_ttl,
            config.wait_aof,
            stop.clone(),
        )
        .await?;
        let events = feed::start(store.clone(), &config.redis_url, stop.clone()).await?;
        let auth = match config.auth {
            auth::AuthMode::Tokens => {
                auth::Authenticator::Tokens(Arc::new(auth::verify::Verifier::new(store.clone())))
            }
            auth::AuthMode::None => auth::Authenticator::None,
        };
        let audit = audit::Recorder::start(store.clone(), config.audit_maxlen, stop.clone());
        let limiter = limits::rate::Limiter::new(config.rate_limit);
        let data = Arc::new(dataplane::Forwarder::new(config.data_secret.clone()));
        let app = App {
            audit,
            limiter,
            data,
            config: Arc::new(config),
            store,
            dispatcher,
            events,
            stop,
            auth,
        };
        if draas_telemetry::Metrics::installed().is_some() {
            observe::gauges::spawn(&app);
        }
        // Records older than the label index get indexed in the background (at once when
        // there are none); label-filtered lists read the id index until then.
        app.store.start_label_index();
        Ok(app)
    }
}

async fn supports_waitaof(store: &Store) -> Result<bool, redis::RedisError> {
    Ok(store.server_version().await?.as_slice() >= [7, 2].as_slice())
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes open requests.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = app.stop.clone();
    let app_header_timeout = app.config.header_read_timeout;
    let router = routes::router(app);
    // Cancelling `stop` first ends the SSE streams, so graceful shutdown is not held open by them.
    let shutdown = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    };
    let result = limits::conn::serve(listener, router, app_header_timeout, shutdown).await;
    stop.cancel();
    result
}

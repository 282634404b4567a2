//! The worker's data-plane listener (`--data-listen`): API nodes forward the data requests of
//! this worker's instances here (queries, results, the change feed, source events), and the
//! worker reaches the instance where only it can: loopback for process instances and Docker
//! ports, the in-cluster Service for Kubernetes. Instances keep listening only there.
//!
//! Only API nodes get in: every request presents the shared secret
//! ([`draas_protocol::dataplane::DataSecret`]). An instance is served only if it belongs to
//! this worker's platform and, for node-bound platforms (process), to this worker's node.
//!
//! - [`forward`]: the requests to the instance and the shaping of its answers.

mod forward;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use draas_protocol::dataplane::{DataRoute, DataSecret};
use draas_protocol::drasi::QueryLookup;
use draas_protocol::{Instance, InstanceState};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::driver::Driver;
use crate::lifecycle::Ctx;

/// Settings of the data-plane listener.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Where it listens (`--data-listen`); port 0 takes a free port.
    pub listen: SocketAddr,
    /// The address API nodes should use, `http://host:port` (`--data-advertise`); the bound
    /// address when `None`.
    pub advertise: Option<String>,
    /// What API nodes present.
    pub secret: DataSecret,
}

/// What the listener's handlers share.
pub(crate) struct Plane<D> {
    ctx: Arc<Ctx<D>>,
    secret: DataSecret,
    client: reqwest::Client,
}

type Shared<D> = Arc<Plane<D>>;

/// Binds the listener; returns it with the address to advertise.
pub(crate) async fn bind(config: &DataPlaneConfig) -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(config.listen).await?;
    let advertise = match &config.advertise {
        Some(url) => url.clone(),
        None => format!("http://{}", listener.local_addr()?),
    };
    Ok((listener, advertise))
}

/// Serves the data plane on `listener` until `shutdown` resolves. Open streams end with it.
pub(crate) async fn serve<D: Driver>(
    listener: TcpListener,
    ctx: Arc<Ctx<D>>,
    secret: DataSecret,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let plane = Arc::new(Plane {
        ctx,
        secret,
        client: forward::client(),
    });
    let router = Router::new()
        .route(
            "/data/v1/instances/{id}/queries",
            get(|s: State<Shared<D>>, Path(id): Path<String>| async move {
                handle(s.0, &id, DataRoute::Queries, Forwarded::default()).await
            }),
        )
        .route(
            "/data/v1/instances/{id}/queries/{query}/results",
            get(
                |s: State<Shared<D>>, Path((id, q)): Path<(String, String)>| async move {
                    handle(s.0, &id, DataRoute::Results(q), Forwarded::default()).await
                },
            ),
        )
        .route(
            "/data/v1/instances/{id}/queries/{query}/changes",
            get(
                |s: State<Shared<D>>,
                 Path((id, q)): Path<(String, String)>,
                 Query(params): Query<std::collections::HashMap<String, String>>,
                 headers: HeaderMap| async move {
                    let forwarded = Forwarded {
                        query: params.get("snapshot").map(|v| format!("snapshot={v}")),
                        headers,
                        body: None,
                    };
                    handle(s.0, &id, DataRoute::Changes(q), forwarded).await
                },
            ),
        )
        .route(
            "/data/v1/instances/{id}/sources/{source}/events",
            post(
                |s: State<Shared<D>>, Path((id, src)): Path<(String, String)>, req: Request| async move {
                    let (parts, body) = req.into_parts();
                    let forwarded = Forwarded { query: None, headers: parts.headers, body: Some(body) };
                    handle(s.0, &id, DataRoute::Event(src), forwarded).await
                },
            ),
        )
        .route(
            "/data/v1/instances/{id}/sources/{source}/events/batch",
            post(
                |s: State<Shared<D>>, Path((id, src)): Path<(String, String)>, req: Request| async move {
                    let (parts, body) = req.into_parts();
                    let forwarded = Forwarded { query: None, headers: parts.headers, body: Some(body) };
                    handle(s.0, &id, DataRoute::Batch(src), forwarded).await
                },
            ),
        )
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "not_found", "no such data-plane route".into(), Value::Null) })
        .layer(middleware::from_fn_with_state(plane.clone(), authenticate::<D>))
        .with_state(plane);
    accept(listener, router, shutdown).await
}

/// Serves each connection in a task owned by this future: when the worker goes (or
/// `shutdown` resolves), every open connection, change feeds included, ends with it, and
/// API nodes tell their clients the stream broke.
async fn accept(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let builder = Builder::new(TokioExecutor::new());
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(message = "data plane: accept failed", %error);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        connections.spawn(async move {
            let served = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(message = "data plane: connection ended with an error", %error);
            }
        });
    }
}

/// What a data request carries on to the instance besides its route.
#[derive(Default)]
pub(crate) struct Forwarded {
    /// The query string for the instance (`snapshot=false`).
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Option<Body>,
}

/// Refuses every request that does not present the secret, before any work.
async fn authenticate<D: Driver>(
    State(plane): State<Shared<D>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !plane.secret.admits(presented) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the data plane serves API nodes only: present the data-plane secret".into(),
            Value::Null,
        );
    }
    next.run(request).await
}

/// An error in the API's error shape, so API nodes pass it on as it is.
pub(crate) fn refuse(status: StatusCode, code: &str, message: String, details: Value) -> Response {
    let body = json!({"error": {"code": code, "message": message, "details": details}});
    (status, axum::Json(body)).into_response()
}

/// Checks the instance is this worker's to serve and running, finds where the route goes on
/// it, and forwards.
async fn handle<D: Driver>(
    plane: Shared<D>,
    id: &str,
    route: DataRoute,
    forwarded: Forwarded,
) -> Response {
    let instance = match owned_instance(&plane, id).await {
        Ok(instance) => instance,
        Err(response) => return response,
    };
    let config = &instance.spec.config;
    let target = match &route {
        DataRoute::Queries => Target::Bases(config.api_bases()),
        DataRoute::Results(q) | DataRoute::Changes(q) => match config.query_api_base(q) {
            QueryLookup::Found(base) => Target::Query(base),
            QueryLookup::Unknown => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    "query_not_found",
                    format!("instance {} has no query `{q}`", instance.id),
                    json!({"query": q}),
                );
            }
            QueryLookup::Unaddressable { index } => {
                return refuse(
                    StatusCode::CONFLICT,
                    "query_unaddressable",
                    format!(
                        "query `{q}` lives in config.instances[{index}], which has no id; give \
                         that instance an id to reach its queries"
                    ),
                    json!({"query": q, "field": format!("config.instances[{index}].id")}),
                );
            }
        },
        DataRoute::Event(s) | DataRoute::Batch(s) => match config.source_kind(s) {
            Some("http") => Target::Source,
            Some(kind) => {
                return refuse(
                    StatusCode::CONFLICT,
                    "source_not_http",
                    format!(
                        "source `{s}` is a `{kind}` source; events are posted only to http sources"
                    ),
                    json!({"source": s, "kind": kind}),
                );
            }
            None => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    "source_not_found",
                    format!("instance {} has no source `{s}`", instance.id),
                    json!({"source": s}),
                );
            }
        },
    };
    forward::forward(&plane, &instance, &route, target, forwarded).await
}

/// Where on the instance a route goes.
pub(crate) enum Target {
    /// Every addressable drasi instance's API prefix (the query list).
    Bases(Vec<String>),
    /// The API prefix that serves the query.
    Query(String),
    /// An http source's listener.
    Source,
}

/// The instance, if it exists, belongs to this worker (its platform and, for node-bound
/// platforms, its node) and runs; otherwise the refusal.
async fn owned_instance<D: Driver>(plane: &Plane<D>, id: &str) -> Result<Instance, Response> {
    let ctx = &plane.ctx;
    let Ok(id) = id.parse::<Uuid>() else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("`{id}` is not a valid instance id"),
            json!({"field": "id"}),
        ));
    };
    let stored = ctx.store.instance(id).await.map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the worker cannot read the instance: {e}"),
            Value::Null,
        )
    })?;
    let Some(stored) = stored else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "instance_not_found",
            format!("instance {id} does not exist"),
            json!({"instance": id}),
        ));
    };
    let instance = stored.instance;
    if instance.spec.platform != ctx.platform {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "foreign_instance",
            format!(
                "instance {id} runs on the {} platform; this worker serves {}",
                instance.spec.platform, ctx.platform
            ),
            json!({"instance": id, "platform": instance.spec.platform}),
        ));
    }
    let node = instance.runtime.node.as_deref();
    if ctx.driver.node_bound() && node != Some(ctx.node.as_str()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "foreign_instance",
            format!(
                "instance {id} runs on node {}; this worker is node {}",
                node.unwrap_or("(none)"),
                ctx.node
            ),
            json!({"instance": id, "node": node}),
        ));
    }
    if instance.state != InstanceState::Running {
        return Err(refuse(
            StatusCode::CONFLICT,
            "instance_not_running",
            format!("instance {id} is {}, not running", instance.state),
            json!({"instance": id, "state": instance.state}),
        ));
    }
    Ok(instance)
}

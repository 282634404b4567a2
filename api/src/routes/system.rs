//! Health, readiness, platforms and workers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use draas_protocol::Platform;
use serde_json::{Value, json};

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getHealth",
    tag = "system",
    summary = "Liveness: the process is up",
    responses((status = 200, description = "Always `{\"status\": \"ok\"}`.",
        body = crate::openapi::schemas::Health, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Redis is reachable.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "getReadiness",
    tag = "system",
    summary = "Readiness: Redis answers",
    responses(
        (status = 200, description = "Ready.", body = crate::openapi::schemas::Health,
            example = json!({"status": "ready"})),
        (status = 503, description = "Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn readyz(State(app): State<App>) -> impl IntoResponse {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(e) => ApiError::Unavailable(format!("redis is unreachable: {e}")).into_response(),
    }
}

/// Per platform: whether a live worker exists, how many, and (to cluster administrators,
/// whom every tenant's activity concerns) how many instances it has.
#[utoipa::path(
    get,
    path = "/api/v1/platforms",
    operation_id = "listPlatforms",
    tag = "system",
    summary = "Platforms and whether a live worker serves each",
    responses((status = 200, description = "Every platform, available or not.",
        body = crate::openapi::schemas::PlatformList,
        example = json!({"items": [{"platform": "process", "available": true, "workers": 1},
            {"platform": "docker", "available": false, "workers": 0},
            {"platform": "kubernetes", "available": false, "workers": 0}]}))),
)]
pub async fn platforms(State(app): State<App>, caller: Caller) -> ApiResult<Json<Value>> {
    let ttl = app.config.worker_ttl.as_millis() as u64;
    let counts = app.store.instance_counts().await?;
    let mut items = Vec::new();
    for platform in Platform::ALL {
        let workers = app.store.live_worker_count(platform, ttl).await?;
        let mut item = json!({
            "platform": platform,
            "available": workers > 0,
            "workers": workers,
        });
        if caller.is_cluster_admin() {
            item["instances"] = json!(counts.get(platform.as_str()).copied().unwrap_or(0).max(0));
        }
        items.push(item);
    }
    Ok(Json(json!({ "items": items })))
}

/// Live workers with their heartbeat times.
#[utoipa::path(
    get,
    path = "/api/v1/workers",
    operation_id = "listWorkers",
    tag = "system",
    summary = "Live workers",
    responses((status = 200, description = "Every worker whose heartbeat is current.",
        body = crate::openapi::schemas::WorkerList)),
)]
pub async fn workers(State(app): State<App>) -> ApiResult<Json<Value>> {
    let ttl = app.config.worker_ttl.as_millis() as u64;
    let mut items = Vec::new();
    for platform in Platform::ALL {
        for w in app.store.live_workers(platform, ttl).await? {
            items.push(json!({
                "consumer": w.consumer,
                "platform": w.platform,
                "node": w.node,
                "lastHeartbeatAt": w.last_heartbeat,
                "startedAt": w.started_at,
                "dataPlane": w.data_plane,
            }));
        }
    }
    Ok(Json(json!({ "items": items })))
}

/// `POST /api/v1/platforms/{platform}/ping`: a Ping command through the bus, answered by any
/// live worker of the platform. It has no side effects; health checks and benchmarks use it.
#[utoipa::path(
    post,
    path = "/api/v1/platforms/{platform}/ping",
    operation_id = "pingPlatform",
    tag = "system",
    summary = "A no-op command through the bus, answered by a live worker",
    params(
        ("platform" = Platform, Path, description = "The platform whose workers answer."),
        crate::openapi::params::WaitQuery,
    ),
    responses(
        (status = 200, description = "A worker answered: the finished operation.",
            body = draas_protocol::Operation,
            headers(("Location" = String, description = "The operation's URL."))),
        (status = 202, description = "No answer within `wait`: the pending operation.",
            body = draas_protocol::Operation,
            headers(("Location" = String, description = "The operation's URL."))),
        (status = 400, description = "An unknown platform (`invalid_platform`) or a bad \
            `wait` (`invalid_query`).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "No live worker of the platform, or Redis cannot be \
            reached (`unavailable`).", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn ping(
    State(app): State<App>,
    axum::extract::Path(platform): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let platform = Platform::parse(&platform).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_platform",
            format!("unknown platform `{platform}`; use process, docker or kubernetes"),
            Some("platform".into()),
        )
    })?;
    let wait = super::lifecycle::wait_param(&app, &q)?;
    let stream = app.dispatcher.route(platform, None).await?;
    let request =
        crate::dispatch::Request::new(stream, platform, None, draas_protocol::Command::Ping, wait);
    let submitted = app.dispatcher.submit(request).await?;
    Ok(super::lifecycle::respond(submitted.operation(wait).await?))
}

//! The router: every route of the API, one module per resource.
//!
//! - [`instances`]: create, list, read, patch.
//! - [`lifecycle`]: start, stop, restart, delete: commands with a wait.
//! - [`operations`]: durable operation records.
//! - [`system`]: health, readiness, platforms, workers.
//! - [`events`]: Server-Sent Events of state changes.
//! - [`admin`]: operator actions on streams, pending entries and dead letters.

mod admin;
mod events;
mod instances;
mod lifecycle;
mod operations;
mod system;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Router, middleware};

use crate::error::ApiError;
use crate::{App, auth, guard};

/// Builds the full router. Every route and the fallback sit behind [`guard`], which also
/// reshapes the framework's own error responses (405, rejections) into the error body.
pub fn router(app: App) -> Router {
    let policy = guard::Policy::new(&app.config);
    let max_body = app.config.max_body_bytes;
    let routes = Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/api/v1/platforms", get(system::platforms))
        .route("/api/v1/workers", get(system::workers))
        .route("/api/v1/platforms/{platform}/ping", post(system::ping))
        .route(
            "/api/v1/instances",
            post(instances::create).get(instances::list),
        )
        .route(
            "/api/v1/instances/{id}",
            get(instances::get)
                .patch(instances::patch)
                .delete(lifecycle::delete),
        )
        .route("/api/v1/instances/{id}/start", post(lifecycle::start))
        .route("/api/v1/instances/{id}/stop", post(lifecycle::stop))
        .route("/api/v1/instances/{id}/restart", post(lifecycle::restart))
        .route("/api/v1/instances/{id}/events", get(events::instance))
        .route("/api/v1/instances/{id}/logs", get(lifecycle::logs))
        .route("/api/v1/events", get(events::all))
        .route("/api/v1/operations/{id}", get(operations::get))
        .route("/api/v1/admin/streams", get(admin::streams))
        .route("/api/v1/admin/pending", get(admin::pending))
        .route("/api/v1/admin/claim", post(admin::claim))
        .route("/api/v1/admin/retry", post(admin::retry))
        .route("/api/v1/admin/drop", post(admin::drop))
        .route("/api/v1/admin/dlq", get(admin::dlq_list))
        .route("/api/v1/admin/dlq/replay", post(admin::dlq_replay))
        .route("/api/v1/admin/dlq/purge", post(admin::dlq_purge))
        .route("/api/v1/admin/dlq/{id}", get(admin::dlq_show))
        .route("/api/v1/admin/consumers", get(admin::consumers))
        .route("/api/v1/admin/prune", post(admin::prune))
        .route("/api/v1/admin/trim", post(admin::trim))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(auth::attach_unauthenticated))
        .layer(middleware::from_fn_with_state(policy, guard::guard))
        .with_state(app);
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(guard::reshape))
}

/// Parses a path id, naming it on failure.
pub(crate) fn parse_id(text: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_id",
            format!("`{text}` is not a valid {what} id"),
            Some("id".into()),
        )
    })
}

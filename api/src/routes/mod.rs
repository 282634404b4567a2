//! The router: every route of the API, one module per resource.
//!
//! - [`instances`]: create, list, read, patch.
//! - [`lifecycle`]: start, stop, restart, delete: commands with a wait.
//! - [`operations`]: durable operation records.
//! - [`system`]: health, readiness, platforms, workers.
//! - [`events`]: Server-Sent Events of state changes.

mod events;
mod instances;
mod lifecycle;
mod operations;
mod system;

use axum::Router;
use axum::routing::{get, post};

use crate::App;
use crate::error::ApiError;

/// Builds the full router.
pub fn router(app: App) -> Router {
    Router::new()
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
        .route("/api/v1/events", get(events::all))
        .route("/api/v1/operations/{id}", get(operations::get))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(app)
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

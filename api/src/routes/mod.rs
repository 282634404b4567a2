//! The router: every route of the API, one module per resource.
//!
//! - [`instances`]: create, list, read, patch.
//! - [`apply`]: `PUT /api/v1/instances/{name}`, the declarative upsert of an instance document
//!   ([`document`]: its types, rules and `If-Match`).
//! - [`spec`]: the spec rules, create and change shared by POST, PATCH and PUT.
//! - [`lifecycle`]: start, stop, restart, delete: commands with a wait.
//! - [`operations`]: durable operation records.
//! - [`system`]: health, readiness, platforms, workers.
//! - [`events`]: Server-Sent Events of state changes.
//! - [`data`]: the data plane: queries, results, change feeds, source events.
//! - [`admin`]: operator actions on streams, pending entries and dead letters.

pub(crate) mod admin;
pub(crate) mod apply;
pub(crate) mod data;
mod document;
pub(crate) mod events;
pub(crate) mod instances;
pub(crate) mod lifecycle;
pub(crate) mod operations;
mod spec;
pub(crate) mod system;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use axum::{Router, middleware};

use crate::error::ApiError;
use crate::{App, audit, auth, guard, limits, openapi};

/// Every route, registered through [`Routes::add`] so the table of (method, template) is
/// known to the code: [`table`] lists it, and each must have a policy in
/// `auth/policy.rs` (the authorisation-matrix test checks both).
fn routes() -> Routes {
    let mut r = Routes::default();
    r.add("GET", "/healthz", get(system::healthz));
    r.add("GET", "/readyz", get(system::readyz));
    r.add("GET", "/api/v1/openapi.json", get(openapi::docs::document));
    r.add("GET", "/api/v1/docs", get(openapi::docs::page));
    r.add("GET", "/api/v1/docs/{file}", get(openapi::docs::asset));
    r.add("GET", "/api/v1/platforms", get(system::platforms));
    r.add("GET", "/api/v1/workers", get(system::workers));
    r.add(
        "POST",
        "/api/v1/platforms/{platform}/ping",
        post(system::ping),
    );
    r.add("POST", "/api/v1/instances", post(instances::create));
    r.add("GET", "/api/v1/instances", get(instances::list));
    r.add("GET", "/api/v1/instances/{id}", get(instances::get));
    r.add("PATCH", "/api/v1/instances/{id}", patch(instances::patch));
    r.add("PUT", "/api/v1/instances/{id}", put(apply::put));
    r.add(
        "DELETE",
        "/api/v1/instances/{id}",
        delete(lifecycle::delete),
    );
    r.add(
        "POST",
        "/api/v1/instances/{id}/start",
        post(lifecycle::start),
    );
    r.add("POST", "/api/v1/instances/{id}/stop", post(lifecycle::stop));
    r.add(
        "POST",
        "/api/v1/instances/{id}/restart",
        post(lifecycle::restart),
    );
    r.add(
        "GET",
        "/api/v1/instances/{id}/events",
        get(events::instance),
    );
    r.add("GET", "/api/v1/instances/{id}/logs", get(lifecycle::logs));
    r.add("GET", "/api/v1/instances/{id}/queries", get(data::queries));
    r.add(
        "GET",
        "/api/v1/instances/{id}/queries/{query}/results",
        get(data::results),
    );
    r.add(
        "GET",
        "/api/v1/instances/{id}/queries/{query}/changes",
        get(data::changes),
    );
    r.add(
        "POST",
        "/api/v1/instances/{id}/sources/{source}/events",
        post(data::event),
    );
    r.add(
        "POST",
        "/api/v1/instances/{id}/sources/{source}/events/batch",
        post(data::batch),
    );
    r.add("GET", "/api/v1/events", get(events::all));
    r.add("GET", "/api/v1/operations/{id}", get(operations::get));
    r.add("GET", "/api/v1/admin/streams", get(admin::streams));
    r.add("GET", "/api/v1/admin/pending", get(admin::pending));
    r.add("POST", "/api/v1/admin/claim", post(admin::claim));
    r.add("POST", "/api/v1/admin/retry", post(admin::retry));
    r.add("POST", "/api/v1/admin/drop", post(admin::drop));
    r.add("GET", "/api/v1/admin/dlq", get(admin::dlq_list));
    r.add("POST", "/api/v1/admin/dlq/replay", post(admin::dlq_replay));
    r.add("POST", "/api/v1/admin/dlq/purge", post(admin::dlq_purge));
    r.add("GET", "/api/v1/admin/dlq/{id}", get(admin::dlq_show));
    r.add("GET", "/api/v1/admin/consumers", get(admin::consumers));
    r.add("POST", "/api/v1/admin/prune", post(admin::prune));
    r.add("POST", "/api/v1/admin/trim", post(admin::trim));
    r.add("GET", "/api/v1/admin/audit", get(admin::audit));
    r.add("POST", "/api/v1/tokens", post(auth::tokens::create));
    r.add("GET", "/api/v1/tokens", get(auth::tokens::list));
    r.add(
        "DELETE",
        "/api/v1/tokens/{id}",
        delete(auth::tokens::revoke),
    );
    r
}

/// The router's own table: every (method, route template) it serves.
pub fn table() -> Vec<(Method, &'static str)> {
    routes().table
}

/// Routes being registered: the table, and one method router per path.
#[derive(Default)]
struct Routes {
    table: Vec<(Method, &'static str)>,
    paths: Vec<(&'static str, MethodRouter<App>)>,
}

impl Routes {
    fn add(&mut self, method: &'static str, path: &'static str, handler: MethodRouter<App>) {
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        self.table.push((method, path));
        match self.paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => self.paths.push((path, handler)),
        }
    }
}

/// Builds the full router. Every route and the fallback sit behind [`guard`], which also
/// reshapes the framework's own error responses (405, rejections) into the error body; every
/// route sits behind [`auth::authorize`] (its policy, the bearer token, the scope).
pub fn router(app: App) -> Router {
    let policy = guard::Policy::new(&app.config);
    let recorder = app.audit.clone();
    let failures = limits::failures::Failures::new(app.config.failed_auth_limit);
    let max_body = app.config.max_body_bytes;
    let mut router = Router::new();
    for (path, handler) in routes().paths {
        router = router.route(path, handler);
    }
    let routes = router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            app.limiter.clone(),
            limits::rate::limit,
        ))
        .layer(middleware::from_fn_with_state(
            app.auth.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn_with_state(policy, guard::guard))
        .layer(middleware::from_fn(crate::observe::http))
        .with_state(app);
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(guard::reshape))
        .layer(middleware::from_fn_with_state(recorder, audit::record))
        .layer(middleware::from_fn_with_state(
            failures,
            limits::failures::bound,
        ))
}

/// A numeric query parameter `name` in `range`, `default` when absent; a 400 naming it
/// otherwise.
pub(crate) fn count_param(
    q: &std::collections::HashMap<String, String>,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ApiError> {
    let Some(text) = q.get(name) else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "{name}=`{text}` must be {} to {}",
                    range.start(),
                    range.end()
                ),
                Some(name.into()),
            )
        })
}

/// The instance a path segment names: UUID-shaped text is its id, anything else its name in
/// the caller's tenant (one lookup). An unknown name is the same 404 as an unknown id (the
/// tenant check on the id is [`instances::load`]'s); text that is neither is a 400.
pub(crate) async fn instance_ref(
    app: &App,
    caller: &auth::Caller,
    text: &str,
) -> Result<uuid::Uuid, ApiError> {
    if let Ok(id) = text.parse::<uuid::Uuid>() {
        return Ok(id);
    }
    if !spec::valid_name(text) {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!("`{text}` is neither an instance id nor an instance name"),
            Some("id".into()),
        ));
    }
    app.store
        .instance_id_by_name(&caller.tenant, text)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {text} does not exist")))
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

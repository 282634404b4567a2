//! The data plane through the API: an instance's queries, a query's results and its change
//! feed (Server-Sent Events), and events into its http sources. Tenant-scoped like every
//! instance route (another tenant's instance is a 404); `data:read` and `data:write`.
//!
//! The request is checked here (the instance, the query or source in its config, its state),
//! then forwarded to a worker that owns the instance ([`crate::dataplane`]); the worker's
//! answer (including the instance's own errors, with their status and message) is passed on.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use draas_protocol::dataplane::DataRoute;
use draas_protocol::drasi::QueryLookup;
use draas_protocol::{Instance, InstanceState};
use futures::StreamExt;
use serde_json::json;

use super::instance_ref;
use crate::App;
use crate::auth::Caller;
use crate::dataplane::{Outgoing, passthrough, sse};
use crate::error::{ApiError, ApiResult};

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/queries",
    operation_id = "listQueries",
    tag = "data",
    summary = "The instance's continuous queries and their status",
    params(crate::openapi::params::InstancePath),
    responses(
        (status = 200, description = "Every query of every drasi instance of the config, as \
            the running instance reports it.", body = crate::openapi::schemas::QueryList,
            example = json!({"items": [{"id": "hot", "status": "Running"}]})),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`), \
            or no such query in its config (`query_not_found`); the instance's own 404.",
            body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "The instance is not running (`instance_not_running`), \
            as the instance says.", body = crate::openapi::schemas::ErrorBody),
        (status = 502, description = "The instance or the worker that runs it cannot be reached \
            (`instance_unreachable`), or answered with a body that is not JSON \
            (`upstream_error`).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "No worker serves the instance's data plane, or this node \
            has none (`data_plane_disabled`), or Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn queries(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    read(app, caller, id, DataRoute::Queries).await
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/queries/{query}/results",
    operation_id = "getQueryResults",
    tag = "data",
    summary = "A query's current result set",
    params(
        crate::openapi::params::InstancePath,
        ("query" = String, Path, description = "The id of a query of the config."),
    ),
    responses(
        (status = 200, description = "The rows, keyed by the query's `RETURN` aliases.",
            body = crate::openapi::schemas::QueryResults,
            example = json!({"queryId": "hot", "items": [{"id": "s1", "temperature": 80}]})),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`), \
            or no such query in its config (`query_not_found`); the instance's own 404.",
            body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "The instance is not running (`instance_not_running`), \
            or the query lives in an `instances[]` entry without an id \
            (`query_unaddressable`).", body = crate::openapi::schemas::ErrorBody),
        (status = 502, description = "The instance or the worker that runs it cannot be reached \
            (`instance_unreachable`), or answered with a body that is not JSON \
            (`upstream_error`).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "No worker serves the instance's data plane, or this node \
            has none (`data_plane_disabled`), or Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn results(
    State(app): State<App>,
    caller: Caller,
    Path((id, query)): Path<(String, String)>,
) -> ApiResult<Response> {
    read(app, caller, id, DataRoute::Results(query)).await
}

/// A read whose answer passes through as the worker gives it.
async fn read(app: App, caller: Caller, id: String, route: DataRoute) -> ApiResult<Response> {
    let (instance, route) = admit(&app, &caller, &id, route).await?;
    let response = app
        .data
        .forward(&app.store, &instance, &route, Outgoing::default())
        .await?;
    Ok(passthrough(response))
}

/// The change feed: relayed frame by frame; it ends when the client goes (the worker's
/// connection is dropped with it), when the caller's token lapses, or when this node stops.
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/queries/{query}/changes",
    operation_id = "watchQueryChanges",
    tag = "data",
    summary = "A query's result changes (Server-Sent Events)",
    description = "A `snapshot` event with the current rows (unless `snapshot=false`), then a \
                   `change` event per result change (`added`, `updated`, `deleted`), each with \
                   an `id`; reconnect with `Last-Event-ID` to resume. `reset` says the resume \
                   point is gone (a new snapshot follows); `error` ends a feed the worker \
                   lost.",
    params(
        crate::openapi::params::InstancePath,
        ("query" = String, Path, description = "The id of a query of the config."),
        ("snapshot" = Option<bool>, Query, description = "Send the current rows first \
            (default `true`)."),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "Resume after this change."),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`; the schema is one event's.",
            content_type = "text/event-stream", body = crate::openapi::schemas::QueryChangeFrame),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`), or a \
            `snapshot` that is neither true nor false (`invalid_query`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`), \
            or no such query in its config (`query_not_found`); the instance's own 404.",
            body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "The instance is not running (`instance_not_running`), \
            or the query lives in an `instances[]` entry without an id \
            (`query_unaddressable`).", body = crate::openapi::schemas::ErrorBody),
        (status = 502, description = "The instance or the worker that runs it cannot be reached \
            (`instance_unreachable`), or answered with a body that is not JSON \
            (`upstream_error`).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "No worker serves the instance's data plane, or this node \
            has none (`data_plane_disabled`), or Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn changes(
    State(app): State<App>,
    caller: Caller,
    Path((id, query)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let snapshot = match params.get("snapshot").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("snapshot=`{other}` must be true or false"),
                Some("snapshot".into()),
            ));
        }
    };
    let (instance, route) = admit(&app, &caller, &id, DataRoute::Changes(query)).await?;
    let outgoing = Outgoing {
        query: (!snapshot).then(|| "snapshot=false".to_owned()),
        last_event_id: headers.get("last-event-id").cloned(),
        ..Outgoing::default()
    };
    let response = app
        .data
        .forward(&app.store, &instance, &route, outgoing)
        .await?;
    if !response.status().is_success() {
        return Ok(passthrough(response));
    }
    let lapsed = crate::auth::verify::lapsed(app.store.clone(), caller);
    let frames = sse::relay(response.bytes_stream(), instance.id)
        .take_until(app.stop.clone().cancelled_owned())
        .take_until(lapsed);
    let mut out = Response::new(Body::from_stream(frames));
    let h = out.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(out)
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/sources/{source}/events",
    operation_id = "postSourceEvent",
    tag = "data",
    summary = "One change event into an http source",
    params(
        crate::openapi::params::InstancePath,
        ("source" = String, Path, description = "The id of an `http` source of the config."),
    ),
    request_body(content = crate::openapi::schemas::SourceEvent,
        content_type = "application/json"),
    responses(
        (status = 200, description = "The instance's answer, passed through.",
            body = crate::openapi::schemas::SourceAnswer,
            example = json!({"success": true, "message": "All 1 events processed successfully"})),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`), \
            or no such source in its config (`source_not_found`); the instance's own 404.",
            body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "The instance is not running (`instance_not_running`), \
            or the source is not an http source (`source_not_http`).", body = crate::openapi::schemas::ErrorBody),
        (status = 502, description = "The instance or the worker that runs it cannot be reached \
            (`instance_unreachable`), or answered with a body that is not JSON \
            (`upstream_error`).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "No worker serves the instance's data plane, or this node \
            has none (`data_plane_disabled`), or Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),

        (status = 422, description = "The instance refused the event(s) (its own status and \
            message, `upstream_error`).", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn event(
    State(app): State<App>,
    caller: Caller,
    Path((id, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    post_events(app, caller, id, DataRoute::Event(source), headers, body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/sources/{source}/events/batch",
    operation_id = "postSourceEvents",
    tag = "data",
    summary = "Many change events into an http source, in order",
    params(
        crate::openapi::params::InstancePath,
        ("source" = String, Path, description = "The id of an `http` source of the config."),
    ),
    request_body(content = crate::openapi::schemas::SourceEventBatch,
        content_type = "application/json"),
    responses(
        (status = 200, description = "The instance's answer, passed through.",
            body = crate::openapi::schemas::SourceAnswer),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`), \
            or no such source in its config (`source_not_found`); the instance's own 404.",
            body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "The instance is not running (`instance_not_running`), \
            or the source is not an http source (`source_not_http`).", body = crate::openapi::schemas::ErrorBody),
        (status = 502, description = "The instance or the worker that runs it cannot be reached \
            (`instance_unreachable`), or answered with a body that is not JSON \
            (`upstream_error`).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "No worker serves the instance's data plane, or this node \
            has none (`data_plane_disabled`), or Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),

        (status = 422, description = "The instance refused the event(s) (its own status and \
            message, `upstream_error`).", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn batch(
    State(app): State<App>,
    caller: Caller,
    Path((id, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    post_events(app, caller, id, DataRoute::Batch(source), headers, body).await
}

async fn post_events(
    app: App,
    caller: Caller,
    id: String,
    route: DataRoute,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (instance, route) = admit(&app, &caller, &id, route).await?;
    let outgoing = Outgoing {
        content_type: headers.get(header::CONTENT_TYPE).cloned(),
        body: Some(body),
        ..Outgoing::default()
    };
    let response = app
        .data
        .forward(&app.store, &instance, &route, outgoing)
        .await?;
    Ok(passthrough(response))
}

/// The caller's instance, if the route names a query or source its config has and it runs.
async fn admit(
    app: &App,
    caller: &Caller,
    id: &str,
    route: DataRoute,
) -> ApiResult<(Instance, DataRoute)> {
    let id = instance_ref(app, caller, id).await?;
    let instance = super::instances::load(app, caller, id).await?;
    let config = &instance.spec.config;
    let not_found = |code, what: &str, name: &str| ApiError::Data {
        status: StatusCode::NOT_FOUND,
        code,
        message: format!("instance {id} has no {what} `{name}`"),
        details: json!({ what: name }),
    };
    match &route {
        DataRoute::Queries => {}
        DataRoute::Results(q) | DataRoute::Changes(q) => match config.query_api_base(q) {
            QueryLookup::Found(_) => {}
            QueryLookup::Unknown => return Err(not_found("query_not_found", "query", q)),
            QueryLookup::Unaddressable { index } => {
                return Err(ApiError::Data {
                    status: StatusCode::CONFLICT,
                    code: "query_unaddressable",
                    message: format!(
                        "query `{q}` lives in config.instances[{index}], which has no id; give \
                         that instance an id to reach its queries"
                    ),
                    details: json!({"query": q, "field": format!("config.instances[{index}].id")}),
                });
            }
        },
        DataRoute::Event(s) | DataRoute::Batch(s) => match config.source_kind(s) {
            Some("http") => {}
            Some(kind) => {
                return Err(ApiError::Data {
                    status: StatusCode::CONFLICT,
                    code: "source_not_http",
                    message: format!(
                        "source `{s}` is a `{kind}` source; events are posted only to http sources"
                    ),
                    details: json!({"source": s, "kind": kind}),
                });
            }
            None => return Err(not_found("source_not_found", "source", s)),
        },
    }
    if instance.state != InstanceState::Running {
        return Err(ApiError::Data {
            status: StatusCode::CONFLICT,
            code: "instance_not_running",
            message: format!("instance {id} is {}, not running", instance.state),
            details: json!({"instance": id, "state": instance.state}),
        });
    }
    Ok((instance, route))
}

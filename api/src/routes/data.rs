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

use super::parse_id;
use crate::App;
use crate::auth::Caller;
use crate::dataplane::{Outgoing, passthrough, sse};
use crate::error::{ApiError, ApiResult};

pub async fn queries(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    read(app, caller, id, DataRoute::Queries).await
}

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

pub async fn event(
    State(app): State<App>,
    caller: Caller,
    Path((id, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    post_events(app, caller, id, DataRoute::Event(source), headers, body).await
}

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
    let id = parse_id(id, "instance")?;
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

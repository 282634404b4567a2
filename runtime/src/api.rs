//! The REST API: drasi-server's read paths and `{success, data, error}` envelope, plus each
//! query's live change feed (`…/queries/{id}/changes`, Server-Sent Events, in [`crate::changes`]).
//! `/api/v1/...` addresses the first instance; `/api/v1/instances/{instanceId}/...` any.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, RawPathParams, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use drasi_lib::{ComponentStatus, DrasiError, DrasiLib};
use serde::Serialize;
use serde_json::{Value, json};

use crate::changes::{self, ChangeHub};

/// One running DrasiLib instance, as the API sees it.
#[derive(Clone)]
pub struct Instance {
    pub id: String,
    pub lib: Arc<DrasiLib>,
}

pub(crate) type Instances = Arc<Vec<Instance>>;
type Params = HashMap<String, String>;

/// What the handlers share: the instances and the change feeds.
#[derive(Clone)]
struct AppState {
    instances: Instances,
    changes: Arc<ChangeHub>,
}

impl FromRef<AppState> for Instances {
    fn from_ref(state: &AppState) -> Self {
        state.instances.clone()
    }
}

impl FromRef<AppState> for Arc<ChangeHub> {
    fn from_ref(state: &AppState) -> Self {
        state.changes.clone()
    }
}

/// The router over the given instances.
pub fn router(instances: Vec<Instance>) -> Router {
    router_with_changes(instances).0
}

/// The router, and its change feeds: [`ChangeHub::close_all`] ends every open change stream
/// (they never finish on their own, so a graceful shutdown should call it first).
pub fn router_with_changes(instances: Vec<Instance>) -> (Router, Arc<ChangeHub>) {
    let changes = ChangeHub::new();
    let scoped = Router::new()
        .route("/sources", get(list_sources))
        .route("/sources/{id}", get(get_source))
        .route("/queries", get(list_queries))
        .route("/queries/{id}", get(get_query))
        .route("/queries/{id}/results", get(query_results))
        .route("/queries/{id}/changes", get(changes::query_changes))
        .route("/reactions", get(list_reactions))
        .route("/reactions/{id}", get(get_reaction));
    let router = Router::new()
        .route("/health", get(health))
        .route("/api/v1/instances", get(list_instances))
        .nest("/api/v1/instances/{instanceId}", scoped.clone())
        .nest("/api/v1", scoped)
        .fallback(not_found)
        .with_state(AppState {
            instances: Arc::new(instances),
            changes: changes.clone(),
        });
    (router, changes)
}

/// A response in drasi-server's envelope.
pub struct Envelope {
    status: StatusCode,
    body: Value,
}

impl Envelope {
    fn ok(data: impl Serialize) -> Self {
        let data = serde_json::to_value(data).unwrap_or(Value::Null);
        Self {
            status: StatusCode::OK,
            body: json!({"success": true, "data": data, "error": null}),
        }
    }

    pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"success": false, "data": null, "error": message.into()}),
        }
    }

    pub(crate) fn from_drasi(err: DrasiError) -> Self {
        let status = match &err {
            DrasiError::ComponentNotFound { .. } => StatusCode::NOT_FOUND,
            DrasiError::InvalidState { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::error(status, err.to_string())
    }
}

impl IntoResponse for Envelope {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

async fn health(State(changes): State<Arc<ChangeHub>>) -> Json<Value> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Json(json!({"status": "ok", "timestamp": now, "changeStreams": changes.open_streams()}))
}

async fn not_found() -> Envelope {
    Envelope::error(StatusCode::NOT_FOUND, "Not found")
}

fn is_internal(id: &str) -> bool {
    id.starts_with("__")
}

pub(crate) fn to_params(raw: &RawPathParams) -> Params {
    raw.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The instance a request addresses, or a 404 envelope.
pub(crate) fn instance<'a>(
    instances: &'a [Instance],
    params: &Params,
) -> Result<&'a Instance, Envelope> {
    match params.get("instanceId") {
        None => instances
            .first()
            .ok_or_else(|| Envelope::error(StatusCode::NOT_FOUND, "No instance is configured")),
        Some(iid) => instances.iter().find(|i| &i.id == iid).ok_or_else(|| {
            Envelope::error(StatusCode::NOT_FOUND, format!("Instance '{iid}' not found"))
        }),
    }
}

fn item(
    inst: &Instance,
    kind: &str,
    id: &str,
    status: ComponentStatus,
    error: Option<String>,
) -> Value {
    let link = format!("/api/v1/instances/{}/{kind}/{id}", inst.id);
    let mut v = json!({
        "id": id,
        "status": status,
        "links": {"self": link, "full": format!("{link}?view=full")},
    });
    if let Some(message) = error.filter(|_| status == ComponentStatus::Error) {
        v["error_message"] = Value::String(message);
    }
    v
}

async fn list_instances(State(instances): State<Instances>) -> Envelope {
    let mut out = Vec::new();
    for inst in instances.iter() {
        let count = |r: drasi_lib::Result<Vec<(String, ComponentStatus)>>| {
            r.map(|v| v.iter().filter(|(id, _)| !is_internal(id)).count())
                .unwrap_or(0)
        };
        let base = format!("/api/v1/instances/{}", inst.id);
        out.push(json!({
            "id": inst.id,
            "source_count": count(inst.lib.list_sources().await),
            "query_count": count(inst.lib.list_queries().await),
            "reaction_count": count(inst.lib.list_reactions().await),
            "links": {
                "self": base,
                "sources": format!("{base}/sources"),
                "queries": format!("{base}/queries"),
                "reactions": format!("{base}/reactions"),
            },
        }));
    }
    Envelope::ok(out)
}

macro_rules! component_handlers {
    ($list:ident, $get:ident, $kind:literal, $list_fn:ident, $info_fn:ident) => {
        async fn $list(State(instances): State<Instances>, raw: RawPathParams) -> Envelope {
            let params = to_params(&raw);
            let inst = match instance(&instances, &params) {
                Ok(inst) => inst,
                Err(e) => return e,
            };
            let components = match inst.lib.$list_fn().await {
                Ok(c) => c,
                Err(e) => return Envelope::from_drasi(e),
            };
            let mut items = Vec::with_capacity(components.len());
            // drasi-lib's internal components (e.g. `__component_graph__`) are not user-facing.
            for (id, status) in components.into_iter().filter(|(id, _)| !is_internal(id)) {
                let error = match status {
                    ComponentStatus::Error => inst
                        .lib
                        .$info_fn(&id)
                        .await
                        .ok()
                        .and_then(|i| i.error_message),
                    _ => None,
                };
                items.push(item(inst, $kind, &id, status, error));
            }
            Envelope::ok(items)
        }

        async fn $get(State(instances): State<Instances>, raw: RawPathParams) -> Envelope {
            let params = to_params(&raw);
            let inst = match instance(&instances, &params) {
                Ok(inst) => inst,
                Err(e) => return e,
            };
            let id = params.get("id").map(String::as_str).unwrap_or_default();
            match inst.lib.$info_fn(id).await {
                Ok(info) => Envelope::ok(item(inst, $kind, id, info.status, info.error_message)),
                Err(e) => Envelope::from_drasi(e),
            }
        }
    };
}

component_handlers!(
    list_sources,
    get_source,
    "sources",
    list_sources,
    get_source_info
);
component_handlers!(
    list_queries,
    get_query,
    "queries",
    list_queries,
    get_query_info
);
component_handlers!(
    list_reactions,
    get_reaction,
    "reactions",
    list_reactions,
    get_reaction_info
);

async fn query_results(State(instances): State<Instances>, raw: RawPathParams) -> Envelope {
    let params = to_params(&raw);
    let inst = match instance(&instances, &params) {
        Ok(inst) => inst,
        Err(e) => return e,
    };
    let id = params.get("id").map(String::as_str).unwrap_or_default();
    match inst.lib.get_query_results(id).await {
        Ok(rows) => Envelope::ok(rows),
        Err(e) => Envelope::from_drasi(e),
    }
}

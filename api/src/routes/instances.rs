//! Instances: create, list (filtered, cursor-paged), read and patch.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use draas_protocol::env::{self, InstanceEnv};
use draas_protocol::keys::LabelScope;
use draas_protocol::{
    DesiredState, Instance, InstanceSpec, InstanceState, Platform, Resources, RestartPolicy,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::instance_ref;
use super::lifecycle::wait_param;
use super::spec::{config_of, set_etag};
use crate::App;
use crate::auth::Caller;
use crate::body::{Body, content_type, parse};
use crate::error::{ApiError, ApiResult};

/// The body of `POST /api/v1/instances`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "sensors", "platform": "process", "config": {
    "sources": [{"kind": "http", "id": "readings"}],
    "queries": [{"id": "hot", "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id, s.temperature AS temperature",
        "sources": [{"sourceId": "readings"}]}],
    "reactions": [{"kind": "log", "id": "log", "queries": ["hot"]}]}}))]
pub struct CreateInstance {
    /// 1 to 63 lowercase letters, digits or `-`, not starting or ending with `-`; unique in
    /// the tenant.
    name: String,
    /// Free text for people, at most 1024 bytes.
    #[serde(default)]
    description: Option<String>,
    platform: Platform,
    /// The drasi-server configuration, as drasi-server reads it (YAML as JSON).
    #[schema(value_type = draas_protocol::drasi::DrasiConfig)]
    config: Value,
    /// Keys 1–63 bytes, values 0–63 bytes; `GET /api/v1/instances?label=k=v` filters on them.
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    restart_policy: RestartPolicy,
    /// Container image (docker and kubernetes only; the process platform refuses it), within
    /// the operator's allow list; the platform's image when absent.
    #[serde(default)]
    image: Option<String>,
    /// Memory and CPU limits (docker and kubernetes only).
    #[serde(default)]
    resources: Option<Resources>,
    /// The instance's environment: the only variables its config may reference as
    /// `${NAME}`. Secret values are never shown again.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, draas_protocol::EnvValue>)]
    env: InstanceEnv,
}

/// The fields a PATCH may change, as a JSON document the patch applies to.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Patchable {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    config: Value,
    #[serde(default)]
    restart_policy: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
    /// Redacted: a secret keeps its stored value unless the patch gives a new one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: InstanceEnv,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    desired_state: Option<DesiredState>,
}

#[utoipa::path(
    post,
    path = "/api/v1/instances",
    operation_id = "createInstance",
    tag = "instances",
    summary = "Create an instance (state `created`)",
    description = "The config is checked before anything is stored: its schema (unknown keys \
                   refused), references between sources, queries and reactions, `${NAME}` \
                   variables against `env`, file paths, the egress policy and the kinds the \
                   live workers can run. Listen addresses it sets are replaced by the \
                   platform's and named in `warnings`.",
    request_body(content = CreateInstance, content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = crate::openapi::schemas::InstanceView,
            headers(
                ("Location" = String, description = "The instance's URL."),
                ("ETag" = String, description = "The instance's generation, quoted."),
            )),
        (status = 400, description = "A body that is not JSON (`malformed_json`, with line \
            and column) or has an unknown or mistyped field (`invalid_field`); \
            `details.field` names it.", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "The name is taken in the tenant (`name_taken`, \
            `details.instanceId` names the holder), or the tenant's `max-instances` or \
            `max-config-bytes` quota is reached (`quota_exceeded`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "A field breaks a rule: the config (`invalid_config`, \
            `unresolved_variable`, `egress_denied`, `unsupported_kind`), the name \
            (`invalid_name`), the environment (`invalid_env`), labels (`invalid_label`), the \
            image (`image_not_allowed`) or another field (`invalid_field`); `details.field` \
            names it.", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<CreateInstance>,
) -> ApiResult<Response> {
    let spec = InstanceSpec {
        name: body.name,
        description: body.description,
        platform: body.platform,
        labels: body.labels,
        config: config_of(body.config)?,
        restart_policy: body.restart_policy,
        image: body.image,
        resources: body.resources,
        env: body.env,
        desired_state: None,
    };
    let inst = super::spec::create(&app, &caller, spec).await?;
    let location = format!("/api/v1/instances/{}", inst.id);
    let generation = inst.generation;
    let mut response = (
        StatusCode::CREATED,
        [(LOCATION, location)],
        Json(view(inst)?),
    )
        .into_response();
    set_etag(&mut response, generation);
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}",
    operation_id = "getInstance",
    tag = "instances",
    summary = "Read an instance",
    params(crate::openapi::params::InstancePath),
    responses(
        (status = 200, description = "The instance.", body = crate::openapi::schemas::InstanceView,
            headers(("ETag" = String, description = "The instance's generation, quoted: the \
                value of a later `If-Match`."))),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn get(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = instance_ref(&app, &caller, &id).await?;
    let inst = load(&app, &caller, id).await?;
    let generation = inst.generation;
    let mut response = Json(view(inst)?).into_response();
    set_etag(&mut response, generation);
    Ok(response)
}

/// Lists the caller's tenant's instances from its own index (a cluster administrator: every
/// instance, from the global index).
#[utoipa::path(
    get,
    path = "/api/v1/instances",
    operation_id = "listInstances",
    tag = "instances",
    summary = "List the tenant's instances (cluster administrators: every tenant's)",
    params(crate::openapi::params::InstanceListQuery),
    responses(
        (status = 200, description = "A page, oldest first.",
            body = crate::openapi::schemas::InstancePage),
        (status = 400, description = "A bad filter or paging parameter (`invalid_query`); \
            `details.field` names it.", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    // `label` may repeat (every one must match); of any other parameter the last counts.
    let labels = label_filter(&pairs)?;
    let q: HashMap<String, String> = pairs.into_iter().filter(|(k, _)| k != "label").collect();
    let limit = super::count_param(&q, "limit", 50, 1..=500)?;
    let platform = match q.get("platform") {
        None => None,
        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("unknown platform `{p}`; use process, docker or kubernetes"),
                Some("platform".into()),
            )
        })?),
    };
    let state = match q.get("state") {
        None => None,
        Some(s) => Some(InstanceState::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("unknown state `{s}`"),
                Some("state".into()),
            )
        })?),
    };
    let mut cursor = match q.get("cursor") {
        None => None,
        Some(c) => Some(c.parse::<Uuid>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("cursor `{c}` is not valid"),
                Some("cursor".into()),
            )
        })?),
    };
    let keep = |i: &Instance| {
        platform.is_none_or(|p| i.spec.platform == p)
            && state.is_none_or(|s| i.state == s)
            && labels.iter().all(|(k, v)| i.spec.labels.get(k) == Some(v))
    };
    let scope = match caller.is_cluster_admin() {
        true => LabelScope::All,
        false => LabelScope::Tenant(&caller.tenant),
    };
    // Scan at most 20 batches per request, so a selective filter stays bounded; the cursor
    // lets the client continue where the scan stopped. A label filter reads the label index
    // (only candidates that carry the labels: the smallest of their sets), the id index while
    // that is not built yet.
    let mut items = Vec::new();
    let mut exhausted = false;
    for _ in 0..20 {
        let labeled = match labels.is_empty() {
            true => None,
            false => {
                app.store
                    .labeled_instances_page(scope, &labels, cursor, limit.max(100))
                    .await?
            }
        };
        let (page, last) = match (labeled, scope) {
            (Some(page), _) => page,
            (None, LabelScope::All) => app.store.instances_page(cursor, limit.max(100)).await?,
            (None, LabelScope::Tenant(tenant)) => {
                app.store
                    .tenant_instances_page(tenant, cursor, limit.max(100))
                    .await?
            }
        };
        let Some(last) = last else {
            exhausted = true;
            break;
        };
        for inst in page {
            if keep(&inst) {
                cursor = Some(inst.id);
                items.push(view(inst)?);
                if items.len() == limit {
                    break;
                }
            }
        }
        if items.len() == limit {
            break;
        }
        cursor = Some(last);
    }
    let next = if exhausted { None } else { cursor };
    Ok(Json(json!({ "items": items, "nextCursor": next })))
}

/// Most `label` filters one list takes.
const MAX_LABEL_FILTERS: usize = 16;

/// The `label=key=value` parameters of a list, each a 400 naming `label` when malformed.
fn label_filter(pairs: &[(String, String)]) -> ApiResult<Vec<(String, String)>> {
    let labels: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k == "label")
        .map(|(_, l)| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("label=`{l}` must be key=value"),
                        Some("label".into()),
                    )
                })
        })
        .collect::<ApiResult<_>>()?;
    if labels.len() > MAX_LABEL_FILTERS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("at most {MAX_LABEL_FILTERS} label filters per list"),
            Some("label".into()),
        ));
    }
    Ok(labels)
}

#[utoipa::path(
    patch,
    path = "/api/v1/instances/{id}",
    operation_id = "patchInstance",
    tag = "instances",
    summary = "Change an instance's spec",
    description = "A JSON Merge Patch (RFC 7396) or a JSON Patch (RFC 6902) over the patchable \
                   fields. The result is checked as a create is. A running instance whose \
                   config or environment changed restarts on it (`ApplyConfig`, waited for up \
                   to `wait`, named by `Operation-Location`); a stopped one picks it up at its \
                   next start. An unchanged spec writes nothing.",
    params(crate::openapi::params::InstancePath, crate::openapi::params::WaitQuery),
    request_body(content(
        (crate::openapi::schemas::InstanceMergePatch = "application/merge-patch+json"),
        (Vec<crate::openapi::schemas::JsonPatchOperation> = "application/json-patch+json",
            example = json!([{"op": "replace", "path": "/description", "value": "hot sensors"}])),
    )),
    responses(
        (status = 200, description = "The instance after the patch.",
            body = crate::openapi::schemas::InstanceView,
            headers(
                ("ETag" = String, description = "The instance's generation, quoted."),
                ("Operation-Location" = String, description = "The `ApplyConfig` operation, \
                    when the patch restarted a running instance."),
            )),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`), a bad \
            `wait` (`invalid_query`), a body that is not JSON (`malformed_json`), or a result \
            with an unknown or mistyped field (`invalid_field`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "The new name is taken (`name_taken`), the instance \
            changed meanwhile (`concurrent_modification`), a quota is reached \
            (`quota_exceeded`), or the restart cannot run in the instance's state \
            (`illegal_transition`).", body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "A JSON Patch operation failed (`patch_failed`), or the \
            result breaks a rule (as for create).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "A running instance needs a restart and no live worker \
            can take it, or Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn patch(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> ApiResult<Response> {
    let id = instance_ref(&app, &caller, &id).await?;
    let wait = wait_param(&app, &q)?;
    let media = content_type(&req).unwrap_or_default();
    let bytes = Bytes::from_request_body(req).await?;
    let current = load(&app, &caller, id).await?;
    let mut doc = serde_json::to_value(Patchable {
        name: current.spec.name.clone(),
        description: current.spec.description.clone(),
        labels: current.spec.labels.clone(),
        config: serde_json::to_value(&current.spec.config)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        restart_policy: current.spec.restart_policy.clone(),
        image: current.spec.image.clone(),
        resources: current.spec.resources.clone(),
        env: env::redacted(&current.spec.env),
        desired_state: current.spec.desired_state,
    })
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match media.as_str() {
        "application/merge-patch+json" => json_patch::merge(&mut doc, &parse::<Value>(&bytes)?),
        "application/json-patch+json" => {
            let ops: json_patch::Patch = parse(&bytes)?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::unprocessable("patch_failed", e.to_string(), Some(e.path.to_string()))
            })?;
        }
        other => return Err(ApiError::UnsupportedMediaType(other.to_owned())),
    }
    let mut patched: Patchable = parse(&serde_json::to_vec(&doc).unwrap_or_default())?;
    env::restore_secrets(&mut patched.env, &current.spec.env);
    let spec = InstanceSpec {
        name: patched.name,
        description: patched.description,
        platform: current.spec.platform,
        labels: patched.labels,
        config: config_of(patched.config)?,
        restart_policy: patched.restart_policy,
        image: patched.image,
        resources: patched.resources,
        env: patched.env,
        desired_state: patched.desired_state,
    };
    let (inst, operation) =
        match super::spec::change(&app, &caller, current.clone(), spec, wait, true).await? {
            Some(changed) => (changed.instance, changed.operation),
            None => (current, None),
        };
    let generation = inst.generation;
    let mut response = Json(view(inst)?).into_response();
    if let Some(op) = operation
        && let Ok(value) = format!("/api/v1/operations/{}", op.id).parse()
    {
        response.headers_mut().insert("operation-location", value);
    }
    set_etag(&mut response, generation);
    Ok(response)
}

/// Loads an instance the caller may see: another tenant's answers 404 exactly as an
/// unknown id does.
pub(crate) async fn load(app: &App, caller: &Caller, id: Uuid) -> ApiResult<Instance> {
    let stored = app.store.instance(id).await?;
    stored
        .map(|s| s.instance)
        .filter(|i| caller.sees(&i.tenant))
        .ok_or_else(|| ApiError::NotFound(format!("instance {id} does not exist")))
}

/// An instance as every response shows it: redacted, with the `warnings` of its config (the
/// fields DRaaS replaces, computed from the stored spec: always present, possibly empty).
pub(crate) fn view(inst: Instance) -> ApiResult<Value> {
    let warnings = inst.spec.config.warnings();
    let mut value =
        serde_json::to_value(inst.redacted()).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.insert("warnings".to_owned(), json!(warnings));
    }
    Ok(value)
}

trait FromRequestBody: Sized {
    async fn from_request_body(req: Request) -> ApiResult<Self>;
}

impl FromRequestBody for Bytes {
    async fn from_request_body(req: Request) -> ApiResult<Self> {
        axum::body::to_bytes(req.into_body(), 4 * 1024 * 1024)
            .await
            .map_err(|e| ApiError::bad_request("unreadable_body", e.to_string(), None))
    }
}

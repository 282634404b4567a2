//! Instances: create, list (filtered, cursor-paged), read and patch.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use draas_bus::clock::now;
use draas_bus::store::CreateOutcome;
use draas_protocol::drasi::{ConfigError, DrasiConfig};
use draas_protocol::env::{self, InstanceEnv};
use draas_protocol::{
    Command, Instance, InstanceSpec, InstanceState, Platform, Resources, RestartPolicy, RuntimeInfo,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::lifecycle::{submit_and_wait, wait_param};
use super::parse_id;
use crate::App;
use crate::auth::Caller;
use crate::body::{Body, content_type, parse};
use crate::dispatch::Request as DispatchRequest;
use crate::error::{ApiError, ApiResult};

/// The body of `POST /api/v1/instances`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInstance {
    name: String,
    #[serde(default)]
    description: Option<String>,
    platform: Platform,
    config: Value,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    restart_policy: RestartPolicy,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    resources: Option<Resources>,
    #[serde(default)]
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
}

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
    };
    validate_spec(&app, &spec)?;
    crate::kinds::check(&app, spec.platform, &spec.config).await?;
    let now = now();
    let inst = Instance {
        id: Uuid::now_v7(),
        tenant: caller.tenant.clone(),
        spec,
        state: InstanceState::Created,
        generation: 1,
        created_at: now,
        updated_at: now,
        runtime: RuntimeInfo::default(),
    };
    // The instance is counted against the tenant's quota first (atomically; a refusal writes
    // nothing) and uncounted when the create is refused. A create that failed without an
    // answer stays counted: its record may exist, and counting one too many is safer than
    // letting a live record go uncounted.
    crate::quota::reserve_instance(&app, &caller.tenant, inst.id, &inst.spec.config).await?;
    let created = app.store.create_instance(&inst).await;
    if matches!(created, Ok(CreateOutcome::NameTaken { .. })) {
        app.store.release_instance(&caller.tenant, inst.id).await?;
    }
    match created? {
        CreateOutcome::Created => {
            let location = format!("/api/v1/instances/{}", inst.id);
            Ok((
                StatusCode::CREATED,
                [(LOCATION, location)],
                Json(view(inst)?),
            )
                .into_response())
        }
        CreateOutcome::NameTaken { by } => Err(name_taken(&inst.spec.name, by)),
    }
}

pub async fn get(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "instance")?;
    Ok(Json(view(load(&app, &caller, id).await?)?))
}

/// Lists the caller's tenant's instances from its own index (a cluster administrator: every
/// instance, from the global index).
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
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
    let label = match q.get("label") {
        None => None,
        Some(l) => Some(
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("label=`{l}` must be key=value"),
                        Some("label".into()),
                    )
                })?,
        ),
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
            && label
                .as_ref()
                .is_none_or(|(k, v)| i.spec.labels.get(k) == Some(v))
    };
    // Scan at most 20 batches per request, so a selective filter stays bounded; the cursor
    // lets the client continue where the scan stopped.
    let mut items = Vec::new();
    let mut exhausted = false;
    for _ in 0..20 {
        let (page, last) = match caller.is_cluster_admin() {
            true => app.store.instances_page(cursor, limit.max(100)).await?,
            false => {
                app.store
                    .tenant_instances_page(&caller.tenant, cursor, limit.max(100))
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

pub async fn patch(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> ApiResult<Response> {
    let id = parse_id(&id, "instance")?;
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
    };
    validate_spec(&app, &spec)?;
    crate::kinds::check(&app, spec.platform, &spec.config).await?;
    if spec == current.spec {
        return Ok(Json(view(current)?).into_response());
    }
    if spec.config != current.spec.config {
        crate::quota::check_config(&app, &current.tenant, &spec.config).await?;
    }
    if spec.name != current.spec.name
        && let Some(by) = app
            .store
            .instance_id_by_name(&current.tenant, &spec.name)
            .await?
            .filter(|by| *by != id)
    {
        return Err(name_taken(&spec.name, by));
    }
    // A running instance applies a new config through a command: make sure someone can take
    // it before storing the spec, so a refusal leaves nothing half-done.
    let reconfigure = (spec.config != current.spec.config || spec.env != current.spec.env)
        && current.state == InstanceState::Running;
    let route = match reconfigure {
        true => Some(
            app.dispatcher
                .route(current.spec.platform, Some(&current))
                .await?,
        ),
        false => None,
    };
    let Some(generation) = app
        .store
        .update_spec(
            id,
            &current.tenant,
            current.generation,
            &spec,
            &current.spec.name,
        )
        .await?
    else {
        return Err(ApiError::Conflict {
            code: "concurrent_modification",
            message: "the instance changed while this patch was applied; read it again and retry"
                .into(),
            details: json!({ "generation": current.generation }),
        });
    };
    let mut headers = Vec::new();
    if let Some(stream) = route {
        let command = Command::ApplyConfig { generation };
        let mut request =
            DispatchRequest::new(stream, current.spec.platform, Some(&current), command, wait);
        request.actor = Some(caller.actor());
        let op = submit_and_wait(&app, request, wait).await?;
        headers.push((
            "operation-location",
            format!("/api/v1/operations/{}", op.id),
        ));
    }
    let inst = load(&app, &caller, id).await?;
    let mut response = Json(view(inst)?).into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
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
fn view(inst: Instance) -> ApiResult<Value> {
    let warnings = inst.spec.config.warnings();
    let mut value =
        serde_json::to_value(inst.redacted()).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.insert("warnings".to_owned(), json!(warnings));
    }
    Ok(value)
}

fn name_taken(name: &str, by: Uuid) -> ApiError {
    ApiError::Conflict {
        code: "name_taken",
        message: format!("an instance named `{name}` already exists"),
        details: json!({ "field": "name", "instanceId": by }),
    }
}

fn config_of(value: Value) -> ApiResult<DrasiConfig> {
    let config =
        DrasiConfig::from_json_value(value).map_err(|e| config_error("invalid_config", e))?;
    // File paths as written; the rest of the checks run on the config as the workload reads
    // it ([`validate_spec`]).
    config
        .check_paths()
        .map_err(|e| config_error("invalid_config", e))?;
    Ok(config)
}

fn config_error(code: &'static str, e: draas_protocol::drasi::ConfigError) -> ApiError {
    let field = if e.path.is_empty() {
        "config".to_owned()
    } else {
        format!("config.{}", e.path)
    };
    ApiError::unprocessable(code, format!("{field}: {}", e.message), Some(field))
}

/// Rules on the spec beyond its types: a name usable as a container or pod name, an
/// environment within its rules, every `${NAME}` of the config resolvable from that
/// environment, the resolved config valid, and literal outbound URLs within the operator's
/// egress policy. Listener addresses a config sets are accepted: the platform replaces them,
/// and every read of the instance names them in its `warnings`.
fn validate_spec(app: &App, spec: &InstanceSpec) -> ApiResult<()> {
    env::validate(&spec.env, false).map_err(|e| {
        ApiError::unprocessable("invalid_env", e.to_string(), Some(e.field.clone()))
    })?;
    let resolved = spec
        .config
        .resolve(&env::lookup(&spec.env))
        .map_err(|e| config_error("unresolved_variable", e))?;
    // The config as the workload reads it: file paths again (a variable may hold one) and
    // drasi-server's checks on the resolved values (`logLevel: ${LOG_LEVEL:-info}`).
    resolved.validate_user_supplied().map_err(|e| {
        let message = env::scrub(&e.message, &spec.env);
        config_error("invalid_config", ConfigError { message, ..e })
    })?;
    resolved.check_egress(&app.config.egress).map_err(|e| {
        // The resolved URL may carry a secret value.
        let message = env::scrub(&e.message, &spec.env);
        config_error("egress_denied", ConfigError { message, ..e })
    })?;
    let name = &spec.name;
    let valid = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "name must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
            Some("name".into()),
        ));
    }
    if spec.platform == Platform::Process {
        if spec.image.is_some() {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "image applies to the docker and kubernetes platforms; a process instance runs the worker's executable",
                Some("image".into()),
            ));
        }
        if spec.resources.is_some() {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "resource limits are not supported on the process platform; use docker or kubernetes",
                Some("resources".into()),
            ));
        }
    }
    if spec
        .image
        .as_ref()
        .is_some_and(|i| i.is_empty() || i.chars().any(char::is_whitespace))
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "image must be a non-empty reference without spaces",
            Some("image".into()),
        ));
    }
    if let Some(image) = &spec.image
        && !app.config.allowed_images.allows(image)
    {
        return Err(ApiError::unprocessable(
            "image_not_allowed",
            format!(
                "image `{image}` is not allowed by the operator (draas api --allowed-image); \
                 omit it to run the platform's image"
            ),
            Some("image".into()),
        ));
    }
    if spec.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "description is longer than 1024 bytes",
            Some("description".into()),
        ));
    }
    for (k, v) in &spec.labels {
        if k.is_empty() || k.len() > 63 || v.len() > 63 {
            return Err(ApiError::unprocessable(
                "invalid_label",
                format!("label `{k}`: keys are 1-63 and values 0-63 bytes"),
                Some(format!("labels.{k}")),
            ));
        }
    }
    Ok(())
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

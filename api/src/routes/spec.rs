//! An instance's spec on its way in, shared by every route that writes one: the rules beyond
//! its types ([`validate`]), the create of `POST` and `PUT` ([`create`]), and the change of
//! `PATCH` and `PUT` ([`change`]: a compare-and-set on the generation, then `ApplyConfig` for a
//! running instance whose config or environment changed).

use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::Response;
use draas_bus::clock::now;
use draas_bus::store::CreateOutcome;
use draas_protocol::drasi::{ConfigError, DrasiConfig};
use draas_protocol::env;
use draas_protocol::{
    Command, Instance, InstanceSpec, InstanceState, Operation, Platform, RuntimeInfo,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::lifecycle::submit_and_wait;
use crate::App;
use crate::auth::Caller;
use crate::dispatch::Request as DispatchRequest;
use crate::error::{ApiError, ApiResult};

/// Creates an instance from `spec` in the caller's tenant: the same validation, kinds check
/// and quota for every route that creates one. Returns the stored record.
pub(crate) async fn create(app: &App, caller: &Caller, spec: InstanceSpec) -> ApiResult<Instance> {
    validate(app, &spec)?;
    crate::kinds::check(app, spec.platform, &spec.config).await?;
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
    crate::quota::reserve_instance(app, &caller.tenant, inst.id, &inst.spec.config).await?;
    let created = app.store.create_instance(&inst).await;
    if matches!(created, Ok(CreateOutcome::NameTaken { .. })) {
        app.store.release_instance(&caller.tenant, inst.id).await?;
    }
    match created? {
        CreateOutcome::Created => Ok(inst),
        CreateOutcome::NameTaken { by } => Err(name_taken(&inst.spec.name, by)),
    }
}

/// What [`change`] did: the instance as stored afterwards, and the `ApplyConfig` operation
/// when one was sent.
pub(crate) struct Changed {
    pub instance: Instance,
    pub operation: Option<Operation>,
}

/// Replaces `current`'s spec with `spec` when they differ (`None`: they do not, nothing is
/// written). The write is a compare-and-set on the generation read: a concurrent change is a
/// 409 `concurrent_modification`. With `reconfigure`, a running instance whose config or
/// environment changed gets an `ApplyConfig` (waited for up to `wait`); without it the new
/// spec is only stored, and the instance picks it up at its next start.
pub(crate) async fn change(
    app: &App,
    caller: &Caller,
    current: Instance,
    spec: InstanceSpec,
    wait: Duration,
    reconfigure: bool,
) -> ApiResult<Option<Changed>> {
    let id = current.id;
    validate(app, &spec)?;
    crate::kinds::check(app, spec.platform, &spec.config).await?;
    if spec == current.spec {
        return Ok(None);
    }
    if spec.config != current.spec.config {
        crate::quota::check_config(app, &current.tenant, &spec.config).await?;
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
    let reconfigure = reconfigure
        && (spec.config != current.spec.config || spec.env != current.spec.env)
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
            message: "the instance changed while this change was applied; read it again and retry"
                .into(),
            details: json!({ "generation": current.generation }),
        });
    };
    let mut operation = None;
    if let Some(stream) = route {
        let command = Command::ApplyConfig { generation };
        let mut request =
            DispatchRequest::new(stream, current.spec.platform, Some(&current), command, wait);
        request.actor = Some(caller.actor());
        operation = Some(submit_and_wait(app, request, wait).await?);
    }
    let instance = super::instances::load(app, caller, id).await?;
    Ok(Some(Changed {
        instance,
        operation,
    }))
}

/// Sets `ETag: "<generation>"` (every response carrying an instance has it: the value a
/// later `If-Match` names).
pub(crate) fn set_etag(response: &mut Response, generation: u64) {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{generation}\"")) {
        response.headers_mut().insert("etag", value);
    }
}

pub(crate) fn name_taken(name: &str, by: Uuid) -> ApiError {
    ApiError::Conflict {
        code: "name_taken",
        message: format!("an instance named `{name}` already exists"),
        details: json!({ "field": "name", "instanceId": by }),
    }
}

pub(crate) fn config_of(value: Value) -> ApiResult<DrasiConfig> {
    let config =
        DrasiConfig::from_json_value(value).map_err(|e| config_error("invalid_config", e))?;
    // File paths as written; the rest of the checks run on the config as the workload reads
    // it ([`validate`]).
    config
        .check_paths()
        .map_err(|e| config_error("invalid_config", e))?;
    Ok(config)
}

fn config_error(code: &'static str, e: ConfigError) -> ApiError {
    let field = if e.path.is_empty() {
        "config".to_owned()
    } else {
        format!("config.{}", e.path)
    };
    ApiError::unprocessable(code, format!("{field}: {}", e.message), Some(field))
}

/// Whether `name` is usable as an instance name (and so as a container or pod name): 1 to 63
/// lowercase letters, digits or '-', not starting or ending with '-'.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Rules on the spec beyond its types: a name usable as a container or pod name, an
/// environment within its rules, every `${NAME}` of the config resolvable from that
/// environment, the resolved config valid, and literal outbound URLs within the operator's
/// egress policy. Listener addresses a config sets are accepted: the platform replaces them,
/// and every read of the instance names them in its `warnings`.
pub(crate) fn validate(app: &App, spec: &InstanceSpec) -> ApiResult<()> {
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
    if !valid_name(&spec.name) {
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

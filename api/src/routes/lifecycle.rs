//! Lifecycle requests: start, stop, restart and delete. Each becomes one command on the bus.
//!
//! The answer is 200 with the finished operation, or 202 with the pending one and a
//! `Location` when it did not finish within `?wait=` seconds (default from configuration).
//! An `Idempotency-Key` makes a retried request return the original operation; the same key
//! with a different request is a 422.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use draas_protocol::{Command, Instance, InstanceState, Operation};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::instance_ref;
use crate::App;
use crate::auth::Caller;
use crate::dispatch::Request;
use crate::error::{ApiError, ApiResult};

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/start",
    operation_id = "startInstance",
    tag = "lifecycle",
    summary = "Start an instance",
    description = "Places the instance on its platform and waits until it is ready \
                   (healthy, every component `Running`). It answers when the command ends or `wait` runs out, whichever comes \
                   first; the operation goes on either way.",
    params(
        crate::openapi::params::InstancePath,
        crate::openapi::params::WaitQuery,
        crate::openapi::params::CommandHeaders,
    ),
    responses(crate::openapi::responses::CommandAnswers)
)]
pub async fn start(
    s: State<App>,
    caller: Caller,
    id: Path<String>,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult<Response> {
    request(s, caller, id, q, h, Command::Start).await
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/stop",
    operation_id = "stopInstance",
    tag = "lifecycle",
    summary = "Stop an instance",
    description = "Stops the instance gracefully (SIGINT, then a forced stop after the \
                   grace period). It answers when the command ends or `wait` runs out, whichever comes \
                   first; the operation goes on either way.",
    params(
        crate::openapi::params::InstancePath,
        crate::openapi::params::WaitQuery,
        crate::openapi::params::CommandHeaders,
    ),
    responses(crate::openapi::responses::CommandAnswers)
)]
pub async fn stop(
    s: State<App>,
    caller: Caller,
    id: Path<String>,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult<Response> {
    request(s, caller, id, q, h, Command::Stop).await
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/restart",
    operation_id = "restartInstance",
    tag = "lifecycle",
    summary = "Restart an instance",
    description = "Stops the instance and starts it on its stored configuration. It answers when the command ends or `wait` runs out, whichever comes \
                   first; the operation goes on either way.",
    params(
        crate::openapi::params::InstancePath,
        crate::openapi::params::WaitQuery,
        crate::openapi::params::CommandHeaders,
    ),
    responses(crate::openapi::responses::CommandAnswers)
)]
pub async fn restart(
    s: State<App>,
    caller: Caller,
    id: Path<String>,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult<Response> {
    request(s, caller, id, q, h, Command::Restart).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/instances/{id}",
    operation_id = "deleteInstance",
    tag = "lifecycle",
    summary = "Delete an instance",
    description = "Stops the instance, removes every trace of it from its platform, \
                   then drops its record. It answers when the command ends or `wait` runs out, whichever comes \
                   first; the operation goes on either way.",
    params(
        crate::openapi::params::InstancePath,
        crate::openapi::params::WaitQuery,
        crate::openapi::params::CommandHeaders,
    ),
    responses(crate::openapi::responses::CommandAnswers)
)]
pub async fn delete(
    s: State<App>,
    caller: Caller,
    id: Path<String>,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult<Response> {
    request(s, caller, id, q, h, Command::Delete).await
}

async fn request(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    command: Command,
) -> ApiResult<Response> {
    let id = instance_ref(&app, &caller, &id).await?;
    let wait = wait_param(&app, &query)?;
    let key = idempotency_key(&headers)?;
    let operation_id = Uuid::now_v7();
    if let Some(key) = &key {
        // The tenant is part of the request: another tenant's reuse of a key is a 422 and
        // never answers with this tenant's operation.
        let fingerprint = fingerprint(&[command.kind().as_str(), &id.to_string(), &caller.tenant]);
        // Keys are per tenant: one tenant's key never blocks or reveals another's.
        let key = &format!("{}:{key}", caller.tenant);
        if let Some(prev) = app
            .store
            .remember_idempotency(key, operation_id, &fingerprint)
            .await?
        {
            if prev.fingerprint != fingerprint {
                return Err(ApiError::unprocessable(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                    Some("Idempotency-Key".into()),
                ));
            }
            return match app.store.operation(prev.operation).await? {
                Some(op) => Ok(respond(op)),
                None => Err(ApiError::Conflict {
                    code: "idempotent_request_in_progress",
                    message: "the original request with this Idempotency-Key is still being accepted; retry shortly".into(),
                    details: serde_json::Value::Null,
                }),
            };
        }
    }
    // Everything that can refuse the request happens before the command is appended; only
    // such a refusal releases the key. After the append, a retry must find the operation.
    let prepared = prepare(&app, &caller, id, &command).await;
    let (inst, stream) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            if let Some(key) = &key {
                app.store
                    .forget_idempotency(&format!("{}:{key}", caller.tenant))
                    .await?;
            }
            return Err(error);
        }
    };
    let trace = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut request = Request::new(stream, inst.spec.platform, Some(&inst), command, wait);
    request.idempotency_key = key;
    request.trace = trace;
    request.operation_id = operation_id;
    request.actor = Some(caller.actor());
    send(&app, &inst, request, wait).await.map(respond)
}

/// Sends a command for `inst` as `caller` (checked, routed and counted as a client's request
/// is) and waits up to `wait` for it; returns the operation as it stands then.
pub(crate) async fn issue(
    app: &App,
    caller: &Caller,
    inst: &Instance,
    command: Command,
    wait: Duration,
) -> ApiResult<Operation> {
    let stream = admit(app, inst, &command).await?;
    let mut request = Request::new(stream, inst.spec.platform, Some(inst), command, wait);
    request.actor = Some(caller.actor());
    send(app, inst, request, wait).await
}

/// Appends an admitted command and waits for it. A start that could not be appended gives
/// its max-running slot back; one that was appended is counted by the worker's state changes
/// whatever this answer says, so a failure while waiting for it gives nothing back.
async fn send(
    app: &App,
    inst: &Instance,
    request: Request<'_>,
    wait: Duration,
) -> ApiResult<Operation> {
    let starts = matches!(
        request.command.entry_state(inst.state),
        Some(Ok(InstanceState::Starting))
    );
    let submitted = match app.dispatcher.submit(request).await {
        Ok(submitted) => submitted,
        Err(error) => {
            if starts && let Err(error) = app.store.untrack_running(&inst.tenant, inst.id).await {
                tracing::warn!(message = "max-running slot not given back", instance = %inst.id, %error);
            }
            return Err(error);
        }
    };
    submitted.operation(wait).await
}

/// Loads the instance, checks the command may enter from its state, and routes it.
async fn prepare(
    app: &App,
    caller: &Caller,
    id: Uuid,
    command: &Command,
) -> ApiResult<(Instance, String)> {
    let inst = super::instances::load(app, caller, id).await?;
    let stream = admit(app, &inst, command).await?;
    Ok((inst, stream))
}

/// Checks the command may enter from the instance's state and routes it; a command that
/// starts the instance takes a slot of the tenant's max-running.
async fn admit(app: &App, inst: &Instance, command: &Command) -> ApiResult<String> {
    let id = inst.id;
    if let Some(Err(illegal)) = command.entry_state(inst.state) {
        return Err(ApiError::Conflict {
            code: "illegal_transition",
            message: format!("cannot {} this instance: {illegal}", command.kind()),
            details: serde_json::json!({ "state": inst.state, "allowed": illegal.from.successors() }),
        });
    }
    let stream = app.dispatcher.route(inst.spec.platform, Some(inst)).await?;
    // A command that starts the instance takes a slot of the tenant's max-running, last, so
    // no refusal above leaves a slot taken.
    if let Some(Ok(InstanceState::Starting)) = command.entry_state(inst.state) {
        crate::quota::reserve_start(app, &inst.tenant, id).await?;
    }
    Ok(stream)
}

/// Sends a command for `inst` (routing it first) and waits up to `wait` for it; returns the
/// operation as it stands then.
pub(crate) async fn run_command(
    app: &App,
    inst: &Instance,
    command: Command,
    wait: Duration,
) -> ApiResult<Operation> {
    let stream = app.dispatcher.route(inst.spec.platform, Some(inst)).await?;
    submit_and_wait(
        app,
        Request::new(stream, inst.spec.platform, Some(inst), command, wait),
        wait,
    )
    .await
}

/// Appends a routed command and waits up to `wait` for its reply; returns the operation.
pub(crate) async fn submit_and_wait(
    app: &App,
    request: Request<'_>,
    wait: Duration,
) -> ApiResult<Operation> {
    let submitted = app.dispatcher.submit(request).await?;
    submitted.operation(wait).await
}

/// 200 with a finished operation, 202 with a pending one.
pub(crate) fn respond(op: Operation) -> Response {
    let status = if op.state.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location = format!("/api/v1/operations/{}", op.id);
    (status, [(LOCATION, location)], Json(op)).into_response()
}

/// `?wait=` in seconds, bounded by configuration.
pub(crate) fn wait_param(app: &App, query: &HashMap<String, String>) -> ApiResult<Duration> {
    let Some(text) = query.get("wait") else {
        return Ok(app.config.default_wait);
    };
    let secs: f64 = text
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("wait=`{text}` is not a number of seconds"),
                Some("wait".into()),
            )
        })?;
    // Clamp first: a huge finite number would overflow a Duration.
    Ok(Duration::from_secs_f64(
        secs.min(app.config.max_wait.as_secs_f64()),
    ))
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_header",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            Some("Idempotency-Key".into()),
        )
    })
}

fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /api/v1/instances/{id}/logs?tail=N`: the instance's last log lines, read by the worker
/// that runs it (through the bus, like every platform access).
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/logs",
    operation_id = "getInstanceLogs",
    tag = "lifecycle",
    summary = "The instance's last log lines",
    description = "Read by the worker that runs the instance, through the bus.",
    params(
        crate::openapi::params::InstancePath,
        ("tail" = Option<u32>, Query, minimum = 1, maximum = 10000,
            description = "How many lines (default 100)."),
        crate::openapi::params::WaitQuery,
    ),
    responses(
        (status = 200, description = "The lines.", body = crate::openapi::schemas::Logs),
        (status = 202, description = "Not read within `wait`: the pending operation, whose \
            `result.lines` holds them once it succeeds.", body = draas_protocol::Operation,
            headers(("Location" = String, description = "The operation's URL."))),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`), or a \
            bad `tail` or `wait` (`invalid_query`).", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "No live worker, the logs could not be read, or Redis \
            cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn logs(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = instance_ref(&app, &caller, &id).await?;
    let tail = super::count_param(&query, "tail", 100, 1..=10_000)? as u32;
    let wait = wait_param(&app, &query)?;
    let inst = super::instances::load(&app, &caller, id).await?;
    let op = run_command(&app, &inst, Command::Logs { tail }, wait).await?;
    // Not read within `wait`: the pending operation, whose result will hold the lines.
    if !op.state.is_terminal() {
        return Ok(respond(op));
    }
    match (op.state, op.result, op.error) {
        (draas_protocol::OperationState::Succeeded, Some(result), _) => {
            let lines = result["lines"].as_str().unwrap_or_default().to_owned();
            Ok(
                Json(serde_json::json!({ "instanceId": id, "tail": tail, "lines": lines }))
                    .into_response(),
            )
        }
        (draas_protocol::OperationState::Failed, _, Some(error)) => Err(ApiError::Unavailable(
            format!("logs could not be read: {}", error.message),
        )),
        _ => Err(ApiError::Unavailable(format!(
            "no worker answered within {wait:?}; see /api/v1/operations/{}",
            op.id
        ))),
    }
}

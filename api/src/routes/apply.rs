//! `PUT /api/v1/instances/{name}`: the declarative upsert. The body is an instance document
//! (`apiVersion: draas.io/v1`, `kind: DrasiInstance`, `metadata`, `spec`); the instance named
//! by the path is created when missing (as `POST` creates) or its spec replaced when it
//! differs (as `PATCH` changes it, `ApplyConfig` included), then moved toward
//! `spec.desiredState` with a start or a stop. `If-Match: "<generation>"` makes the write
//! conditional (412 on a stale generation or a missing instance); every answer carries the
//! instance's `ETag`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use draas_protocol::env;
use draas_protocol::{Command, DesiredState, Instance, InstanceSpec, InstanceState, Operation};
use serde_json::json;
use uuid::Uuid;

use super::document::{Document, checked, if_match, in_document, precondition};
use super::instances::{load, view};
use super::lifecycle::{issue, wait_param};
use super::spec::{config_of, set_etag, valid_name};
use crate::App;
use crate::auth::Caller;
use crate::body::{media_type, parse};
use crate::error::{ApiError, ApiResult, JSON_TYPES};

/// What the PUT did to the instance's record and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/instances/{id}",
    operation_id = "putInstance",
    tag = "instances",
    summary = "Apply an instance document (create or update by name)",
    description = "Creates the instance the path names when it does not exist, or replaces its \
                   spec when it differs, then starts or stops it toward `spec.desiredState`. \
                   Idempotent: the same document again changes nothing (`unchanged`). With \
                   `If-Match`, the write happens only while the instance is at that generation \
                   (its `ETag`); `*` only while it exists. A path that is an id must name an \
                   existing instance.",
    params(
        ("id" = String, Path, description = "The instance's name (`metadata.name`), or the id \
            of an existing instance.",
            pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$"),
        crate::openapi::params::WaitQuery,
        ("If-Match" = Option<String>, Header, nullable = false, description = "`*` or the generation(s) the \
            instance must be at, as its ETag (`\"3\"`, `W/\"3\"`, `3`, comma-separated)."),
    ),
    request_body(content = crate::openapi::schemas::InstanceDocument,
        content_type = "application/json"),
    responses(
        (status = 200, description = "Updated or unchanged, and any command finished.",
            body = crate::openapi::schemas::ApplyResult, headers(
                ("ETag" = String, description = "The instance's generation, quoted."),
                ("Operation-Location" = String, description = "The command it issued, if any."),
            )),
        (status = 201, description = "Created (and started, unless `desiredState: stopped`).",
            body = crate::openapi::schemas::ApplyResult, headers(
                ("Location" = String, description = "The instance's URL."),
                ("ETag" = String, description = "The instance's generation, quoted."),
                ("Operation-Location" = String, description = "The start it issued, if any."),
            )),
        (status = 202, description = "A command it issued is still running after `wait`.",
            body = crate::openapi::schemas::ApplyResult, headers(
                ("ETag" = String, description = "The instance's generation, quoted."),
                ("Operation-Location" = String, description = "The pending operation."),
            )),
        (status = 400, description = "A bad name (`invalid_name`), document field \
            (`invalid_field`, `malformed_json`), `wait` (`invalid_query`) or `If-Match` \
            (`invalid_header`); `details.field` names it.",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "The path is an id and no such instance exists in the \
            caller's tenant (`not_found`).", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "Another platform (`platform_immutable`), the instance \
            changed meanwhile (`concurrent_modification`), a quota (`quota_exceeded`), or a \
            start or stop its state does not allow (`illegal_transition`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 412, description = "`If-Match` does not hold: another generation, or no \
            such instance (`precondition_failed`, `details.generation` is the current one).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "The spec breaks a rule (as for create; fields named \
            `spec.…` and `metadata.…`).", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "A command is needed and no live worker can take it, or \
            Redis cannot be reached (`unavailable`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn put(
    State(app): State<App>,
    caller: Caller,
    Path(target): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // The instance the path names comes first: another tenant's id is the 404 of every
    // instance route, whatever the body.
    let (name, current) = resolve(&app, &caller, &target).await?;
    let wait = wait_param(&app, &q)?;
    let condition = if_match(&headers)?;
    let media = media_type(&headers).unwrap_or_default();
    if !JSON_TYPES.contains(&media.as_str()) {
        return Err(ApiError::MediaTypeNotAccepted {
            media,
            accepted: JSON_TYPES,
        });
    }
    let doc = checked(parse::<Document>(&body)?, &name)?;
    precondition(condition.as_ref(), current.as_ref(), &name)?;
    let desired = doc.desired_state.unwrap_or(DesiredState::Running);
    let config = config_of(doc.config.unwrap_or_default()).map_err(in_document)?;
    let (outcome, inst, mut operation) = match current {
        None => {
            let spec = InstanceSpec {
                name,
                description: doc.description,
                platform: doc.platform,
                labels: doc.labels,
                config,
                restart_policy: doc.restart_policy,
                image: doc.image,
                resources: doc.resources,
                env: doc.env.unwrap_or_default(),
                desired_state: Some(desired),
            };
            let inst = super::spec::create(&app, &caller, spec)
                .await
                .map_err(in_document)?;
            (Outcome::Created, inst, None)
        }
        Some(current) => {
            if doc.platform != current.spec.platform {
                return Err(ApiError::Conflict {
                    code: "platform_immutable",
                    message: format!(
                        "spec.platform: instance `{}` runs on {}; a platform cannot change (delete and apply again)",
                        current.spec.name, current.spec.platform
                    ),
                    details: json!({ "field": "spec.platform", "platform": current.spec.platform }),
                });
            }
            let env = match doc.env {
                Some(mut env) => {
                    env::restore_secrets(&mut env, &current.spec.env);
                    env
                }
                None => current.spec.env.clone(),
            };
            let spec = InstanceSpec {
                name: current.spec.name.clone(),
                description: doc.description,
                platform: current.spec.platform,
                labels: doc.labels,
                config,
                restart_policy: doc.restart_policy,
                image: doc.image,
                resources: doc.resources,
                env,
                desired_state: Some(desired),
            };
            // A running instance that is to stop takes the new spec at its next start; one
            // that keeps running applies it now.
            let reconfigure = desired == DesiredState::Running;
            let changed =
                super::spec::change(&app, &caller, current.clone(), spec, wait, reconfigure)
                    .await
                    .map_err(in_document)?;
            match changed {
                Some(changed) => (Outcome::Updated, changed.instance, changed.operation),
                None => (Outcome::Unchanged, current, None),
            }
        }
    };
    let mut outcome = outcome;
    let mut inst = inst;
    if operation.is_none()
        && let Some(command) = toward(desired, inst.state)
    {
        operation = Some(issue(&app, &caller, &inst, command, wait).await?);
        if outcome == Outcome::Unchanged {
            outcome = Outcome::Updated;
        }
    }
    if operation.is_some() {
        inst = load(&app, &caller, inst.id).await?;
    }
    respond(outcome, inst, operation)
}

/// The command that moves an instance in `state` toward `desired`, if one is needed: a start
/// for one that is not running (created, stopped, failed), a stop for one running or
/// starting. Lost instances are the controller's (within the restart policy).
fn toward(desired: DesiredState, state: InstanceState) -> Option<Command> {
    use InstanceState::*;
    match (desired, state) {
        (DesiredState::Running, Created | Stopped | Failed) => Some(Command::Start),
        (DesiredState::Stopped, Running | Starting) => Some(Command::Stop),
        _ => None,
    }
}

/// The name the path gives and the instance it names, if it exists. UUID-shaped text is an
/// id, which must exist (a PUT by id only updates); anything else is a name in the caller's
/// tenant.
async fn resolve(
    app: &App,
    caller: &Caller,
    target: &str,
) -> ApiResult<(String, Option<Instance>)> {
    if let Ok(id) = target.parse::<Uuid>() {
        let inst = load(app, caller, id).await?;
        return Ok((inst.spec.name.clone(), Some(inst)));
    }
    if !valid_name(target) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "`{target}`: a name is 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
            ),
            Some("metadata.name".into()),
        ));
    }
    let current = match app
        .store
        .instance_id_by_name(&caller.tenant, target)
        .await?
    {
        Some(id) => app
            .store
            .instance(id)
            .await?
            .map(|s| s.instance)
            .filter(|i| caller.sees(&i.tenant)),
        None => None,
    };
    Ok((target.to_owned(), current))
}

/// `{result, instance, operation}`: 201 with `Location` for a created instance, 202 while a
/// command it issued has not finished (with `Operation-Location`), else 200; `ETag` always.
fn respond(outcome: Outcome, inst: Instance, operation: Option<Operation>) -> ApiResult<Response> {
    let pending = operation.as_ref().is_some_and(|op| !op.state.is_terminal());
    let status = match (outcome, pending) {
        (_, true) => StatusCode::ACCEPTED,
        (Outcome::Created, false) => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let (id, generation) = (inst.id, inst.generation);
    let body = json!({
        "result": outcome.as_str(),
        "instance": view(inst)?,
        "operation": operation,
    });
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    if outcome == Outcome::Created
        && let Ok(value) = HeaderValue::from_str(&format!("/api/v1/instances/{id}"))
    {
        headers.insert(LOCATION, value);
    }
    if let Some(op) = &operation
        && let Ok(value) = HeaderValue::from_str(&format!("/api/v1/operations/{}", op.id))
    {
        headers.insert("operation-location", value);
    }
    set_etag(&mut response, generation);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_way_toward_the_desired_state() {
        use InstanceState::*;
        let run = DesiredState::Running;
        let stop = DesiredState::Stopped;
        assert_eq!(toward(run, Created), Some(Command::Start));
        assert_eq!(toward(run, Failed), Some(Command::Start));
        assert_eq!(toward(run, Running), None);
        assert_eq!(toward(run, Lost), None);
        assert_eq!(toward(stop, Starting), Some(Command::Stop));
        assert_eq!(toward(stop, Created), None);
        assert_eq!(toward(stop, Failed), None);
    }
}

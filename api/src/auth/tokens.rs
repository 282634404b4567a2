//! `/api/v1/tokens`: create (the secret shown once), list (never secrets), revoke. A caller
//! that is not a cluster administrator manages only its own tenant's tokens and grants only
//! scopes it holds itself, never `*`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use draas_bus::clock::now;
use draas_bus::store::tokens::TokenError;
use draas_protocol::Timestamp;
use draas_protocol::auth::{Scope, Scopes, is_tenant_name, parse_lifetime};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Caller;
use crate::App;
use crate::body::Body;
use crate::error::{ApiError, ApiResult};

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// Defaults to the caller's tenant.
    #[serde(default)]
    tenant: Option<String>,
    scopes: Vec<Scope>,
    #[serde(default)]
    description: Option<String>,
    /// A lifetime such as `30d`, `12h`; never expires when absent.
    #[serde(default)]
    expires: Option<String>,
}

pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<CreateToken>,
) -> ApiResult<Response> {
    let tenant = body.tenant.unwrap_or_else(|| caller.tenant.clone());
    if !is_tenant_name(&tenant) {
        return Err(ApiError::unprocessable(
            "invalid_tenant",
            "tenant must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
            Some("tenant".into()),
        ));
    }
    if !caller.is_cluster_admin() && tenant != caller.tenant {
        return Err(forbidden(
            "tenant",
            format!(
                "this token may only make tokens of tenant `{}`",
                caller.tenant
            ),
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_scopes",
            "a token needs at least one scope",
            Some("scopes".into()),
        ));
    }
    if let Some(scope) = body.scopes.iter().find(|s| !caller.scopes.allows(**s)) {
        return Err(forbidden(
            "scopes",
            format!("this token cannot grant `{scope}`, which it does not hold"),
        ));
    }
    // `admin` reaches every tenant's commands and audit trail: only a cluster administrator
    // hands it out.
    if !caller.is_cluster_admin() && body.scopes.contains(&Scope::Admin) {
        return Err(forbidden(
            "scopes",
            "only a cluster administrator (`*`) can grant `admin`".to_owned(),
        ));
    }
    if body.description.as_ref().is_some_and(|d| d.len() > 256) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "description is longer than 256 bytes",
            Some("description".into()),
        ));
    }
    let expires_at = match &body.expires {
        None => None,
        Some(text) => Some(
            parse_lifetime(text)
                .map(|ms| Timestamp(now().millis().saturating_add(ms)))
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_field",
                        format!("expires=`{text}` is not a lifetime like 30d, 12h, 45m or 90s"),
                        Some("expires".into()),
                    )
                })?,
        ),
    };
    // A token never outlives the token that made it.
    let expires_at = match (expires_at, caller.expires_at) {
        (Some(asked), Some(limit)) => Some(asked.min(limit)),
        (None, limit) => limit,
        (asked, None) => asked,
    };
    let scopes: Scopes = body.scopes.into_iter().collect();
    let made = app
        .store
        .create_token(&tenant, scopes, body.description, expires_at)
        .await
        .map_err(|e| match e {
            TokenError::Bus(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        })?;
    let mut view =
        serde_json::to_value(&made.record).map_err(|e| ApiError::Internal(e.to_string()))?;
    view["secret"] = Value::String(made.secret);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let limit = crate::routes::count_param(&q, "limit", 100, 1..=500)?;
    let tenant = match (caller.is_cluster_admin(), q.get("tenant")) {
        (true, t) => t.cloned(),
        (false, _) => Some(caller.tenant.clone()),
    };
    let (items, next) = app
        .store
        .tokens_page(
            tenant.as_deref(),
            q.get("cursor").map(String::as_str),
            limit,
        )
        .await?;
    Ok(Json(json!({ "items": items, "nextCursor": next })))
}

pub async fn revoke(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::NotFound(format!("token {id} does not exist"));
    let record = app.store.token(&id).await?.ok_or_else(not_found)?;
    if !caller.sees(&record.tenant) {
        return Err(not_found());
    }
    // Short of a cluster administrator, a token revokes only tokens no stronger than itself.
    if !caller.is_cluster_admin()
        && (record.scopes.is_cluster_admin()
            || record.scopes.0.iter().any(|s| !caller.scopes.allows(*s)))
    {
        return Err(forbidden(
            "id",
            format!("token {id} holds scopes this token does not; it cannot revoke it"),
        ));
    }
    app.store.revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn forbidden(field: &'static str, message: String) -> ApiError {
    ApiError::Forbidden {
        code: "forbidden",
        message,
        field,
    }
}

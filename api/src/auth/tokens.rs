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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// Defaults to the caller's tenant.
    #[serde(default)]
    tenant: Option<String>,
    /// What the token may do: `instances:read`, `instances:write`, `instances:operate`,
    /// `data:read`, `data:write`, `tokens`, `admin`, or `*` (everything, every tenant).
    scopes: Vec<Scope>,
    /// For people, at most 256 bytes.
    #[serde(default)]
    description: Option<String>,
    /// A lifetime such as `30d`, `12h`; never expires when absent.
    #[serde(default)]
    expires: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    summary = "Create a token; its secret is shown once",
    description = "A token that is not a cluster administrator's makes tokens of its own \
                   tenant only, with scopes it holds itself, never `*` or `admin`; a token \
                   never outlives the token that made it.",
    request_body(content = CreateToken, content_type = "application/json",
        example = json!({"scopes": ["instances:read", "instances:operate"],
            "description": "dashboard", "expires": "30d"})),
    responses(
        (status = 201, description = "The token, with its secret.",
            body = crate::openapi::schemas::TokenCreated),
        (status = 400, description = "A body that is not JSON or has an unknown or mistyped \
            field.", body = crate::openapi::schemas::ErrorBody),
        (status = 403, description = "Another tenant, a scope the caller does not hold, or \
            `admin` from a caller that is not a cluster administrator (`forbidden`), or the \
            caller lacks `tokens` (`insufficient_scope`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "An invalid tenant (`invalid_tenant`), no scopes \
            (`invalid_scopes`), or a bad description or lifetime (`invalid_field`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "listTokens",
    tag = "tokens",
    summary = "List tokens (never their secrets)",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500,
            description = "Tokens per page (default 100)."),
        ("tenant" = Option<String>, Query, description = "Cluster administrators: one tenant's \
            tokens (others always see their own tenant's)."),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous \
            page."),
    ),
    responses(
        (status = 200, description = "A page.", body = crate::openapi::schemas::TokenPage),
        (status = 400, description = "A bad `limit` (`invalid_query`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "revokeToken",
    tag = "tokens",
    summary = "Revoke a token",
    params(("id" = String, Path, description = "The token's id (not its secret).")),
    responses(
        (status = 204, description = "Revoked; every API node refuses it within a second."),
        (status = 403, description = "The token holds scopes the caller does not (`forbidden`), \
            or the caller lacks `tokens` (`insufficient_scope`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such token in the caller's tenant (`not_found`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
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

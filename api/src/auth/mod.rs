//! Authentication and authorisation of API requests.
//!
//! - [`caller`]: the [`Caller`] identity every request under `/api/v1/` carries.
//! - [`policy`]: the one policy (open, or a scope) of every route.
//! - [`verify`]: bearer-token verification with a short per-node cache.
//! - [`tokens`]: `/api/v1/tokens`, token management for holders of the `tokens` scope.
//!
//! [`authorize`] is the layer: it finds the route's policy (a route without one is a 500,
//! fail closed), then, with `--auth tokens`, verifies the bearer token (401 with
//! `WWW-Authenticate: Bearer`, the same for every reason) and checks the scope (403
//! `insufficient_scope` naming it). With `--auth none` every request gets
//! [`Caller::unauthenticated`] ([`attach_unauthenticated`]).

pub mod caller;
pub mod policy;
pub mod tokens;
pub mod verify;

use std::sync::Arc;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use caller::Caller;
use policy::{Access, policy_for};
use verify::{Refusal, Verifier};

use crate::error::ApiError;

/// How requests are authenticated (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Bearer tokens (the default of `draas api`).
    #[default]
    Tokens,
    /// No authentication: every request is a cluster administrator of the default tenant.
    /// Development only; refused on a non-loopback listen address.
    None,
}

/// The state of the [`authorize`] layer.
#[derive(Clone)]
pub enum Authenticator {
    Tokens(Arc<Verifier>),
    None,
}

/// `--auth none`: every request is a cluster administrator of the default tenant.
pub async fn attach_unauthenticated(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Caller::unauthenticated());
    next.run(req).await
}

/// The authentication and authorisation layer (see the module doc).
pub async fn authorize(State(auth): State<Authenticator>, req: Request, next: Next) -> Response {
    let access = match req.extensions().get::<MatchedPath>() {
        Some(path) => match policy_for(req.method(), path.as_str()) {
            Some(access) => Some(access),
            // A method the route does not serve: the router answers 405 (to a valid token).
            None if !served(req.method(), path.as_str()) => None,
            None => {
                return ApiError::Internal(format!(
                    "route {} {} has no access policy",
                    req.method(),
                    path.as_str()
                ))
                .into_response();
            }
        },
        // No route matched: the fallback answers 404 (or 405), but only to a valid token.
        None => None,
    };
    if access == Some(Access::Open) {
        return next.run(req).await;
    }
    let caller = match &auth {
        Authenticator::None => return attach_unauthenticated(req, next).await,
        Authenticator::Tokens(verifier) => match verifier.verify(req.headers()).await {
            Ok(caller) => caller,
            Err(Refusal::Unauthorized) => return unauthorized(),
            Err(Refusal::Unavailable(e)) => {
                return ApiError::Unavailable(format!("redis is unreachable: {e}")).into_response();
            }
        },
    };
    if let Some(Access::Scope(scope)) = access
        && !caller.scopes.allows(scope)
    {
        let mut response = refusal(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this token lacks the `{scope}` scope"),
            json!({ "field": "Authorization", "scope": scope }),
        );
        // The audit trail names who was refused (the rate layer, which does so for answered
        // requests, is not reached).
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned());
        response.extensions_mut().insert(crate::limits::rate::Seen {
            caller: Some(caller),
            route,
        });
        return response;
    }
    let mut req = req;
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Whether the router serves `method` on the route template `path` (HEAD as GET).
fn served(method: &axum::http::Method, path: &str) -> bool {
    static TABLE: std::sync::OnceLock<Vec<(axum::http::Method, &'static str)>> =
        std::sync::OnceLock::new();
    let method = if method == axum::http::Method::HEAD {
        &axum::http::Method::GET
    } else {
        method
    };
    TABLE
        .get_or_init(crate::routes::table)
        .iter()
        .any(|(m, p)| m == method && *p == path)
}

/// The one 401: no hint whether the token was missing, malformed, unknown, expired or revoked.
fn unauthorized() -> Response {
    let mut response = refusal(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required (Authorization: Bearer draas_…)".into(),
        json!({ "field": "Authorization" }),
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn refusal(
    status: StatusCode,
    code: &str,
    message: String,
    details: serde_json::Value,
) -> Response {
    let body = json!({ "error": { "code": code, "message": message, "details": details } });
    (status, Json(body)).into_response()
}

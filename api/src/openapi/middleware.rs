//! What the layers in front of every handler add to each operation, derived from the code
//! that decides it rather than written per handler: the security of the route's policy
//! (`auth/policy.rs`: open routes have `security: []`), and the error responses of the guard,
//! the authentication layer and the rate limits (`guard.rs`, `auth/`, `limits/`), added where
//! the handler's own documentation does not already name that status.

use serde_json::{Value, json};

use crate::auth::policy::{Access, policy_for};
use crate::guard::MAX_URI_BYTES;

/// The reusable responses, by name (`#/components/responses/<name>`): description, example
/// code and headers.
const RESPONSES: &[(&str, &str, &str)] = &[
    (
        "BadRequest",
        "A path segment that is not percent-encoded UTF-8 (`invalid_path`), a body that could \
         not be read (`unreadable_body`), or an invalid parameter of the handler's (the \
         operation says which); `details.field` names it.",
        "invalid_path",
    ),
    (
        "Unauthorized",
        "No valid bearer token: missing, malformed, unknown, expired or revoked (one answer \
         for every reason, with `WWW-Authenticate: Bearer`).",
        "unauthorized",
    ),
    (
        "Forbidden",
        "The request's `Origin` is neither same-origin (by address or `localhost`) nor listed \
         with `--allow-origin` (`origin_not_allowed`), or the token lacks the route's scope \
         (`insufficient_scope`, `details.scope` names it).",
        "insufficient_scope",
    ),
    (
        "NotFound",
        "No such route: a path parameter is empty, or names nothing (`not_found`).",
        "not_found",
    ),
    (
        "RequestTimeout",
        "The request body did not arrive within the body read timeout (`request_timeout`); \
         the connection is closed.",
        "request_timeout",
    ),
    (
        "PayloadTooLarge",
        "The body is larger than the node's limit (1 MiB by default; `details.limit` says \
         it).",
        "payload_too_large",
    ),
    (
        "UriTooLong",
        "The path and query are longer than the limit (`uri_too_long`).",
        "uri_too_long",
    ),
    (
        "UnsupportedMediaType",
        "A body whose `Content-Type` the route does not take: `application/json` on POST, PUT \
         and DELETE; `application/merge-patch+json` or `application/json-patch+json` on PATCH \
         (`unsupported_media_type`, `details.accepted` lists them).",
        "unsupported_media_type",
    ),
    (
        "TooManyRequests",
        "Over the caller's rate limit, or too many failed authentications from this address \
         (`rate_limited`); retry after `Retry-After` seconds.",
        "rate_limited",
    ),
    (
        "Unavailable",
        "Redis cannot be reached (`unavailable`); retry later.",
        "unavailable",
    ),
];

/// Adds the shared responses and the bearer scheme to the components, and to every operation
/// its security and the statuses the layers in front of its handler can answer.
pub(super) fn apply(doc: &mut Value) {
    let components = &mut doc["components"];
    for (name, description, code) in RESPONSES {
        components["responses"][*name] = response(name, description, code);
    }
    components["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "draas_…",
        "description": "A DRaaS token: `Authorization: Bearer draas_…` (`draas tokens create`, \
                        or `POST /api/v1/tokens`). Each route needs one scope; `*` holds all."
    });
    doc["security"] = json!([{"bearer": []}]);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (template, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            let Ok(parsed) = axum::http::Method::from_bytes(method.to_uppercase().as_bytes())
            else {
                continue;
            };
            // A route without a policy is refused by the router; the drift test names it.
            let Some(access) = policy_for(&parsed, template) else {
                continue;
            };
            let mut statuses = vec![("403", "Forbidden"), ("413", "PayloadTooLarge")];
            statuses.extend([("414", "UriTooLong"), ("429", "TooManyRequests")]);
            match access {
                Access::Open => operation["security"] = json!([]),
                Access::Scope(scope) => {
                    operation["security"] = json!([{"bearer": []}]);
                    statuses.extend([("401", "Unauthorized"), ("503", "Unavailable")]);
                    let note = format!("\n\nScope: `{scope}`.");
                    if let Some(text) = operation["description"].as_str() {
                        operation["description"] = Value::String(format!("{text}{note}"));
                    } else {
                        operation["description"] = Value::String(note.trim().to_owned());
                    }
                }
            }
            if matches!(method.as_str(), "post" | "put" | "patch" | "delete") {
                statuses.extend([
                    ("400", "BadRequest"),
                    ("408", "RequestTimeout"),
                    ("415", "UnsupportedMediaType"),
                ]);
            }
            if template.contains('{') {
                statuses.extend([("400", "BadRequest"), ("404", "NotFound")]);
            }
            for (status, name) in statuses {
                let responses = &mut operation["responses"];
                if responses.get(status).is_none() {
                    responses[status] = json!({"$ref": format!("#/components/responses/{name}")});
                }
            }
        }
    }
}

fn response(name: &str, description: &str, code: &str) -> Value {
    let example = json!({"error": {"code": code, "message": description, "details": null}});
    let mut response = json!({
        "description": description,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorBody"},
            "example": example
        }}
    });
    match name {
        "Unauthorized" => {
            response["headers"]["WWW-Authenticate"] = json!({
                "description": "Always `Bearer`.",
                "schema": {"type": "string", "enum": ["Bearer"]}
            });
        }
        "TooManyRequests" => {
            response["headers"]["Retry-After"] = json!({
                "description": "Seconds to wait before retrying (at least 1).",
                "schema": {"type": "integer", "minimum": 1}
            });
        }
        "UriTooLong" => {
            response["description"] = Value::String(format!(
                "The path and query are longer than {MAX_URI_BYTES} bytes (`uri_too_long`)."
            ));
        }
        _ => {}
    }
    response
}

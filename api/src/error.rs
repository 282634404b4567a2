//! The API error type and its one mapping to HTTP: `{"error": {"code", "message", "details"}}`.
//! Server faults are logged at ERROR, a missing worker or Redis at WARN/INFO, and client
//! errors only at DEBUG.

use axum::http::header::ALLOW;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The media types a JSON body may have on POST, PUT and DELETE.
pub const JSON_TYPES: &[&str] = &["application/json"];
/// The media types a PATCH body may have.
pub const PATCH_TYPES: &[&str] = &[
    "application/merge-patch+json",
    "application/json-patch+json",
];

/// Every way a request can fail, with the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or unacceptable input; `field` names the offending field when known.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// A body that is not JSON: the innermost field known and where the parser stopped.
    #[error("{message}")]
    MalformedJson {
        message: String,
        field: String,
        line: usize,
        column: usize,
    },
    /// Well-formed input that breaks a rule (references, ids, patch tests).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// The request is refused whoever sends it this way (a foreign `Origin`).
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        message: String,
        field: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method; `allow` lists the methods it has.
    #[error("method {method} is not allowed here; allowed: {}", allow.join(", "))]
    MethodNotAllowed { method: String, allow: Vec<String> },
    /// A conflict with current state (a name taken, an illegal transition).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Value,
    },
    /// A conditional request whose condition does not hold (`If-Match` naming a generation
    /// that is not the current one, or an instance that does not exist); the details say
    /// what is current.
    #[error("{message}")]
    PreconditionFailed { message: String, details: Value },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request URI is {length} bytes long; the limit is {limit}")]
    UriTooLong { length: usize, limit: usize },
    #[error(
        "unsupported media type `{0}`; use application/merge-patch+json or application/json-patch+json"
    )]
    UnsupportedMediaType(String),
    /// A body whose `Content-Type` the route does not take (or a body without one).
    #[error("{}; send {}", describe_media(media), accepted.join(" or "))]
    MediaTypeNotAccepted {
        media: String,
        accepted: &'static [&'static str],
    },
    /// An error status produced outside the handlers (a framework rejection), reshaped.
    #[error("{message}")]
    Other {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// A data-plane request that cannot be served (an unknown query or source, an instance
    /// not running or unreachable): the status and code say why, the details name it.
    #[error("{message}")]
    Data {
        status: StatusCode,
        code: &'static str,
        message: String,
        details: Value,
    },
    /// No live worker can take the command: the platform's operators' matter, not a fault here.
    #[error("{0}")]
    NoWorker(String),
    /// Nobody can serve the request right now (Redis down, WAITAOF failing).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe_media(media: &str) -> String {
    if media.is_empty() {
        "a request body needs a Content-Type".to_owned()
    } else {
        format!("unsupported media type `{media}`")
    }
}

impl ApiError {
    pub fn bad_request(
        code: &'static str,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field,
        }
    }

    pub fn unprocessable(
        code: &'static str,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        ApiError::Unprocessable {
            code,
            message: message.into(),
            field,
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    fn parts(&self) -> (StatusCode, &'static str, Value) {
        let field = |f: &Option<String>| f.as_ref().map_or(Value::Null, |f| json!({ "field": f }));
        let media = |accepted: &[&str]| json!({ "field": "Content-Type", "accepted": accepted });
        match self {
            ApiError::BadRequest { code, field: f, .. } => {
                (StatusCode::BAD_REQUEST, code, field(f))
            }
            ApiError::MalformedJson {
                field,
                line,
                column,
                ..
            } => (
                StatusCode::BAD_REQUEST,
                "malformed_json",
                json!({ "field": field, "line": line, "column": column }),
            ),
            ApiError::Unprocessable { code, field: f, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, field(f))
            }
            ApiError::Forbidden { code, field, .. } => {
                (StatusCode::FORBIDDEN, code, json!({ "field": field }))
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", Value::Null),
            ApiError::MethodNotAllowed { allow, .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                json!({ "field": "method", "allow": allow }),
            ),
            ApiError::Conflict { code, details, .. } => {
                (StatusCode::CONFLICT, code, details.clone())
            }
            ApiError::PreconditionFailed { details, .. } => (
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                details.clone(),
            ),
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                json!({ "field": "body", "limit": limit }),
            ),
            ApiError::UriTooLong { limit, .. } => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                json!({ "field": "uri", "limit": limit }),
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                media(PATCH_TYPES),
            ),
            ApiError::MediaTypeNotAccepted { accepted, .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                media(accepted),
            ),
            ApiError::Other { status, code, .. } => (*status, code, Value::Null),
            ApiError::Data {
                status,
                code,
                details,
                ..
            } => (*status, code, details.clone()),
            ApiError::NoWorker(_) | ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Value::Null)
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", Value::Null),
        }
    }

    /// Logs the error at the level its cause deserves.
    fn log(&self, code: &str) {
        match self {
            ApiError::Internal(_) => {
                tracing::error!(message = "request failed", %code, error = %self)
            }
            ApiError::Unavailable(_) => {
                tracing::warn!(message = "request refused", %code, error = %self)
            }
            ApiError::NoWorker(_) => {
                tracing::info!(message = "request refused", %code, error = %self)
            }
            ApiError::Data { status, .. } if status.is_server_error() => {
                tracing::info!(message = "data request failed", %code, error = %self)
            }
            ApiError::Other { status, .. } if status.is_server_error() => {
                tracing::error!(message = "request failed", %code, error = %self)
            }
            _ => tracing::debug!(message = "request rejected", %code, error = %self),
        }
    }
}

impl From<draas_bus::BusError> for ApiError {
    fn from(error: draas_bus::BusError) -> Self {
        match error {
            draas_bus::BusError::Redis(e)
                if e.is_connection_dropped() || e.is_io_error() || e.is_timeout() =>
            {
                ApiError::Unavailable(format!("redis is unreachable: {e}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, details) = self.parts();
        self.log(code);
        let body =
            json!({ "error": { "code": code, "message": self.to_string(), "details": details } });
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::MethodNotAllowed { allow, .. } = &self
            && let Ok(value) = HeaderValue::from_str(&allow.join(","))
        {
            response.headers_mut().insert(ALLOW, value);
        }
        response
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

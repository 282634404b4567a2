//! The API error type and its one mapping to HTTP: `{"error": {"code", "message", "details"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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
    /// Well-formed input that breaks a rule (references, ids, patch tests).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    /// A conflict with current state (a name taken, an illegal transition).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Value,
    },
    #[error(
        "unsupported media type `{0}`; use application/merge-patch+json or application/json-patch+json"
    )]
    UnsupportedMediaType(String),
    /// Nobody can serve the request right now (no live worker, Redis down).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
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

    fn parts(&self) -> (StatusCode, &'static str, Value) {
        let field = |f: &Option<String>| f.as_ref().map_or(Value::Null, |f| json!({ "field": f }));
        match self {
            ApiError::BadRequest { code, field: f, .. } => {
                (StatusCode::BAD_REQUEST, code, field(f))
            }
            ApiError::Unprocessable { code, field: f, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, field(f))
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", Value::Null),
            ApiError::Conflict { code, details, .. } => {
                (StatusCode::CONFLICT, code, details.clone())
            }
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Value::Null,
            ),
            ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Value::Null)
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", Value::Null),
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
        if status.is_server_error() {
            tracing::error!(message = "request failed", %code, error = %self);
        }
        let body =
            json!({ "error": { "code": code, "message": self.to_string(), "details": details } });
        (status, axum::Json(body)).into_response()
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

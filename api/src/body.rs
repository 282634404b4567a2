//! Request-body parsing that names the offending field: `Body<T>` reads JSON with
//! `serde_path_to_error`, so an unknown or mistyped field comes back as a 400 whose
//! `details.field` is its path.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body of type `T`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json =
            content_type(&req).is_some_and(|ct| ct == "application/json" || ct.ends_with("+json"));
        if !json {
            return Err(ApiError::bad_request(
                "unsupported_content_type",
                "request body must be JSON (Content-Type: application/json)",
                None,
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request("unreadable_body", e.to_string(), None))?;
        parse(&bytes).map(Body)
    }
}

/// The media type of a request, without parameters.
pub fn content_type(req: &Request) -> Option<String> {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Parses JSON bytes into `T`, naming the failing field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "malformed_json"
        } else {
            "invalid_field"
        };
        // The path already ends with an unknown field's own name.
        let field = (path != ".").then_some(path);
        let message = match &field {
            Some(f) => format!("{f}: {inner}"),
            None => inner.to_string(),
        };
        ApiError::bad_request(code, message, field)
    })
}

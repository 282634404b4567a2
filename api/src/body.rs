//! Request-body parsing that names the offending field: `Body<T>` reads JSON with
//! `serde_path_to_error`, so an unknown or mistyped field comes back as a 400 whose
//! `details.field` is its path, and malformed JSON says where it broke (line and column).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{ApiError, JSON_TYPES};

/// A JSON body of type `T`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let media = content_type(&req).unwrap_or_default();
        if !JSON_TYPES.contains(&media.as_str()) {
            return Err(ApiError::MediaTypeNotAccepted {
                media,
                accepted: JSON_TYPES,
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::bad_request("unreadable_body", e.body_text(), Some("body".into()))
        })?;
        parse(&bytes).map(Body)
    }
}

/// The media type of a request, without parameters.
pub fn content_type(req: &Request) -> Option<String> {
    media_type(req.headers())
}

/// The media type in `headers`, lower case, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers.get(CONTENT_TYPE).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split(';')
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
        let field = known_path(e.path());
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            let (line, column) = (inner.line(), inner.column());
            let field = field.unwrap_or_else(|| "body".to_owned());
            let message =
                format!("malformed JSON in `{field}` at line {line}, column {column}: {inner}");
            return ApiError::MalformedJson {
                message,
                field,
                line,
                column,
            };
        }
        // The path already ends with an unknown field's own name.
        let message = match &field {
            Some(f) => format!("{f}: {inner}"),
            None => inner.to_string(),
        };
        ApiError::bad_request("invalid_field", message, field)
    })
}

/// The path up to its first unknown segment (`config.queries[0]` of `config.queries[0].?`),
/// or `None` when not even the first segment is known.
fn known_path(path: &serde_path_to_error::Path) -> Option<String> {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Unknown => break,
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        config: Value,
    }

    #[test]
    fn malformed_json_says_where() {
        let error = parse::<Doc>(b"{\n  \"name\": \"a\",\n  \"config\": {\"x\": }\n}").unwrap_err();
        match error {
            ApiError::MalformedJson {
                field,
                line,
                column,
                ..
            } => {
                assert_eq!((field.as_str(), line), ("config.x", 3), "column {column}");
                assert!(column > 0);
            }
            other => panic!("{other:?}"),
        }
        let error = parse::<Doc>(b"{,}").unwrap_err();
        assert!(
            matches!(&error, ApiError::MalformedJson { field, line: 1, column: 2, .. } if field == "body"),
            "{error:?}"
        );
    }

    #[test]
    fn a_mistyped_field_is_named() {
        let error = parse::<Doc>(br#"{"name": 1, "config": {}}"#).unwrap_err();
        assert!(
            matches!(&error, ApiError::BadRequest { code: "invalid_field", field: Some(f), .. } if f == "name"),
            "{error:?}"
        );
    }
}

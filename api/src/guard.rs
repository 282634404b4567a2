//! The request guard: one middleware every routed request passes before its handler, and
//! every response passes after it.
//!
//! Before: the URI length (414), the browser `Origin` (403 unless same-origin or listed),
//! the declared body size (413), the body's media type on state-changing methods (415), the
//! path's encoding (400); then the body is read whole, bounded (413), so no handler answers
//! with a body left unread, within the body read timeout (else 408 and the connection
//! closes). A refusal drains what the client sends (bounded in bytes and
//! time) so the connection stays usable, and says `Connection: close` when it could not.
//!
//! After: an error status that is not already JSON (a framework rejection, a 405) is
//! reshaped into the error body, keeping its headers (`Allow`).
//!
//! No CORS headers are ever sent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::ApiConfig;
use crate::body::media_type;
use crate::error::{ApiError, JSON_TYPES, PATCH_TYPES};

/// The longest request URI (path and query) answered normally; longer ones are a 414.
/// hyper itself refuses URIs of 65,535 bytes or more before the API sees them.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// A refused request's body is read and discarded up to this many bytes…
const DRAIN_BYTES: u64 = 32 * 1024 * 1024;
/// …and for at most this long; past either, the answer closes the connection.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// What the guard enforces, from [`ApiConfig`].
#[derive(Debug, Clone)]
pub struct Policy {
    allowed_origins: Vec<String>,
    max_body_bytes: usize,
    /// The whole body must arrive within this (a slow client gets a 408 and is disconnected).
    body_read_timeout: Duration,
}

impl Policy {
    pub fn new(config: &ApiConfig) -> Arc<Self> {
        let allowed_origins = config
            .allowed_origins
            .iter()
            .map(|o| normalize_origin(o).unwrap_or_else(|_| o.trim().to_ascii_lowercase()))
            .collect();
        Arc::new(Policy {
            allowed_origins,
            max_body_bytes: config.max_body_bytes,
            body_read_timeout: config.body_read_timeout,
        })
    }
}

/// The admission middleware (`from_fn_with_state`), layered on the routes so it knows which
/// route matched.
pub async fn guard(State(policy): State<Arc<Policy>>, req: Request, next: Next) -> Response {
    match admit(&policy, req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal,
    }
}

/// The reshaping middleware (`from_fn`), wrapped around the whole router so it sees the
/// finished response (axum adds `Allow` to a 405 outside the route layers).
pub async fn reshape(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    shape(&method, next.run(req).await).await
}

/// Checks a request and reads its body; a refusal is the finished response.
async fn admit(policy: &Policy, req: Request) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let declared = declared_length(&parts.headers);
    let checked = check_head(policy, &parts, &body, declared);
    let mut stream = body.into_data_stream();
    if let Err(error) = checked {
        let drained = declared.is_none_or(|n| n <= DRAIN_BYTES)
            && tokio::time::timeout(DRAIN_TIME, drain(&mut stream, 0))
                .await
                .unwrap_or(false);
        return Err(refuse(error, drained));
    }
    let mut buffered = Vec::new();
    let deadline = tokio::time::Instant::now() + policy.body_read_timeout;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await else {
            let error = ApiError::Other {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "request_timeout",
                message: format!(
                    "the request body did not arrive within {} s",
                    policy.body_read_timeout.as_secs_f64()
                ),
            };
            return Err(refuse(error, false));
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let error = ApiError::bad_request(
                    "unreadable_body",
                    format!("the request body could not be read: {e}"),
                    Some("body".into()),
                );
                return Err(refuse(error, false));
            }
        };
        if buffered.len() + chunk.len() > policy.max_body_bytes {
            let read = (buffered.len() + chunk.len()) as u64;
            let drained = tokio::time::timeout(DRAIN_TIME, drain(&mut stream, read))
                .await
                .unwrap_or(false);
            let limit = policy.max_body_bytes;
            return Err(refuse(ApiError::PayloadTooLarge { limit }, drained));
        }
        buffered.extend_from_slice(&chunk);
    }
    Ok(Request::from_parts(
        parts,
        Body::from(Bytes::from(buffered)),
    ))
}

/// Everything that can be judged before reading the body, in order.
fn check_head(
    policy: &Policy,
    parts: &axum::http::request::Parts,
    body: &Body,
    declared: Option<u64>,
) -> Result<(), ApiError> {
    check_uri(&parts.uri)?;
    check_origin(policy, &parts.headers, &parts.uri)?;
    if declared.is_some_and(|n| n > policy.max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge {
            limit: policy.max_body_bytes,
        });
    }
    // Media type and path encoding only on a route that exists: anything else is a 404.
    if let Some(route) = parts.extensions.get::<MatchedPath>() {
        check_media_type(&parts.method, &parts.headers, body)?;
        check_path_encoding(parts.uri.path(), route.as_str())?;
    }
    Ok(())
}

/// Reads and discards the rest of a body; whether it ended within [`DRAIN_BYTES`].
async fn drain(stream: &mut axum::body::BodyDataStream, mut read: u64) -> bool {
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return false };
        read += chunk.len() as u64;
        if read > DRAIN_BYTES {
            return false;
        }
    }
    true
}

/// The refusal's response; `Connection: close` when the body was not read to its end.
fn refuse(error: ApiError, drained: bool) -> Response {
    let mut response = error.into_response();
    if !drained {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn check_uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    let length = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if length > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong {
            length,
            limit: MAX_URI_BYTES,
        });
    }
    Ok(())
}

/// A request from a browser carries `Origin`; only same-origin and listed origins pass.
fn check_origin(
    policy: &Policy,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<(), ApiError> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let normalized = normalize_origin(&text).ok();
    if let Some(origin) = &normalized {
        if policy.allowed_origins.contains(origin) {
            return Ok(());
        }
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        // Same-origin by name is not trusted: a DNS-rebinding page's origin and Host are both
        // the attacker's name. Same-origin holds only for an address or `localhost`; a named
        // origin must be listed with --allow-origin.
        if host.is_some_and(|host| same_origin(origin, host) && literal_host(host)) {
            return Ok(());
        }
    }
    Err(ApiError::Forbidden {
        code: "origin_not_allowed",
        message: format!(
            "requests from origin `{text}` are not allowed; start the API with --allow-origin to allow an origin"
        ),
        field: "Origin",
    })
}

/// Whether a `Host` header names an IP address or `localhost` (not a name DNS could rebind).
fn literal_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// `scheme://host[:port]` in canonical form: lower case, no trailing `/`, no default port.
/// Only http and https origins can be listed.
pub fn normalize_origin(text: &str) -> Result<String, String> {
    let lower = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = lower
        .split_once("://")
        .ok_or_else(|| format!("`{text}` is not an origin: expected scheme://host[:port]"))?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return Err(format!("`{text}` is not an http or https origin")),
    };
    let bad = |c: char| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace();
    if authority.is_empty() || authority.contains(bad) {
        return Err(format!(
            "`{text}` is not an origin: expected scheme://host[:port] without a path"
        ));
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Ok(format!("{scheme}://{authority}"))
}

/// Whether a normalized origin names the host the request was sent to.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    normalize_origin(&format!("{scheme}://{host}"))
        .is_ok_and(|own| own.split_once("://").is_some_and(|(_, a)| a == authority))
}

/// POST, PUT and DELETE take `application/json`, PATCH its two patch types; an empty body
/// needs no type, but a declared type must be one of those (a browser form sends one).
fn check_media_type(method: &Method, headers: &HeaderMap, body: &Body) -> Result<(), ApiError> {
    let accepted = match *method {
        Method::PATCH => PATCH_TYPES,
        Method::POST | Method::PUT | Method::DELETE => JSON_TYPES,
        _ => return Ok(()),
    };
    let media = media_type(headers);
    let empty = axum::body::HttpBody::size_hint(body).exact() == Some(0);
    match media {
        Some(media) if accepted.contains(&media.as_str()) => Ok(()),
        None if empty => Ok(()),
        media => Err(ApiError::MediaTypeNotAccepted {
            media: media.unwrap_or_default(),
            accepted,
        }),
    }
}

/// Every path segment must decode to UTF-8; a bad one is named by the route's parameter.
fn check_path_encoding(path: &str, route: &str) -> Result<(), ApiError> {
    let template: Vec<&str> = route.split('/').collect();
    for (i, segment) in path.split('/').enumerate() {
        if std::str::from_utf8(&percent_decode(segment)).is_err() {
            let field = template
                .get(i)
                .and_then(|t| t.strip_prefix('{'))
                .and_then(|t| t.strip_suffix('}'))
                .unwrap_or("path");
            return Err(ApiError::bad_request(
                "invalid_path",
                format!("path segment `{segment}` is not percent-encoded UTF-8"),
                Some(field.to_owned()),
            ));
        }
    }
    Ok(())
}

fn percent_decode(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Reshapes an error response that is not JSON into the error body, keeping its headers.
async fn shape(method: &Method, response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_owned(),
        false => text,
    };
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow: parts
                .headers
                .get(ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
        },
        StatusCode::NOT_FOUND => ApiError::NotFound(message),
        status => ApiError::Other {
            status,
            code: code_for(status),
            message,
        },
    };
    let mut shaped = error.into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        431 => "header_fields_too_large",
        500 => "internal",
        503 => "unavailable",
        s if s < 500 => "client_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_compared_with_the_host() {
        assert_eq!(
            normalize_origin("HTTP://Example.com:80/").unwrap(),
            "http://example.com"
        );
        assert_eq!(
            normalize_origin("https://a.example:8443").unwrap(),
            "https://a.example:8443"
        );
        assert!(normalize_origin("example.com").is_err());
        assert!(normalize_origin("ftp://example.com").is_err());
        assert!(normalize_origin("http://example.com/path").is_err());
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://example.com", "example.com:80"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("https://example.com", "example.com:80"));
    }

    #[test]
    fn only_address_or_localhost_hosts_count_as_same_origin() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "10.0.0.5",
        ] {
            assert!(literal_host(host), "{host}");
        }
        // A rebinding page's Host is its own name.
        for host in [
            "evil.example:8080",
            "rebind.127.0.0.1.nip.io:8080",
            "[evil]:1",
        ] {
            assert!(!literal_host(host), "{host}");
        }
    }

    #[test]
    fn bad_path_segments_are_named_by_their_parameter() {
        let route = "/api/v1/instances/{id}/start";
        assert!(check_path_encoding("/api/v1/instances/%41bc/start", route).is_ok());
        let error = check_path_encoding("/api/v1/instances/%FF%FE/start", route).unwrap_err();
        assert!(
            matches!(&error, ApiError::BadRequest { field: Some(f), .. } if f == "id"),
            "{error:?}"
        );
    }
}

//! The API client of the client commands: the base URL and bearer token, one request helper
//! that turns every refusal into a [`ClientError`] carrying the API's error code, message and
//! field, and the exit code each error maps to (0 done, 1 failed, 2 usage, 3 not found,
//! 4 conflict, 5 unauthorised or forbidden, 6 API unreachable or failing).

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// How long an ordinary request may take (a lifecycle request waits at most `?wait=`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Every way a client command fails, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request: its status and error body.
    #[error("{}", describe_api(*status, code, message, field.as_deref()))]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
        details: Value,
    },
    /// No answer from the API (connection refused, timeout, a broken stream).
    #[error("cannot reach the API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A request the user must change (a missing `--yes`, an unsafe config file).
    #[error("{0}")]
    Usage(String),
    /// Something already exists or changed (a `create` of a taken name).
    #[error("{0}")]
    Conflict(String),
    /// A failed operation, or bad input found before anything was sent.
    #[error("{0}")]
    Failed(String),
    /// Exit with this code without a message: what had to be said is said (`draas diff`
    /// exits 1 when there are changes).
    #[error("exit {0}")]
    Silent(u8),
}

impl ClientError {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Api { status, .. } => match *status {
                404 => 3,
                409 | 412 => 4,
                401 | 403 => 5,
                s if s >= 500 => 6,
                _ => 1,
            },
            ClientError::Unreachable { .. } => 6,
            ClientError::Usage(_) => 2,
            ClientError::Conflict(_) => 4,
            ClientError::Failed(_) => 1,
            ClientError::Silent(code) => *code,
        }
    }

    /// Whether this is the API's 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }

    /// The same error with `what` (an instance, a file) said first.
    pub fn about(self, what: &str) -> ClientError {
        match self {
            ClientError::Api {
                status,
                code,
                message,
                field,
                details,
            } => ClientError::Api {
                status,
                code,
                message: format!("{what}: {message}"),
                field,
                details,
            },
            ClientError::Usage(m) => ClientError::Usage(format!("{what}: {m}")),
            ClientError::Conflict(m) => ClientError::Conflict(format!("{what}: {m}")),
            ClientError::Failed(m) => ClientError::Failed(format!("{what}: {m}")),
            other => other,
        }
    }
}

fn describe_api(status: u16, code: &str, message: &str, field: Option<&str>) -> String {
    match field {
        Some(field) => format!("{message} ({code}, field {field}, HTTP {status})"),
        None => format!("{message} ({code}, HTTP {status})"),
    }
}

/// The error a non-success answer carries: the API's error body when it has one.
pub fn api_error(status: StatusCode, body: &Value) -> ClientError {
    let error = &body["error"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let message = text(&error["message"]).unwrap_or_else(|| match body {
        Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => status.canonical_reason().unwrap_or("no message").to_owned(),
    });
    ClientError::Api {
        status: status.as_u16(),
        code: text(&error["code"]).unwrap_or_else(|| "http_error".to_owned()),
        message,
        field: text(&error["details"]["field"]),
        details: error["details"].clone(),
    }
}

/// A successful answer: its JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub body: Value,
}

/// The API at one base URL, with the caller's token.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Result<Api, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Failed(format!("building the HTTP client: {e}")))?;
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// A request to `path` (below the base URL), with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` (with the ordinary timeout) and reads its JSON answer; a non-success
    /// status is the API's error.
    pub async fn send(&self, request: RequestBuilder) -> Result<Reply, ClientError> {
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        let body = match text.trim() {
            "" => Value::Null,
            t => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())),
        };
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok(Reply { body })
    }

    /// Opens a streaming answer (no overall timeout); a non-success status is the API's error.
    pub async fn open(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Err(api_error(status, &body))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.send(self.request(Method::GET, path)).await?.body)
    }

    /// The error of a request that got no answer.
    pub fn unreachable(&self, error: &reqwest::Error) -> ClientError {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }
}

/// One path segment, percent-encoded (names and ids need none; anything else typed is kept
/// inside its segment).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `"<generation>"`, the `If-Match` value of a generation.
pub fn if_match(generation: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{generation}\"")).expect("digits are a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(status: u16, code: &str) -> ClientError {
        api_error(
            StatusCode::from_u16(status).unwrap(),
            &json!({"error": {"code": code, "message": "m", "details": {"field": "spec.config"}}}),
        )
    }

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        assert_eq!(refusal(404, "not_found").exit_code(), 3);
        assert_eq!(refusal(409, "name_taken").exit_code(), 4);
        assert_eq!(refusal(412, "precondition_failed").exit_code(), 4);
        assert_eq!(refusal(401, "unauthorized").exit_code(), 5);
        assert_eq!(refusal(403, "insufficient_scope").exit_code(), 5);
        assert_eq!(refusal(503, "unavailable").exit_code(), 6);
        assert_eq!(refusal(500, "internal").exit_code(), 6);
        assert_eq!(refusal(422, "invalid_config").exit_code(), 1);
        assert_eq!(refusal(400, "malformed_json").exit_code(), 1);
        let unreachable = ClientError::Unreachable {
            url: "http://x".into(),
            reason: "refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 6);
        assert_eq!(ClientError::Usage("u".into()).exit_code(), 2);
        assert_eq!(ClientError::Silent(1).exit_code(), 1);
    }

    #[test]
    fn an_api_error_names_code_field_and_status() {
        let error = refusal(412, "precondition_failed").about("instance/a");
        assert_eq!(
            error.to_string(),
            "instance/a: m (precondition_failed, field spec.config, HTTP 412)"
        );
        // A body that is not the error shape still says something.
        let bare = api_error(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(bare.to_string(), "Bad Gateway (http_error, HTTP 502)");
        assert_eq!(bare.exit_code(), 6);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("sensors-1"), "sensors-1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}

//! The worker's half of a data request: the instance's address from the driver, the request
//! to the instance, and its answer shaped for API nodes: result sets and query lists as
//! `{"items": …}`, change feeds and source answers streamed through as they are, and any
//! error of the instance's in the API's error shape with the instance's status and message.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use draas_protocol::Instance;
use draas_protocol::dataplane::{DataRoute, causes};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Forwarded, Plane, Target, refuse};
use crate::driver::Driver;

/// How long a request to an instance may take, change feeds aside.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an instance's error answer that is read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The HTTP client for instances: never through a proxy (the worker's environment may name
/// one; instances are reached directly), quick to give up connecting.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default()
}

/// Forwards one data request to `instance`.
pub(crate) async fn forward<D: Driver>(
    plane: &Plane<D>,
    instance: &Instance,
    route: &DataRoute,
    target: Target,
    forwarded: Forwarded,
) -> Response {
    let result = match (route, target) {
        (_, Target::Bases(bases)) => queries(plane, instance, &bases).await,
        (DataRoute::Changes(q), Target::Query(base)) => {
            changes(plane, instance, &base, q, forwarded).await
        }
        (DataRoute::Results(q), Target::Query(base)) => results(plane, instance, &base, q).await,
        (DataRoute::Event(s) | DataRoute::Batch(s), Target::Source) => {
            let batch = matches!(route, DataRoute::Batch(_));
            events(plane, instance, s, batch, forwarded).await
        }
        _ => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a data route reached the wrong target".into(),
            Value::Null,
        )),
    };
    result.unwrap_or_else(|refusal| refusal)
}

/// The URL of `segments` (each percent-encoded) under the instance's listener `name`.
async fn url<D: Driver>(
    plane: &Plane<D>,
    instance: &Instance,
    name: &str,
    base: &str,
    segments: &[&str],
) -> Result<reqwest::Url, Response> {
    let endpoint = plane
        .ctx
        .driver
        .endpoint(instance, name)
        .await
        .map_err(|e| unreachable(instance, name, &e.to_string()))?;
    let mut url = reqwest::Url::parse(&endpoint)
        .map_err(|e| unreachable(instance, name, &format!("bad address `{endpoint}`: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| unreachable(instance, name, "address cannot take a path"))?
        .pop_if_empty()
        .extend(base.split('/').filter(|s| !s.is_empty()))
        .extend(segments);
    Ok(url)
}

fn unreachable(instance: &Instance, name: &str, reason: &str) -> Response {
    refuse(
        StatusCode::BAD_GATEWAY,
        "instance_unreachable",
        format!(
            "instance {} cannot be reached ({name}): {reason}",
            instance.id
        ),
        json!({"instance": instance.id, "listener": name, "reason": reason}),
    )
}

/// Sends a request; a failure to get an answer at all is `instance_unreachable`.
async fn send(
    instance: &Instance,
    name: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, Response> {
    request.send().await.map_err(|e| {
        let reason = if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            causes(&e)
        };
        unreachable(instance, name, &reason)
    })
}

/// Reads a drasi-server envelope's `data`, or turns an error answer into the error shape.
async fn envelope_data(response: reqwest::Response) -> Result<Value, Response> {
    if !response.status().is_success() {
        return Err(upstream_error(response).await);
    }
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| {
        refuse(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!(
                "the instance answered {status} with a body that is not its JSON envelope: {e}"
            ),
            json!({"status": status.as_u16()}),
        )
    })?;
    Ok(body.get("data").cloned().unwrap_or(Value::Null))
}

/// An instance's error answer in the error shape, with its status and its message.
async fn upstream_error(response: reqwest::Response) -> Response {
    let status = response.status();
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY_LIMIT - body.len())]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    let message = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => ["error", "message"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| v.to_string()),
        Err(_) => String::from_utf8_lossy(&body).chars().take(500).collect(),
    };
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    refuse(
        status,
        "upstream_error",
        format!("the instance answered {status}: {message}"),
        json!({"status": status.as_u16(), "message": message}),
    )
}

/// Every query of every addressable drasi instance, with its status as the instance says.
async fn queries<D: Driver>(
    plane: &Plane<D>,
    instance: &Instance,
    bases: &[String],
) -> Result<Response, Response> {
    let mut items = Vec::new();
    for base in bases {
        let url = url(plane, instance, "api", base, &["queries"]).await?;
        let response = send(
            instance,
            "api",
            plane.client.get(url).timeout(REQUEST_TIMEOUT),
        )
        .await?;
        let data = envelope_data(response).await?;
        for q in data.as_array().into_iter().flatten() {
            let mut item = json!({"id": q["id"], "status": q["status"]});
            if let Some(message) = q.get("error_message").filter(|m| !m.is_null()) {
                item["error"] = message.clone();
            }
            items.push(item);
        }
    }
    Ok(axum::Json(json!({"items": items})).into_response())
}

/// The query's current result set.
async fn results<D: Driver>(
    plane: &Plane<D>,
    instance: &Instance,
    base: &str,
    query: &str,
) -> Result<Response, Response> {
    let url = url(plane, instance, "api", base, &["queries", query, "results"]).await?;
    let response = send(
        instance,
        "api",
        plane.client.get(url).timeout(REQUEST_TIMEOUT),
    )
    .await?;
    let rows = envelope_data(response).await?;
    Ok(axum::Json(json!({"queryId": query, "items": rows})).into_response())
}

/// The query's change feed, streamed through as the instance sends it; dropping the response
/// (the API node went away) drops the connection to the instance.
async fn changes<D: Driver>(
    plane: &Plane<D>,
    instance: &Instance,
    base: &str,
    query: &str,
    forwarded: Forwarded,
) -> Result<Response, Response> {
    let mut url = url(plane, instance, "api", base, &["queries", query, "changes"]).await?;
    url.set_query(forwarded.query.as_deref());
    let mut request = plane
        .client
        .get(url)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(last) = forwarded.headers.get("last-event-id") {
        request = request.header("last-event-id", last);
    }
    let response = send(instance, "api", request).await?;
    if !response.status().is_success() {
        return Err(upstream_error(response).await);
    }
    Ok(stream_through(
        StatusCode::OK,
        response,
        "text/event-stream",
    ))
}

/// One event or a batch into an http source; its answer passes through as it is.
async fn events<D: Driver>(
    plane: &Plane<D>,
    instance: &Instance,
    source: &str,
    batch: bool,
    forwarded: Forwarded,
) -> Result<Response, Response> {
    let name = format!("source:{source}");
    let mut segments = vec!["sources", source, "events"];
    if batch {
        segments.push("batch");
    }
    let url = url(plane, instance, &name, "", &segments).await?;
    let body = forwarded.body.unwrap_or_default();
    let mut request = plane
        .client
        .post(url)
        .timeout(REQUEST_TIMEOUT)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    if let Some(media) = forwarded.headers.get(header::CONTENT_TYPE) {
        request = request.header(header::CONTENT_TYPE, media);
    }
    let response = send(instance, &name, request).await?;
    if !response.status().is_success() {
        return Err(upstream_error(response).await);
    }
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
    Ok(stream_through(status, response, "application/json"))
}

/// A response whose body is the instance's, streamed (never buffered whole).
fn stream_through(status: StatusCode, response: reqwest::Response, default_type: &str) -> Response {
    let media = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or_else(|| {
            HeaderValue::from_str(default_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"))
        });
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    headers.insert(header::CONTENT_TYPE, media);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out
}

//! The live change feed of every query: `GET /api/v1/[instances/{instanceId}/]queries/{id}/changes`
//! as Server-Sent Events.
//!
//! This module owns the fan-out (one drasi-lib subscription per query, taken lazily by the first
//! client under [`SUBSCRIBER_ID`] and shared by every client through a broadcast channel), the
//! stream protocol below, resumption from `Last-Event-ID`, and the count of open change streams
//! that `/health` reports as `changeStreams`.
//!
//! The protocol (a contract other code relies on):
//! - Every event has `id: <epoch>:<sequence>`: `epoch` is chosen once per process ([`epoch`]),
//!   `sequence` is the query's result sequence the event brings the client to (a `reset`
//!   carries the sequence of the snapshot after it, an `end` the last sequence sent).
//! - `event: snapshot`, `{"queryId", "sequence", "results": [row…]}`: first, unless
//!   `?snapshot=false`.
//! - `event: change`, `{"queryId", "sequence", "timestamp" (RFC 3339), "added": [row…],
//!   "updated": [{"before", "after"}…], "deleted": [row…]}`: every result after the last
//!   sequence sent, in order, once. An aggregation without `before` counts as added, with
//!   `before` as updated; results whose three lists are empty are not sent.
//! - `Last-Event-ID: <epoch>:<seq>` resumes: the query's held results after `seq`, then live
//!   ones. When that is impossible (an id of an earlier run, unparsable, history evicted), an
//!   `event: reset` `{"reason"}` and a snapshot come first (even with `?snapshot=false`).
//! - A client that falls behind the broadcast gets `reset` and a fresh snapshot, then continues.
//! - `event: end` `{"reason"}` when the query stops, is removed or reconfigured, or the runtime
//!   shuts down; then the stream closes.
//! - Keep-alive comments every 15 s.
//!
//! Ordering without gaps: a client subscribes to the broadcast first, then fetches its snapshot
//! (or the held history), then skips live results at or below the last sequence sent.
//!
//! Errors before any stream, in the API's envelope: 404 (unknown instance or query), 409 (query
//! not running), 400 (bad `snapshot`), 503 (the subscription or first fetch took longer than
//! 30 s, or the runtime is shutting down).
//!
//! A client's stream is a plain `unfold` over its own state: dropping the response (the client
//! went away) drops its broadcast receiver at once; no task per client.
//!
//! Layout:
//! - `mod.rs` (this file): the protocol's constants, the [`epoch`], the route handler and the
//!   opening of a stream (checks, joining the feed, the first events).
//! - `hub.rs`: [`ChangeHub`], the shared subscription per query, its forwarding task and
//!   broadcast, and the count of open streams.
//! - `client.rs`: one client's stream (its position in the feed, resumption, resets, and the
//!   events it sends).
//! - `tests.rs`: unit tests.

mod client;
mod hub;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use drasi_lib::ComponentStatus;
use drasi_lib::queries::FetchError;
use tokio::time::{Instant, timeout_at};

use crate::api::{Envelope, Instance, Instances, instance, to_params};

use client::Client;
pub use hub::ChangeHub;
use hub::OpenStream;

/// The subscriber id of the one drasi-lib subscription per query.
pub const SUBSCRIBER_ID: &str = "__draas_changes__";
/// Results a client may fall behind the feed before it is reset.
const FEED_CAPACITY: usize = 1024;
/// Bound on the subscription (a query still bootstrapping) plus the first fetch.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive comment interval.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

static EPOCH: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// This process's epoch: the first half of every event id.
pub fn epoch() -> &'static str {
    &EPOCH
}

fn shutting_down() -> Envelope {
    Envelope::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The runtime is shutting down",
    )
}

fn too_slow(query_id: &str) -> Envelope {
    Envelope::error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Query '{query_id}' did not become ready within {SETUP_TIMEOUT:?}; try again"),
    )
}

/// `GET …/queries/{id}/changes`.
pub(crate) async fn query_changes(
    State(instances): State<Instances>,
    State(hub): State<Arc<ChangeHub>>,
    raw: RawPathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = to_params(&raw);
    let inst = match instance(&instances, &params) {
        Ok(inst) => inst.clone(),
        Err(e) => return e.into_response(),
    };
    let query_id = params.get("id").cloned().unwrap_or_default();
    let with_snapshot = match wants_snapshot(query.as_deref()) {
        Ok(with_snapshot) => with_snapshot,
        Err(e) => return e.into_response(),
    };
    let resume = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .filter(|v| !v.is_empty());
    let client = match open(&hub, &inst, &query_id, with_snapshot, resume.as_deref()).await {
        Ok(client) => client,
        Err(e) => return e.into_response(),
    };
    let open = OpenStream::new(hub);
    let stream = futures::stream::unfold((client, open), |(mut client, open)| async move {
        let out = client.next_event().await?;
        Some((Ok::<_, Infallible>(out.into_event()), (client, open)))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `?snapshot=true|false` (default true).
fn wants_snapshot(query: Option<&str>) -> Result<bool, Envelope> {
    let mut snapshot = true;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "snapshot" {
            snapshot = match value.as_ref() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(Envelope::error(
                        StatusCode::BAD_REQUEST,
                        format!("snapshot must be true or false, not '{other}'"),
                    ));
                }
            };
        }
    }
    Ok(snapshot)
}

/// Checks the query, joins its feed and queues the first events, within [`SETUP_TIMEOUT`].
async fn open(
    hub: &Arc<ChangeHub>,
    inst: &Instance,
    query_id: &str,
    with_snapshot: bool,
    resume: Option<&str>,
) -> Result<Client, Envelope> {
    if hub.is_closing() {
        return Err(shutting_down());
    }
    let info = inst
        .lib
        .get_query_info(query_id)
        .await
        .map_err(Envelope::from_drasi)?;
    if !matches!(
        info.status,
        ComponentStatus::Running | ComponentStatus::Starting
    ) {
        return Err(Envelope::error(
            StatusCode::CONFLICT,
            format!(
                "Query '{query_id}' is not running (status: {:?})",
                info.status
            ),
        ));
    }
    let query = inst
        .lib
        .query_manager()
        .get_query_instance(query_id)
        .await
        .map_err(|e| Envelope::error(StatusCode::NOT_FOUND, e))?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let rx = timeout_at(deadline, hub.receiver(inst, query_id, &query))
        .await
        .map_err(|_| too_slow(query_id))??;
    let mut client = Client {
        query,
        query_id: query_id.to_string(),
        rx,
        last: 0,
        pending: VecDeque::new(),
        done: false,
    };
    timeout_at(deadline, client.start(with_snapshot, resume))
        .await
        .map_err(|_| too_slow(query_id))?
        .map_err(|e| fetch_failed(query_id, e))?;
    Ok(client)
}

fn fetch_failed(query_id: &str, e: FetchError) -> Envelope {
    let status = match e {
        FetchError::NotRunning { .. } => StatusCode::CONFLICT,
        FetchError::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
        FetchError::OutboxGap(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Envelope::error(status, format!("Query '{query_id}': {e}"))
}

/// `<epoch>:<sequence>`.
fn parse_event_id(id: &str) -> Option<(&str, u64)> {
    let (epoch, sequence) = id.split_once(':')?;
    Some((epoch, sequence.parse().ok()?))
}

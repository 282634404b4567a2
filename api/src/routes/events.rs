//! Server-Sent Events of state changes: an `open` comment (so headers go out at once), recent
//! history, then live from the node's feed, only the caller's tenant's (filtered on the
//! server). An unknown instance is a 404 before any stream.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use draas_bus::store::EventEntry;
use futures::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use super::instance_ref;
use crate::App;
use crate::auth::Caller;
use crate::error::ApiResult;

/// How many past events a new subscriber is sent before live ones.
const HISTORY: usize = 200;

#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "watchEvents",
    tag = "events",
    summary = "Every state change of the tenant's instances (Server-Sent Events)",
    description = "An `open` comment first, then up to 200 recent events, then live ones, each \
                   as `event: instance`, `id: <stream id>`, `data: <Event as JSON>` (see the \
                   `Event` schema). Only the caller's tenant's instances. The stream ends when \
                   the token lapses or the node stops; keep-alive comments keep it open.",
    responses(
        (status = 200, description = "An endless `text/event-stream`; the schema is one event's.",
            content_type = "text/event-stream", body = crate::openapi::schemas::InstanceEventFrame),
    ),
)]
pub async fn all(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    stream_events(app, caller, None).await
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/events",
    operation_id = "watchInstanceEvents",
    tag = "events",
    summary = "One instance's state changes (Server-Sent Events)",
    description = "An `open` comment first, then up to 200 recent events, then live ones, each \
                   as `event: instance`, `id: <stream id>`, `data: <Event as JSON>` (see the \
                   `Event` schema). Only the caller's tenant's instances. The stream ends when \
                   the token lapses or the node stops; keep-alive comments keep it open.",
    params(crate::openapi::params::InstancePath),
    responses(
        (status = 200, description = "An endless `text/event-stream`; the schema is one event's.",
            content_type = "text/event-stream", body = crate::openapi::schemas::InstanceEventFrame),
        (status = 400, description = "Neither an instance id nor a name (`invalid_id`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such instance in the caller's tenant (`not_found`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn instance(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let id = instance_ref(&app, &caller, &id).await?;
    // An unknown (or unseen) instance is a 404 at once, not a stream that never says anything.
    super::instances::load(&app, &caller, id).await?;
    stream_events(app, caller, Some(id)).await
}

async fn stream_events(
    app: App,
    caller: Caller,
    instance: Option<Uuid>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let caller_for_lapse = caller.clone();
    // Subscribe before reading history, so nothing falls between the two.
    let live = BroadcastStream::new(app.events.subscribe()).filter_map(|e| async move { e.ok() });
    let history = app.store.recent_events(HISTORY).await?;
    let last_seen = history.last().map(|e| e.id.clone());
    // Filtered here, on the server: a tenant's feed carries only its own instances' events;
    // events without a tenant (older than tenants) only reach cluster administrators.
    let wanted = move |e: &EventEntry| {
        instance.is_none_or(|id| e.event.instance_id == id)
            && (caller.is_cluster_admin()
                || e.event.tenant.as_deref().is_some_and(|t| caller.sees(t)))
    };
    let live = live.filter(move |e| {
        let newer = last_seen
            .as_ref()
            .is_none_or(|seen| stream_id_after(&e.id, seen));
        futures::future::ready(newer)
    });
    // A comment first, so the client has the headers at once even when no event matches yet.
    let opened = stream::once(futures::future::ready(Ok(
        SseEvent::default().comment("open")
    )));
    let events = stream::iter(history)
        .chain(live)
        .filter(move |e| futures::future::ready(wanted(e)))
        .map(|e| {
            let data = serde_json::to_string(&e.event).unwrap_or_default();
            Ok(SseEvent::default().id(e.id).event("instance").data(data))
        });
    let lapsed = crate::auth::verify::lapsed(app.store.clone(), caller_for_lapse);
    let events = opened
        .chain(events)
        .take_until(app.stop.clone().cancelled_owned())
        .take_until(lapsed);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Whether stream id `a` comes after `b` (`ms-seq` compared numerically).
fn stream_id_after(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a) > parse(b)
}

//! The audit trail of API requests: every mutating request (POST, PUT, PATCH, DELETE) and
//! every refused one (any 4xx or 5xx, on any route) becomes an entry of the capped audit
//! stream (`draas_bus::store::AuditEntry`). Events posted into an instance's sources are the
//! tenant's data, not actions on the service: only their refusals are recorded, so a
//! tenant's ingest never pushes the service's history out of the capped stream.
//!
//! Recording never waits on Redis: the middleware hands the entry to a bounded channel and
//! returns; one background writer per node appends what is queued in pipelined batches. When
//! the channel is full (Redis slow or down for long) the entry is dropped, counted, and a
//! warning logged; requests are never slowed or refused by auditing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::LOCATION;
use axum::middleware::Next;
use axum::response::Response;
use draas_bus::Store;
use draas_bus::clock::now;
use draas_bus::store::AuditEntry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::limits::rate::Seen;

/// Entries waiting for the writer; past this, new ones are dropped.
const QUEUE: usize = 10_000;
/// Entries appended per pipeline.
const BATCH: usize = 256;

/// The sending side of the node's audit writer. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<AuditEntry>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the writer; it ends after `stop`, once the queue is written.
    pub fn start(store: Store, maxlen: usize, stop: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, maxlen, rx, stop));
        Recorder {
            tx,
            dropped: Arc::default(),
        }
    }

    /// Queues an entry without waiting.
    pub fn record(&self, entry: AuditEntry) {
        if self.tx.try_send(entry).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    message = "audit queue full; entries dropped",
                    dropped_total = dropped
                );
            }
        }
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write(
    store: Store,
    maxlen: usize,
    mut rx: mpsc::Receiver<AuditEntry>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            entry = rx.recv() => entry,
            () = stop.cancelled() => {
                // Write what is queued, then end.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        let written =
            tokio::time::timeout(Duration::from_secs(5), store.append_audit(&batch, maxlen)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(message = "audit entries not written", count = batch.len(), %error)
            }
            Err(_) => {
                tracing::warn!(
                    message = "audit entries not written: Redis timed out",
                    count = batch.len()
                )
            }
        }
        batch.clear();
    }
}

/// Route templates whose accepted requests carry a tenant's data, not an action.
const DATA_WRITES: &[&str] = &[
    "/api/v1/instances/{id}/sources/{source}/events",
    "/api/v1/instances/{id}/sources/{source}/events/batch",
];

/// Whether a request to `route` answered with `status` is audited.
fn audited(method: &Method, route: Option<&str>, status: u16) -> bool {
    if status >= 400 {
        return true;
    }
    let mutating = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    mutating && !route.is_some_and(|r| DATA_WRITES.contains(&r))
}

/// The middleware (`from_fn_with_state`), outermost, so it sees every final status. The
/// caller and route come from the rate-limit layer inside ([`Seen`]); a request refused
/// before that (by the guard or authentication) is recorded as `unknown`.
pub async fn record(State(recorder): State<Recorder>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let seen = response.extensions().get::<Seen>();
    if !audited(&method, seen.and_then(|s| s.route.as_deref()), status) {
        return response;
    }
    let caller = seen.and_then(|s| s.caller.as_ref());
    let operation = ["operation-location", LOCATION.as_str()]
        .iter()
        .filter_map(|h| response.headers().get(*h))
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("/api/v1/operations/"))
        .map(str::to_owned);
    recorder.record(AuditEntry {
        id: String::new(),
        at: now().millis(),
        actor: caller.map_or_else(|| "unknown".to_owned(), |c| c.actor()),
        tenant: caller.map(|c| c.tenant.clone()),
        method: method.to_string(),
        route: seen.and_then(|s| s.route.clone()),
        path: truncate(path, 512),
        status,
        operation,
    });
    response
}

/// Bounds what a hostile path can put in the stream.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_audited() {
        assert!(audited(&Method::POST, Some("/api/v1/instances"), 201));
        assert!(audited(&Method::DELETE, None, 200));
        assert!(audited(&Method::GET, None, 404));
        assert!(audited(&Method::GET, None, 429));
        assert!(!audited(&Method::GET, None, 200));
        let events = Some("/api/v1/instances/{id}/sources/{source}/events/batch");
        assert!(!audited(&Method::POST, events, 200));
        assert!(audited(&Method::POST, events, 409));
        assert_eq!(truncate("ab€".into(), 3), "ab");
    }
}

//! The shared subscription per query: [`ChangeHub`], each query's [`Feed`] and the task that
//! forwards drasi-lib's results to its broadcast, and the count of open change streams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use drasi_lib::channels::{
    ChangeReceiver, ComponentEventBroadcastReceiver, ComponentType, QueryResult,
};
use drasi_lib::queries::Query;
use drasi_lib::{ComponentStatus, DrasiLib};
use futures::FutureExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OnceCell, broadcast, watch};

use super::{FEED_CAPACITY, SUBSCRIBER_ID, shutting_down};
use crate::api::{Envelope, Instance};

type Key = (String, String);

/// What the forwarding task of a query broadcasts to its clients.
#[derive(Debug, Clone)]
pub(super) enum Item {
    Result(Arc<QueryResult>),
    End(String),
}

/// One query's shared subscription.
#[derive(Default)]
struct Feed {
    sender: OnceCell<broadcast::Sender<Item>>,
    /// Set before the final `End` is broadcast: a receiver taken after this may miss it.
    ended: AtomicBool,
}

/// The feeds of every query of every instance, and the count of open change streams.
pub struct ChangeHub {
    feeds: Mutex<HashMap<Key, Arc<Feed>>>,
    open: AtomicUsize,
    closing: watch::Sender<bool>,
}

impl ChangeHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            feeds: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            closing: watch::Sender::new(false),
        })
    }

    /// Change streams currently open.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Ends every change stream (`end`, "the runtime is shutting down") and refuses new ones
    /// with 503. Call before a graceful shutdown of the server, whose open streams never finish
    /// on their own.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    pub(super) fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// A receiver of the query's feed, subscribing to the query if no feed runs.
    pub(super) async fn receiver(
        self: &Arc<Self>,
        inst: &Instance,
        query_id: &str,
        query: &Arc<dyn Query>,
    ) -> Result<broadcast::Receiver<Item>, Envelope> {
        let key = (inst.id.clone(), query_id.to_string());
        // A feed may end between lookup and subscribe; then the next attempt starts a new one.
        for _ in 0..3 {
            if self.is_closing() {
                return Err(shutting_down());
            }
            let feed = self
                .feeds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default()
                .clone();
            let sender = feed
                .sender
                .get_or_try_init(|| self.start_feed(key.clone(), inst, query, feed.clone()))
                .await?;
            let rx = sender.subscribe();
            if !feed.ended.load(Ordering::SeqCst) {
                return Ok(rx);
            }
            self.forget(&key, &feed);
        }
        Err(Envelope::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The change feed of query '{query_id}' keeps ending; try again"),
        ))
    }

    async fn start_feed(
        self: &Arc<Self>,
        key: Key,
        inst: &Instance,
        query: &Arc<dyn Query>,
        feed: Arc<Feed>,
    ) -> Result<broadcast::Sender<Item>, Envelope> {
        // Before subscribing, so no stop after the subscription goes unseen.
        let events = inst.lib.subscribe_all_component_events();
        let subscription = query
            .subscribe(SUBSCRIBER_ID.to_string())
            .await
            .map_err(|e| Envelope::error(StatusCode::CONFLICT, format!("{e:#}")))?;
        let (sender, _) = broadcast::channel(FEED_CAPACITY);
        tracing::debug!(instance = %key.0, query = %key.1, "change feed started");
        tokio::spawn(forward(
            self.clone(),
            key,
            inst.lib.clone(),
            subscription.receiver,
            events,
            sender.clone(),
            feed,
        ));
        Ok(sender)
    }

    /// Removes `feed` from the hub if it is still the query's current one.
    fn forget(&self, key: &Key, feed: &Arc<Feed>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if feeds.get(key).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            feeds.remove(key);
        }
    }
}

/// The forwarding task of one query: drasi-lib's results to the broadcast, until the query
/// stops, is removed or reconfigured, or the hub closes. Then the feed leaves the hub (a later
/// client subscribes anew) and its clients get `End`.
async fn forward(
    hub: Arc<ChangeHub>,
    key: Key,
    lib: Arc<DrasiLib>,
    mut results: Box<dyn ChangeReceiver<QueryResult>>,
    mut events: ComponentEventBroadcastReceiver,
    sender: broadcast::Sender<Item>,
    feed: Arc<Feed>,
) {
    let mut closing = hub.closing.subscribe();
    let query_id = key.1.as_str();
    let reason = 'feed: {
        if let Some(reason) = ended_now(&lib, query_id).await {
            break 'feed reason;
        }
        loop {
            tokio::select! {
                biased;
                result = results.recv() => match result {
                    Ok(result) => {
                        // No receivers is fine: the feed outlives its clients.
                        let _ = sender.send(Item::Result(result));
                    }
                    Err(_) => break 'feed "the query was removed".to_string(),
                },
                event = events.recv() => match event {
                    Ok(event) => {
                        if event.component_type == ComponentType::Query
                            && event.component_id == query_id
                            && let Some(reason) = ended_by(event.status, event.message.as_deref())
                        {
                            break 'feed reason;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if let Some(reason) = ended_now(&lib, query_id).await {
                            break 'feed reason;
                        }
                    }
                    Err(RecvError::Closed) => break 'feed "the instance stopped".to_string(),
                },
                _ = async { closing.wait_for(|closing| *closing).await.map(|_| ()) } => {
                    break 'feed "the runtime is shutting down".to_string();
                }
            }
        }
    };
    // Results the query delivered before it ended still reach the clients.
    while let Some(Ok(result)) = results.recv().now_or_never() {
        let _ = sender.send(Item::Result(result));
    }
    feed.ended.store(true, Ordering::SeqCst);
    hub.forget(&key, &feed);
    tracing::debug!(instance = %key.0, query = %key.1, "change feed ended: {reason}");
    let _ = sender.send(Item::End(reason));
}

/// Why a query in `status` no longer feeds changes, or `None` while it does.
pub(super) fn ended_by(status: ComponentStatus, message: Option<&str>) -> Option<String> {
    match status {
        ComponentStatus::Added | ComponentStatus::Starting | ComponentStatus::Running => None,
        ComponentStatus::Stopping | ComponentStatus::Stopped => {
            Some("the query stopped".to_string())
        }
        ComponentStatus::Removed => Some("the query was removed".to_string()),
        ComponentStatus::Reconfiguring => Some("the query is being reconfigured".to_string()),
        ComponentStatus::Error => Some(match message {
            Some(message) => format!("the query failed: {message}"),
            None => "the query failed".to_string(),
        }),
    }
}

async fn ended_now(lib: &DrasiLib, query_id: &str) -> Option<String> {
    match lib.get_query_info(query_id).await {
        Ok(info) => ended_by(info.status, info.error_message.as_deref()),
        Err(_) => Some("the query was removed".to_string()),
    }
}

/// Counts an open change stream while it lives.
pub(super) struct OpenStream(Arc<ChangeHub>);

impl OpenStream {
    pub(super) fn new(hub: Arc<ChangeHub>) -> Self {
        hub.open.fetch_add(1, Ordering::SeqCst);
        Self(hub)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

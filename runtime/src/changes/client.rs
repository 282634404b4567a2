//! One client's stream: its position in a query's feed, resumption from `Last-Event-ID`,
//! resets, and the events it sends.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::response::sse::Event;
use drasi_lib::channels::{QueryResult, ResultDiff};
use drasi_lib::queries::{FetchError, Query, SnapshotResponse};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::hub::Item;
use super::{EPOCH, SETUP_TIMEOUT, parse_event_id};

/// One client's position in a query's feed.
pub(super) struct Client {
    pub(super) query: Arc<dyn Query>,
    pub(super) query_id: String,
    pub(super) rx: broadcast::Receiver<Item>,
    /// The last sequence sent (or covered by the snapshot sent).
    pub(super) last: u64,
    pub(super) pending: VecDeque<Out>,
    pub(super) done: bool,
}

/// One event to send: `event: kind`, `id: <epoch>:<sequence>`, `data: data`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Out {
    pub(super) kind: &'static str,
    pub(super) sequence: u64,
    pub(super) data: Value,
}

impl Out {
    pub(super) fn into_event(self) -> Event {
        Event::default()
            .event(self.kind)
            .id(format!("{}:{}", EPOCH.as_str(), self.sequence))
            .data(self.data.to_string())
    }
}

pub(super) fn out(kind: &'static str, sequence: u64, data: Value) -> Out {
    Out {
        kind,
        sequence,
        data,
    }
}

impl Client {
    /// Queues the first events: a snapshot, the held history after `resume`, or a reset.
    pub(super) async fn start(
        &mut self,
        with_snapshot: bool,
        resume: Option<&str>,
    ) -> Result<(), FetchError> {
        let Some(resume) = resume else {
            let snapshot = self.query.fetch_snapshot().await?;
            self.last = snapshot.as_of_sequence;
            if with_snapshot {
                self.push_snapshot(&snapshot);
            }
            return Ok(());
        };
        let reason = match parse_event_id(resume) {
            None => format!("'{resume}' is not an event id of this change feed"),
            Some((epoch, _)) if epoch != EPOCH.as_str() => {
                "the instance restarted since that event, and a query's history does not outlive \
                 its run"
                    .to_string()
            }
            Some((_, after)) => match self.query.fetch_outbox(after).await {
                Ok(outbox) if after <= outbox.latest_sequence => {
                    self.last = after;
                    for result in &outbox.results {
                        self.push_change(result);
                    }
                    return Ok(());
                }
                Ok(outbox) => format!(
                    "sequence {after} is ahead of the query's latest ({}): its history restarted",
                    outbox.latest_sequence
                ),
                Err(FetchError::OutboxGap(gap)) => format!(
                    "history no longer held: the query keeps the changes after sequence {} only",
                    gap.earliest_available.saturating_sub(1)
                ),
                Err(e) => return Err(e),
            },
        };
        self.reset(reason).await
    }

    /// Queues `reset` with `reason` and a fresh snapshot.
    async fn reset(&mut self, reason: String) -> Result<(), FetchError> {
        let snapshot = self.query.fetch_snapshot().await?;
        self.last = snapshot.as_of_sequence;
        self.pending.push_back(out(
            "reset",
            snapshot.as_of_sequence,
            json!({"reason": reason}),
        ));
        self.push_snapshot(&snapshot);
        Ok(())
    }

    fn push_snapshot(&mut self, snapshot: &SnapshotResponse) {
        self.pending.push_back(out(
            "snapshot",
            snapshot.as_of_sequence,
            json!({
                "queryId": self.query_id,
                "sequence": snapshot.as_of_sequence,
                "results": snapshot.to_vec(),
            }),
        ));
    }

    /// Queues a `change` for `result` unless already covered or empty.
    fn push_change(&mut self, result: &QueryResult) {
        if result.sequence <= self.last {
            return;
        }
        self.last = result.sequence;
        if let Some(data) = change_data(&self.query_id, result) {
            self.pending.push_back(out("change", result.sequence, data));
        }
    }

    fn end(&mut self, reason: String) {
        self.pending
            .push_back(out("end", self.last, json!({"reason": reason})));
        self.done = true;
    }

    /// The next event to send, or `None` once the stream is over.
    pub(super) async fn next_event(&mut self) -> Option<Out> {
        loop {
            if let Some(out) = self.pending.pop_front() {
                return Some(out);
            }
            if self.done {
                return None;
            }
            match self.rx.recv().await {
                Ok(Item::Result(result)) => self.push_change(&result),
                Ok(Item::End(reason)) => self.end(reason),
                Err(RecvError::Lagged(missed)) => {
                    let reason = format!(
                        "the client fell behind the change feed ({missed} results dropped); a \
                         fresh snapshot follows"
                    );
                    match tokio::time::timeout(SETUP_TIMEOUT, self.reset(reason)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => self.end(format!("cannot resynchronise: {e}")),
                        Err(_) => self.end(format!(
                            "cannot resynchronise: no snapshot within {SETUP_TIMEOUT:?}"
                        )),
                    }
                }
                Err(RecvError::Closed) => self.end("the change feed closed".to_string()),
            }
        }
    }
}

/// The `change` event data of `result`, or `None` when it changes nothing.
pub(super) fn change_data(query_id: &str, result: &QueryResult) -> Option<Value> {
    let (mut added, mut updated, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    for diff in &result.results {
        match diff {
            ResultDiff::Add { data, .. } => added.push(data.clone()),
            ResultDiff::Delete { data, .. } => deleted.push(data.clone()),
            ResultDiff::Update { before, after, .. } => {
                updated.push(json!({"before": before, "after": after}))
            }
            ResultDiff::Aggregation {
                before: None,
                after,
                ..
            } => added.push(after.clone()),
            ResultDiff::Aggregation {
                before: Some(before),
                after,
                ..
            } => updated.push(json!({"before": before, "after": after})),
            ResultDiff::Noop => {}
        }
    }
    if added.is_empty() && updated.is_empty() && deleted.is_empty() {
        return None;
    }
    Some(json!({
        "queryId": query_id,
        "sequence": result.sequence,
        "timestamp": result.timestamp.to_rfc3339(),
        "added": added,
        "updated": updated,
        "deleted": deleted,
    }))
}

//! Unit tests of the change feed: event data, ids, and a client's stream against a fake query.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use drasi_lib::ComponentStatus;
use drasi_lib::channels::{QueryResult, ResultDiff};
use drasi_lib::queries::{FetchError, Query, SnapshotResponse};
use futures::FutureExt;
use serde_json::json;
use tokio::sync::broadcast;

use super::client::{Client, change_data, out};
use super::hub::{Item, ended_by};
use super::{epoch, parse_event_id};

fn result(sequence: u64, results: Vec<ResultDiff>) -> QueryResult {
    QueryResult::new(
        "q".to_string(),
        sequence,
        Default::default(),
        results,
        HashMap::new(),
    )
}

#[test]
fn event_ids_parse() {
    assert_eq!(parse_event_id("abc:12"), Some(("abc", 12)));
    assert_eq!(parse_event_id("abc"), None);
    assert_eq!(parse_event_id("abc:x"), None);
    assert_eq!(parse_event_id("abc:-1"), None);
    assert!(!epoch().is_empty() && !epoch().contains(':'));
}

#[test]
fn diffs_become_added_updated_deleted() {
    let data = change_data(
        "q",
        &result(
            7,
            vec![
                ResultDiff::Add {
                    data: json!({"a": 1}),
                    row_signature: 1,
                },
                ResultDiff::Noop,
                ResultDiff::Update {
                    data: json!({"a": 3}),
                    before: json!({"a": 2}),
                    after: json!({"a": 3}),
                    grouping_keys: None,
                    row_signature: 2,
                },
                ResultDiff::Delete {
                    data: json!({"a": 4}),
                    row_signature: 3,
                },
                ResultDiff::Aggregation {
                    before: None,
                    after: json!({"n": 1}),
                    row_signature: 4,
                },
                ResultDiff::Aggregation {
                    before: Some(json!({"n": 1})),
                    after: json!({"n": 2}),
                    row_signature: 4,
                },
            ],
        ),
    )
    .expect("a change");
    assert_eq!(data["queryId"], "q");
    assert_eq!(data["sequence"], 7);
    assert!(data["timestamp"].as_str().is_some_and(|t| t.contains('T')));
    assert_eq!(data["added"], json!([{"a": 1}, {"n": 1}]));
    assert_eq!(
        data["updated"],
        json!([{"before": {"a": 2}, "after": {"a": 3}}, {"before": {"n": 1}, "after": {"n": 2}}])
    );
    assert_eq!(data["deleted"], json!([{"a": 4}]));
}

#[test]
fn empty_results_are_not_changes() {
    assert_eq!(change_data("q", &result(1, vec![ResultDiff::Noop])), None);
    assert_eq!(change_data("q", &result(2, vec![])), None);
}

/// A query whose output is `held` (the outbox) up to sequence `head`, with no rows.
struct FakeQuery {
    config: drasi_lib::config::QueryConfig,
    head: u64,
    held: Vec<Arc<QueryResult>>,
}

impl FakeQuery {
    fn arc(head: u64, held: impl IntoIterator<Item = u64>) -> Arc<dyn Query> {
        Arc::new(Self {
            config: serde_json::from_value(json!({"id": "q", "query": "MATCH (n) RETURN n"}))
                .expect("query config"),
            head,
            held: held.into_iter().map(|s| Arc::new(added(s))).collect(),
        })
    }
}

#[async_trait::async_trait]
impl Query for FakeQuery {
    async fn start(&self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn stop(&self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn status(&self) -> ComponentStatus {
        ComponentStatus::Running
    }
    fn get_config(&self) -> &drasi_lib::config::QueryConfig {
        &self.config
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    async fn subscribe(
        &self,
        _: String,
    ) -> anyhow::Result<drasi_lib::channels::QuerySubscriptionResponse> {
        anyhow::bail!("not used")
    }
    async fn fetch_snapshot(&self) -> Result<SnapshotResponse, FetchError> {
        Ok(SnapshotResponse::new(Default::default(), self.head, 0))
    }
    async fn fetch_outbox(
        &self,
        after: u64,
    ) -> Result<drasi_lib::queries::OutboxResponse, FetchError> {
        let earliest = self.held.first().map_or(self.head + 1, |r| r.sequence);
        if after < self.head && after + 1 < earliest {
            return Err(FetchError::OutboxGap(drasi_lib::queries::OutboxGap {
                requested: after,
                earliest_available: earliest,
                latest_sequence: self.head,
                config_hash: 0,
            }));
        }
        Ok(drasi_lib::queries::OutboxResponse {
            results: self
                .held
                .iter()
                .filter(|r| r.sequence > after)
                .cloned()
                .collect(),
            latest_sequence: self.head,
            config_hash: 0,
            output_generation: 0,
        })
    }
}

fn added(sequence: u64) -> QueryResult {
    result(
        sequence,
        vec![ResultDiff::Add {
            data: json!({"n": sequence}),
            row_signature: sequence,
        }],
    )
}

fn client(query: Arc<dyn Query>, capacity: usize) -> (Client, broadcast::Sender<Item>) {
    let (tx, rx) = broadcast::channel(capacity);
    let client = Client {
        query,
        query_id: "q".to_string(),
        rx,
        last: 0,
        pending: VecDeque::new(),
        done: false,
    };
    (client, tx)
}

/// The kinds and sequences of the events queued or ready now.
async fn drain(client: &mut Client) -> Vec<(&'static str, u64)> {
    let mut seen = Vec::new();
    while let Some(Some(out)) = client.next_event().now_or_never() {
        seen.push((out.kind, out.sequence));
    }
    seen
}

fn send(tx: &broadcast::Sender<Item>, sequences: impl IntoIterator<Item = u64>) {
    for s in sequences {
        tx.send(Item::Result(Arc::new(added(s))))
            .expect("a receiver");
    }
}

#[tokio::test]
async fn live_results_at_or_below_the_snapshot_are_skipped() {
    let (mut c, tx) = client(FakeQuery::arc(5, []), 16);
    c.start(true, None).await.expect("start");
    send(&tx, [4, 5, 6, 6, 7]);
    assert_eq!(
        drain(&mut c).await,
        [("snapshot", 5), ("change", 6), ("change", 7)]
    );
    let (mut quiet, tx) = client(FakeQuery::arc(5, []), 16);
    quiet.start(false, None).await.expect("start");
    send(&tx, [5, 6]);
    assert_eq!(drain(&mut quiet).await, [("change", 6)]);
}

#[tokio::test]
async fn resume_sends_the_held_history_then_live_without_duplicates() {
    let (mut c, tx) = client(FakeQuery::arc(5, 1..=5), 16);
    c.start(true, Some(&format!("{}:2", epoch())))
        .await
        .expect("start");
    send(&tx, [4, 5, 6]);
    assert_eq!(
        drain(&mut c).await,
        [("change", 3), ("change", 4), ("change", 5), ("change", 6)]
    );
}

#[tokio::test]
async fn resume_that_cannot_continue_resets_with_a_snapshot() {
    let foreign = format!("{}:2", "0".repeat(32));
    let evicted = format!("{}:1", epoch());
    let ahead = format!("{}:9", epoch());
    for (resume, why) in [
        (foreign.as_str(), "restarted"),
        ("garbage", "not an event id"),
        (evicted.as_str(), "no longer held"),
        (ahead.as_str(), "ahead"),
    ] {
        let (mut c, tx) = client(FakeQuery::arc(5, 3..=5), 16);
        c.start(false, Some(resume)).await.expect("start");
        let reset = c.pending.front().cloned().expect("a reset");
        assert_eq!(reset.kind, "reset", "{resume}");
        assert!(
            reset.data["reason"]
                .as_str()
                .is_some_and(|r| r.contains(why)),
            "{resume}: {reset:?}"
        );
        send(&tx, [5, 6]);
        assert_eq!(
            drain(&mut c).await,
            [("reset", 5), ("snapshot", 5), ("change", 6)],
            "{resume}"
        );
    }
}

#[tokio::test]
async fn a_client_that_lags_is_reset_then_continues() {
    let (mut c, tx) = client(FakeQuery::arc(5, []), 2);
    c.start(false, None).await.expect("start");
    c.last = 0;
    // Capacity 2: results 1..=3 are lost, 4 and 5 are still buffered.
    send(&tx, 1..=5);
    let reset = c.next_event().await.expect("reset");
    assert_eq!(reset.kind, "reset");
    assert!(
        reset.data["reason"]
            .as_str()
            .is_some_and(|r| r.contains("fell behind")),
        "{reset:?}"
    );
    // 4 and 5 are covered by the snapshot.
    assert_eq!(drain(&mut c).await, [("snapshot", 5)]);
    send(&tx, [6]);
    assert_eq!(drain(&mut c).await, [("change", 6)]);
    tx.send(Item::End("the query stopped".to_string()))
        .expect("a receiver");
    let end = c.next_event().await.expect("end");
    assert_eq!((end.kind, end.sequence), ("end", 6));
    assert_eq!(end.data, json!({"reason": "the query stopped"}));
    assert!(c.next_event().await.is_none());
}

#[test]
fn events_carry_the_epoch_and_sequence() {
    // The id is epoch and sequence; a newline inside a row is escaped by JSON (building the
    // event would panic on a raw one in the id or kind, never in data).
    let event = out("change", 42, json!({"a": "x\ny"})).into_event();
    let text = format!("{event:?}");
    assert!(text.contains(&format!("{}:42", epoch())), "{text}");
}

#[test]
fn ending_statuses() {
    assert_eq!(ended_by(ComponentStatus::Running, None), None);
    assert_eq!(ended_by(ComponentStatus::Starting, None), None);
    assert!(ended_by(ComponentStatus::Stopped, None).is_some());
    assert_eq!(
        ended_by(ComponentStatus::Error, Some("boom")).as_deref(),
        Some("the query failed: boom")
    );
}

//! Pending entries (delivered, not yet acknowledged): the paged, decoded list, and the walk
//! over a selection that the actions in [`super::actions`] use. Selection is by ids, or a
//! paged walk of the PEL (by consumer, or all) that stops at the highest id pending when it
//! began, so entries re-appended by an action are never revisited.

use draas_protocol::keys::WORKER_GROUP;
use redis::streams::{StreamPendingCountReply, StreamPendingId, StreamPendingReply};
use serde::{Deserialize, Serialize};

use super::{Admin, AdminError, PAGE, Payload, StreamRef, check_id, entry_age_ms, payload_bytes};

/// A page request for `ops pending`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingQuery {
    pub target: StreamRef,
    pub consumer: Option<String>,
    pub min_idle_ms: u64,
    pub count: usize,
    /// Exclusive cursor: the last id of the previous page.
    pub after: Option<String>,
}

/// One page of pending entries, decoded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingPage {
    pub stream: String,
    pub rows: Vec<PendingRow>,
    /// Pass as `after` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// One pending entry, decoded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingRow {
    pub id: String,
    pub consumer: String,
    pub consumer_live: bool,
    pub idle_ms: u64,
    pub deliveries: u64,
    #[schema(required = true)]
    pub age_ms: Option<u64>,
    pub payload: Payload,
    /// The operation record's state, when the payload names one and the record exists.
    #[schema(required = true)]
    pub operation: Option<String>,
    /// Why the consumer counts as live or dead (its last heartbeat against its TTL); `null`
    /// for a consumer that never registered a heartbeat.
    #[schema(required = true)]
    pub liveness: Option<String>,
}

/// Which pending entries an action applies to: `ids`, or else all entries of `consumer`, or
/// else (`all`) every entry; `min_idle_ms` filters either walk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    pub target: Option<StreamRef>,
    pub ids: Vec<String>,
    pub consumer: Option<String>,
    pub min_idle_ms: u64,
    pub all: bool,
}

/// A walk over the selected entries, a page at a time.
pub(super) struct Walk {
    pub(super) stream: String,
    ids: Vec<String>,
    consumer: Option<String>,
    min_idle_ms: u64,
    cursor: String,
    end: String,
    done: bool,
}

/// A selected id and its PEL row, if it is pending.
pub(super) struct Selected {
    pub(super) id: String,
    pub(super) pending: Option<StreamPendingId>,
}

impl Admin {
    /// One page of pending entries, each decoded from its body (XRANGE id id).
    pub async fn pending(&self, q: &PendingQuery) -> Result<PendingPage, AdminError> {
        if q.count == 0 || q.count > 10_000 {
            return Err(AdminError::invalid("count", "must be between 1 and 10000"));
        }
        if let Some(after) = &q.after {
            check_id("after", after)?;
        }
        let stream = q.target.key(self.keys());
        if !super::group_exists(&mut self.store.conn(), &stream).await? {
            return Ok(PendingPage {
                stream,
                rows: Vec::new(),
                next: None,
            });
        }
        let start = q.after.as_ref().map_or("-".to_owned(), |a| format!("({a}"));
        let ids = self
            .pel_page(
                &stream,
                q.min_idle_ms,
                &start,
                "+",
                q.count,
                q.consumer.as_deref(),
            )
            .await?;
        let next = (ids.len() == q.count)
            .then(|| ids.last().map(|p| p.id.clone()))
            .flatten();
        let rows = self.rows(&stream, q.target.platform, ids).await?;
        Ok(PendingPage { stream, rows, next })
    }

    async fn pel_page(
        &self,
        stream: &str,
        min_idle_ms: u64,
        start: &str,
        end: &str,
        count: usize,
        consumer: Option<&str>,
    ) -> Result<Vec<StreamPendingId>, AdminError> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(stream).arg(WORKER_GROUP);
        if min_idle_ms > 0 {
            cmd.arg("IDLE").arg(min_idle_ms);
        }
        cmd.arg(start).arg(end).arg(count);
        if let Some(c) = consumer {
            cmd.arg(c);
        }
        let reply: StreamPendingCountReply = cmd.query_async(&mut self.store.conn()).await?;
        Ok(reply.ids)
    }

    async fn rows(
        &self,
        stream: &str,
        platform: draas_protocol::Platform,
        pel: Vec<StreamPendingId>,
    ) -> Result<Vec<PendingRow>, AdminError> {
        let ids: Vec<String> = pel.iter().map(|p| p.id.clone()).collect();
        let bodies = self.bodies(stream, &ids).await?;
        let payloads: Vec<Payload> = bodies
            .iter()
            .map(|b| Payload::decode(b.as_ref().and_then(payload_bytes)))
            .collect();
        let ops: Vec<_> = payloads.iter().map(Payload::command_id).collect();
        let states = self.operation_states(&ops).await?;
        let workers = self.liveness(platform).await?;
        Ok(pel
            .into_iter()
            .zip(payloads)
            .zip(states)
            .map(|((p, payload), operation)| PendingRow {
                age_ms: entry_age_ms(&p.id),
                consumer_live: workers.get(&p.consumer).is_some_and(|r| r.live),
                liveness: workers.get(&p.consumer).map(|r| r.explain()),
                id: p.id,
                consumer: p.consumer,
                idle_ms: p.last_delivered_ms as u64,
                deliveries: p.times_delivered as u64,
                payload,
                operation,
            })
            .collect())
    }

    pub(super) async fn walk(&self, sel: &Selection) -> Result<(StreamRef, Walk), AdminError> {
        let target = sel
            .target
            .clone()
            .ok_or_else(|| AdminError::invalid("platform", "name the platform"))?;
        for id in &sel.ids {
            check_id("ids", id)?;
        }
        if sel.ids.is_empty() && sel.consumer.is_none() && !sel.all {
            return Err(AdminError::invalid(
                "ids",
                "name entries by id, or select a consumer's entries, or ask for all",
            ));
        }
        let stream = target.key(self.keys());
        let mut walk = Walk {
            stream: stream.clone(),
            ids: sel.ids.clone(),
            consumer: sel.consumer.clone(),
            min_idle_ms: sel.min_idle_ms,
            cursor: "-".into(),
            end: "+".into(),
            done: false,
        };
        if !super::group_exists(&mut self.store.conn(), &stream).await? {
            walk.done = walk.ids.is_empty();
            return Ok((target, walk));
        }
        if walk.ids.is_empty() {
            // Stop where the PEL ended when the walk began: entries re-appended by this very
            // action get higher ids and are never visited.
            let summary: StreamPendingReply = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(WORKER_GROUP)
                .query_async(&mut self.store.conn())
                .await?;
            match summary {
                StreamPendingReply::Data(d) => walk.end = d.end_id,
                _ => walk.done = true,
            }
        }
        Ok((target, walk))
    }

    pub(super) async fn next_page(
        &self,
        walk: &mut Walk,
    ) -> Result<Option<Vec<Selected>>, AdminError> {
        if walk.done {
            return Ok(None);
        }
        if !walk.ids.is_empty() {
            let chunk: Vec<String> = walk.ids.drain(..walk.ids.len().min(PAGE)).collect();
            walk.done = walk.ids.is_empty();
            let mut pipe = redis::pipe();
            for id in &chunk {
                pipe.cmd("XPENDING")
                    .arg(&walk.stream)
                    .arg(WORKER_GROUP)
                    .arg(id)
                    .arg(id)
                    .arg(1);
            }
            let found: Vec<StreamPendingCountReply> =
                pipe.query_async(&mut self.store.conn()).await?;
            let page = chunk
                .into_iter()
                .zip(found)
                .map(|(id, f)| {
                    let pending = f.ids.into_iter().next().filter(|p| {
                        walk.consumer.as_ref().is_none_or(|c| &p.consumer == c)
                            && p.last_delivered_ms as u64 >= walk.min_idle_ms
                    });
                    Selected { id, pending }
                })
                .collect();
            return Ok(Some(page));
        }
        let (stream, cursor, end) = (walk.stream.clone(), walk.cursor.clone(), walk.end.clone());
        let page = self
            .pel_page(
                &stream,
                walk.min_idle_ms,
                &cursor,
                &end,
                PAGE,
                walk.consumer.as_deref(),
            )
            .await?;
        match page.last() {
            None => {
                walk.done = true;
                Ok(None)
            }
            Some(last) => {
                walk.done = page.len() < PAGE;
                walk.cursor = format!("({}", last.id);
                Ok(Some(
                    page.into_iter()
                        .map(|p| Selected {
                            id: p.id.clone(),
                            pending: Some(p),
                        })
                        .collect(),
                ))
            }
        }
    }
}

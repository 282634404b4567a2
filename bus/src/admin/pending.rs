//! Pending entries (delivered, not yet acknowledged): the paged, decoded list and the three
//! things an operator may do with them.
//!
//! - **claim**: XCLAIM … JUSTID to a named *live* consumer (the delivery count is left alone,
//!   so an operator's move never pushes an entry towards the dead-letter limit). The entry
//!   stays pending; the sweepers run it once it has been idle for their `claim_idle`.
//! - **retry**: makes an entry deliverable now: the original payload is re-appended and the
//!   stuck entry acked and deleted in one MULTI ([`Store::forward`](crate::Store::forward)).
//!   The command id is unchanged, so an operation that already finished is answered from its
//!   record, never re-run. (Redis 8.8's XNACK would do this in place; this works everywhere.)
//! - **drop**: moves the entry to the dead-letter stream with the operator's reason
//!   ([`Store::dead_letter`](crate::Store::dead_letter)), from where it can be replayed.
//!
//! Entries whose owner is a live worker are skipped unless `force`: that worker is running
//! them or will. Selection is by ids, or a paged walk of the PEL (by consumer, or all) that
//! stops at the highest id pending when it began, so re-appended entries are never revisited.

use draas_protocol::keys::WORKER_GROUP;
use redis::streams::{StreamPendingCountReply, StreamPendingId, StreamPendingReply};
use serde::{Deserialize, Serialize};

use super::{
    ActionItem, ActionReport, Admin, AdminError, PAGE, Payload, Progress, StreamRef, check_id,
    entry_age_ms, payload_bytes,
};

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

/// One page of pending entries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPage {
    pub stream: String,
    pub rows: Vec<PendingRow>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One pending entry, decoded.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRow {
    pub id: String,
    pub consumer: String,
    pub consumer_live: bool,
    pub idle_ms: u64,
    pub deliveries: u64,
    pub age_ms: Option<u64>,
    pub payload: Payload,
    /// The operation record's state, when the payload names one and the record exists.
    pub operation: Option<String>,
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
struct Walk {
    stream: String,
    ids: Vec<String>,
    consumer: Option<String>,
    min_idle_ms: u64,
    cursor: String,
    end: String,
    done: bool,
}

/// A selected id and its PEL row, if it is pending.
struct Selected {
    id: String,
    pending: Option<StreamPendingId>,
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
        let live = self.live_consumers(platform).await?;
        Ok(pel
            .into_iter()
            .zip(payloads)
            .zip(states)
            .map(|((p, payload), operation)| PendingRow {
                age_ms: entry_age_ms(&p.id),
                consumer_live: live.contains(&p.consumer),
                id: p.id,
                consumer: p.consumer,
                idle_ms: p.last_delivered_ms as u64,
                deliveries: p.times_delivered as u64,
                payload,
                operation,
            })
            .collect())
    }

    async fn walk(&self, sel: &Selection) -> Result<(StreamRef, Walk), AdminError> {
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

    async fn next_page(&self, walk: &mut Walk) -> Result<Option<Vec<Selected>>, AdminError> {
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

    /// Hands the selected entries to the live consumer `to` (XCLAIM … JUSTID).
    pub async fn claim(
        &self,
        sel: &Selection,
        to: &str,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        let (target, mut walk) = self.walk(sel).await?;
        let live = self.live_consumers(target.platform).await?;
        if !live.iter().any(|c| c == to) {
            return Err(AdminError::Refused(format!(
                "consumer `{to}` is not a live {} worker (live: {}); entries given to it would sit unseen",
                target.platform,
                if live.is_empty() {
                    "none".into()
                } else {
                    live.join(", ")
                }
            )));
        }
        let mut report = ActionReport::new("claim", &walk.stream, dry_run);
        report.notes.push(format!(
            "claimed entries stay pending with `{to}`; a worker's sweeper runs them once they have been idle for its claim-idle time (use retry to run them now)"
        ));
        while let Some(page) = self.next_page(&mut walk).await? {
            progress.advance(page.len() as u64);
            let mut claim_ids = Vec::new();
            for s in page {
                match &s.pending {
                    None => report.push(ActionItem::new(&s.id, "not pending", ""), false, false),
                    Some(p) if p.consumer == to => report.push(
                        ActionItem::new(&s.id, "kept", format!("already owned by {to}")),
                        false,
                        false,
                    ),
                    Some(p) if dry_run => report.push(
                        ActionItem::new(&s.id, "would claim", format!("from {}", p.consumer)),
                        true,
                        false,
                    ),
                    Some(p) => claim_ids.push((s.id.clone(), p.consumer.clone())),
                }
            }
            if claim_ids.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&walk.stream).arg(WORKER_GROUP).arg(to).arg(0);
            for (id, _) in &claim_ids {
                cmd.arg(id);
            }
            let claimed: Vec<String> = cmd
                .arg("JUSTID")
                .query_async(&mut self.store.conn())
                .await?;
            for (id, from) in claim_ids {
                let ok = claimed.contains(&id);
                let outcome = if ok { "claimed" } else { "not pending" };
                report.push(
                    ActionItem::new(&id, outcome, format!("from {from}")),
                    true,
                    ok,
                );
            }
        }
        Ok(report)
    }

    /// Makes the selected entries deliverable now (re-append + ack + delete, one MULTI).
    pub async fn retry(
        &self,
        sel: &Selection,
        force: bool,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        self.requeue(sel, None, force, dry_run, progress).await
    }

    /// Moves the selected entries to the dead-letter stream with `reason`.
    pub async fn drop_pending(
        &self,
        sel: &Selection,
        reason: &str,
        force: bool,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        if reason.trim().is_empty() {
            return Err(AdminError::invalid(
                "reason",
                "say why the entries are dropped",
            ));
        }
        self.requeue(sel, Some(reason), force, dry_run, progress)
            .await
    }

    /// Retry (`drop_reason` = None) or drop, entry by entry.
    async fn requeue(
        &self,
        sel: &Selection,
        drop_reason: Option<&str>,
        force: bool,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        let (target, mut walk) = self.walk(sel).await?;
        let live = self.live_consumers(target.platform).await?;
        let action = if drop_reason.is_some() {
            "drop"
        } else {
            "retry"
        };
        let mut report = ActionReport::new(action, &walk.stream, dry_run);
        while let Some(page) = self.next_page(&mut walk).await? {
            progress.advance(page.len() as u64);
            let ids: Vec<String> = page.iter().map(|s| s.id.clone()).collect();
            let bodies = self.bodies(&walk.stream, &ids).await?;
            let payloads: Vec<Payload> = bodies
                .iter()
                .map(|b| Payload::decode(b.as_ref().and_then(payload_bytes)))
                .collect();
            let states = self
                .operation_states(&payloads.iter().map(Payload::command_id).collect::<Vec<_>>())
                .await?;
            for (((s, body), payload), state) in
                page.into_iter().zip(bodies).zip(payloads).zip(states)
            {
                let Some(p) = s.pending else {
                    report.push(ActionItem::new(&s.id, "not pending", ""), false, false);
                    continue;
                };
                let op = match &state {
                    Some(st) => format!("operation {st}"),
                    None => "no operation record".to_owned(),
                };
                let skip = |why: String| ActionItem::new(&s.id, "skipped", why);
                if live.contains(&p.consumer) && !force {
                    let why = format!(
                        "owner {} is live and runs it (force to override)",
                        p.consumer
                    );
                    report.push(skip(why), false, false);
                    continue;
                }
                match (drop_reason, &body, &payload) {
                    (None, None, _) => {
                        report.push(
                            skip("entry body is gone; drop it to clear it".into()),
                            false,
                            false,
                        );
                    }
                    (None, _, Payload::Undecodable { error }) => {
                        report.push(
                            skip(format!("undecodable ({error}); drop it instead")),
                            false,
                            false,
                        );
                    }
                    _ if dry_run => {
                        report.push(
                            ActionItem::new(&s.id, &format!("would {action}"), op),
                            true,
                            false,
                        );
                    }
                    (None, Some(entry), _) => {
                        self.store
                            .forward(&walk.stream, entry, &walk.stream)
                            .await?;
                        let detail = match state.as_deref() {
                            Some("succeeded" | "failed") => {
                                format!("{op}: answered from the record, not run again")
                            }
                            _ => op,
                        };
                        report.push(ActionItem::new(&s.id, "retried", detail), true, true);
                    }
                    (Some(reason), Some(entry), _) => {
                        let reason = format!("dropped by operator: {reason}");
                        let deliveries = p.times_delivered as u64;
                        self.store
                            .dead_letter(target.platform, &walk.stream, entry, &reason, deliveries)
                            .await?;
                        report.push(ActionItem::new(&s.id, "dead-lettered", op), true, true);
                    }
                    (Some(_), None, _) => {
                        self.store
                            .ack_and_delete(&walk.stream, std::slice::from_ref(&s.id))
                            .await?;
                        report.push(
                            ActionItem::new(&s.id, "acked", "its body was already gone"),
                            true,
                            true,
                        );
                    }
                }
            }
        }
        Ok(report)
    }
}

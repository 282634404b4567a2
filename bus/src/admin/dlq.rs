//! Dead letters: list, show, replay, purge.
//!
//! A replay appends the letter's original payload (`orig.m`) to the platform stream and
//! deletes the letter in one MULTI (both keys share the platform's hash tag). The payload is
//! byte-for-byte the original: same command id, so same operation record, same idempotency
//! key. A command whose operation already finished is answered from the record by the worker
//! and not run again; a missing record is created by the worker's claim. The platform stream
//! is the target even when the letter came from a node stream: the node may be gone, and a
//! worker forwards commands for a placed instance to its node itself.

use std::collections::BTreeMap;

use draas_protocol::codec::PAYLOAD_FIELD;
use draas_protocol::{CommandEnvelope, Platform, codec};
use redis::streams::{StreamId, StreamRangeReply};
use serde::{Deserialize, Serialize};

use super::{
    ActionItem, ActionReport, Admin, AdminError, PAGE, Payload, Progress, check_id, entry_age_ms,
    field_bytes, field_text,
};

/// One page of a platform's dead-letter queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DlqPage {
    pub stream: String,
    pub length: u64,
    pub letters: Vec<DeadLetter>,
    #[schema(required = true)]
    pub next: Option<String>,
}

/// One dead letter, decoded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetter {
    pub id: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The stream and entry id it was taken from.
    pub stream: String,
    pub entry: String,
    #[schema(required = true)]
    pub deliveries: Option<u64>,
    /// When it was dead-lettered (ms since the epoch).
    #[schema(required = true)]
    pub at: Option<u64>,
    #[schema(required = true)]
    pub age_ms: Option<u64>,
    pub payload: Payload,
    #[schema(required = true)]
    pub operation: Option<String>,
    /// `show` (`dlq/{id}`) only: every field (binary values summarised).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// `show` (`dlq/{id}`) only: the whole envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope: Option<serde_json::Value>,
}

/// Which dead letters an action applies to: `ids`, or every one (`all`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqSelection {
    pub platform: Platform,
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub all: bool,
}

/// A walk over selected dead letters.
struct DlqWalk {
    stream: String,
    ids: Vec<String>,
    /// The next range start, while there are pages left.
    cursor: Option<String>,
    end: String,
}

impl Admin {
    /// A page of the platform's dead letters, oldest first, after the exclusive cursor.
    pub async fn dlq_list(
        &self,
        platform: Platform,
        after: Option<&str>,
        count: usize,
    ) -> Result<DlqPage, AdminError> {
        if count == 0 || count > 10_000 {
            return Err(AdminError::invalid("count", "must be between 1 and 10000"));
        }
        if let Some(a) = after {
            check_id("after", a)?;
        }
        let stream = self.keys().dead_letters(platform);
        let start = after.map_or("-".to_owned(), |a| format!("({a}"));
        let entries = self.range(&stream, &start, "+", count).await?;
        let length: u64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut self.store.conn())
            .await?;
        let next = (entries.len() == count).then(|| entries.last().map(|e| e.id.clone()));
        let letters = self.letters(&entries, false).await?;
        Ok(DlqPage {
            stream,
            length,
            letters,
            next: next.flatten(),
        })
    }

    /// One dead letter with all its fields and the decoded envelope.
    pub async fn dlq_show(&self, platform: Platform, id: &str) -> Result<DeadLetter, AdminError> {
        check_id("id", id)?;
        let stream = self.keys().dead_letters(platform);
        let entries = self.range(&stream, id, id, 1).await?;
        let mut letters = self.letters(&entries, true).await?;
        letters
            .pop()
            .ok_or_else(|| AdminError::NotFound(format!("no dead letter {id} in {stream}")))
    }

    pub(super) async fn range(
        &self,
        stream: &str,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<StreamId>, AdminError> {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.store.conn())
            .await?;
        Ok(page.ids)
    }

    async fn letters(
        &self,
        entries: &[StreamId],
        full: bool,
    ) -> Result<Vec<DeadLetter>, AdminError> {
        let orig = format!("orig.{PAYLOAD_FIELD}");
        let payloads: Vec<Payload> = entries
            .iter()
            .map(|e| Payload::decode(field_bytes(e, &orig)))
            .collect();
        let ops: Vec<_> = payloads.iter().map(Payload::command_id).collect();
        let states = self.operation_states(&ops).await?;
        Ok(entries
            .iter()
            .zip(payloads)
            .zip(states)
            .map(|((e, payload), operation)| {
                let number = |f: &str| field_text(e, f).and_then(|t| t.parse().ok());
                let envelope = full
                    .then(|| field_bytes(e, &orig))
                    .flatten()
                    .and_then(|b| codec::decode::<CommandEnvelope>(b).ok())
                    .and_then(|env| serde_json::to_value(env).ok());
                let fields = full.then(|| {
                    e.map
                        .keys()
                        .map(|k| (k.clone(), summarise(field_bytes(e, k))))
                        .collect()
                });
                DeadLetter {
                    id: e.id.clone(),
                    reason: field_text(e, "reason").unwrap_or_default(),
                    stream: field_text(e, "stream").unwrap_or_default(),
                    entry: field_text(e, "entry").unwrap_or_default(),
                    deliveries: number("deliveries"),
                    at: number("at"),
                    age_ms: entry_age_ms(&e.id),
                    payload,
                    operation,
                    fields,
                    envelope,
                }
            })
            .collect())
    }

    /// Starts a walk over the selected letters: `ids`, or everything up to the newest letter
    /// when the walk began (letters dead-lettered meanwhile are left alone).
    async fn dlq_walk(
        &self,
        sel: &DlqSelection,
        progress: &dyn Progress,
    ) -> Result<DlqWalk, AdminError> {
        let stream = self.keys().dead_letters(sel.platform);
        for id in &sel.ids {
            check_id("ids", id)?;
        }
        if !sel.ids.is_empty() {
            progress.total(sel.ids.len() as u64);
            return Ok(DlqWalk {
                stream,
                ids: sel.ids.clone(),
                cursor: None,
                end: String::new(),
            });
        }
        if !sel.all {
            return Err(AdminError::invalid(
                "ids",
                "name letters by id, or ask for all",
            ));
        }
        let end = self.range_rev_first(&stream).await?;
        let length: u64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut self.store.conn())
            .await?;
        progress.total(length);
        Ok(DlqWalk {
            stream,
            ids: Vec::new(),
            cursor: end.is_some().then(|| "-".to_owned()),
            end: end.unwrap_or_default(),
        })
    }

    /// The next page of a walk: ids with their letters (`None` where there is no such letter).
    async fn dlq_next(
        &self,
        walk: &mut DlqWalk,
        progress: &dyn Progress,
    ) -> Result<Option<Vec<(String, Option<StreamId>)>>, AdminError> {
        if !walk.ids.is_empty() {
            let chunk: Vec<String> = walk.ids.drain(..walk.ids.len().min(PAGE)).collect();
            let found = self.bodies(&walk.stream, &chunk).await?;
            progress.advance(chunk.len() as u64);
            return Ok(Some(chunk.into_iter().zip(found).collect()));
        }
        let Some(cursor) = walk.cursor.take() else {
            return Ok(None);
        };
        let page = self.range(&walk.stream, &cursor, &walk.end, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        if page.len() == PAGE {
            walk.cursor = Some(format!("({}", last.id));
        }
        progress.advance(page.len() as u64);
        Ok(Some(
            page.into_iter().map(|e| (e.id.clone(), Some(e))).collect(),
        ))
    }

    async fn range_rev_first(&self, stream: &str) -> Result<Option<String>, AdminError> {
        let page: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.store.conn())
            .await?;
        Ok(page.ids.into_iter().next().map(|e| e.id))
    }

    /// Re-enqueues the selected letters' original payloads on the platform stream.
    pub async fn dlq_replay(
        &self,
        sel: &DlqSelection,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        let dlq = self.keys().dead_letters(sel.platform);
        let to = self.keys().commands(sel.platform);
        let mut report = ActionReport::new("replay", &dlq, dry_run);
        report.notes.push(format!(
            "original payloads go to {to}; a command whose operation already finished is answered from its record, not run again"
        ));
        let orig = format!("orig.{PAYLOAD_FIELD}");
        let mut walk = self.dlq_walk(sel, progress).await?;
        while let Some(page) = self.dlq_next(&mut walk, progress).await? {
            let payloads: Vec<Payload> = page
                .iter()
                .map(|(_, e)| Payload::decode(e.as_ref().and_then(|e| field_bytes(e, &orig))))
                .collect();
            let ops: Vec<_> = payloads.iter().map(Payload::command_id).collect();
            let states = self.operation_states(&ops).await?;
            for (((id, entry), payload), state) in page.into_iter().zip(payloads).zip(states) {
                let skip = |why: String| ActionItem::new(&id, "skipped", why);
                let op = match state.as_deref() {
                    Some(s @ ("succeeded" | "failed")) => {
                        format!("operation {s}: answered from the record, not run again")
                    }
                    Some(s) => format!("operation {s}: runs once"),
                    None => "no operation record: the worker recreates it and runs it once".into(),
                };
                let (entry, bytes) = match (&entry, &payload) {
                    (None, _) => {
                        report.push(ActionItem::new(&id, "not found", ""), false, false);
                        continue;
                    }
                    (Some(_), Payload::Missing) => {
                        report.push(
                            skip("no original payload to replay; purge it".into()),
                            false,
                            false,
                        );
                        continue;
                    }
                    (Some(_), Payload::Undecodable { error }) => {
                        report.push(
                            skip(format!("undecodable ({error}); purge it")),
                            false,
                            false,
                        );
                        continue;
                    }
                    (Some(_), Payload::Command { platform, .. }) if *platform != sel.platform => {
                        report.push(
                            skip(format!("a {platform} command in the {} DLQ", sel.platform)),
                            false,
                            false,
                        );
                        continue;
                    }
                    (Some(e), Payload::Command { .. }) => {
                        (e, field_bytes(e, &orig).unwrap_or_default())
                    }
                };
                let dead_lettered = state.as_deref() == Some("failed");
                if dry_run {
                    let op = if dead_lettered {
                        "operation failed; if it failed by being dead-lettered it runs once, else it is answered from its record".into()
                    } else {
                        op
                    };
                    report.push(ActionItem::new(&id, "would replay", op), true, false);
                    continue;
                }
                // A command that never ran because it was dead-lettered gets its operation back
                // (pending), so the replay runs it once; any other finished operation answers.
                let op = match payload.command_id() {
                    Some(op_id)
                        if dead_lettered && self.store.reopen_dead_lettered(op_id).await? =>
                    {
                        "operation was dead-lettered before it ran: runs once".to_owned()
                    }
                    _ => op,
                };
                let (new_id, deleted): (String, u64) = redis::pipe()
                    .atomic()
                    .cmd("XADD")
                    .arg(&to)
                    .arg("*")
                    .arg(PAYLOAD_FIELD)
                    .arg(bytes)
                    .xdel(&dlq, &[&entry.id])
                    .query_async(&mut self.store.conn())
                    .await?;
                let detail = if deleted == 0 {
                    format!("as {new_id}; someone replayed it at the same time (harmless: {op})")
                } else {
                    format!("as {new_id}; {op}")
                };
                report.push(ActionItem::new(&id, "replayed", detail), true, true);
            }
        }
        Ok(report)
    }

    /// Deletes the selected letters.
    pub async fn dlq_purge(
        &self,
        sel: &DlqSelection,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        let dlq = self.keys().dead_letters(sel.platform);
        let mut report = ActionReport::new("purge", &dlq, dry_run);
        let mut walk = self.dlq_walk(sel, progress).await?;
        while let Some(page) = self.dlq_next(&mut walk, progress).await? {
            self.delete_page(&dlq, page, dry_run, &mut report).await?;
        }
        Ok(report)
    }

    pub(super) async fn delete_page(
        &self,
        stream: &str,
        page: Vec<(String, Option<StreamId>)>,
        dry_run: bool,
        report: &mut ActionReport,
    ) -> Result<(), AdminError> {
        let present: Vec<String> = page
            .iter()
            .filter(|(_, e)| e.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        if !dry_run && !present.is_empty() {
            let _: u64 = redis::cmd("XDEL")
                .arg(stream)
                .arg(&present)
                .query_async(&mut self.store.conn())
                .await?;
        }
        for (id, entry) in page {
            let item = match (&entry, dry_run) {
                (None, _) => ActionItem::new(&id, "not found", ""),
                (Some(_), true) => ActionItem::new(&id, "would delete", ""),
                (Some(_), false) => ActionItem::new(&id, "deleted", ""),
            };
            report.push(item, entry.is_some(), entry.is_some() && !dry_run);
        }
        Ok(())
    }
}

/// A field value for people: its text when it is printable, else its size.
fn summarise(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "<not a string>".into(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(t) if !t.chars().any(|c| c.is_control()) => t.to_owned(),
            _ => format!("<{} bytes of binary>", b.len()),
        },
    }
}

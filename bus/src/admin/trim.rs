//! Trimming that keeps retention bounded without touching work: the DLQ by length or age,
//! command streams of acked leftovers only.
//!
//! Command streams mostly trim themselves (workers XACK + XDEL every entry they finish); what
//! can remain is an entry acked by a step that crashed before its XDEL. Such an entry lies at
//! or before the group's last-delivered id and is not in the PEL; only those are deleted.
//! Entries not yet delivered and pending entries are never touched.
//!
//! Reply streams are not trimmed here: each is capped (`MAXLEN ~`) on every append and expires
//! a day after its API node stops using it, and their names (per API node) are not indexed,
//! so finding them would take a key scan.

use draas_protocol::Platform;
use draas_protocol::keys::WORKER_GROUP;
use redis::streams::StreamPendingCountReply;

use super::{ActionReport, Admin, AdminError, PAGE, Progress};

/// What `trim` trims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrimTarget {
    /// The DLQ down to `maxlen` entries, or of letters older than `older_than_ms`.
    Dlq {
        maxlen: Option<u64>,
        older_than_ms: Option<u64>,
    },
    /// Acked leftovers of the platform's command streams.
    Commands,
}

impl Admin {
    /// Keeps retention bounded: see [`TrimTarget`]. One report per stream.
    pub async fn trim(
        &self,
        platform: Platform,
        target: &TrimTarget,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<Vec<ActionReport>, AdminError> {
        match target {
            TrimTarget::Dlq {
                maxlen,
                older_than_ms,
            } => {
                let dlq = self.keys().dead_letters(platform);
                let mut report = ActionReport::new("trim", &dlq, dry_run);
                let (end, mut budget) = match (maxlen, older_than_ms) {
                    (Some(max), None) => {
                        let len: u64 = redis::cmd("XLEN")
                            .arg(&dlq)
                            .query_async(&mut self.store.conn())
                            .await?;
                        ("+".to_owned(), len.saturating_sub(*max))
                    }
                    (None, Some(age)) => {
                        let cutoff = crate::clock::now().millis().saturating_sub(*age);
                        (cutoff.saturating_sub(1).to_string(), u64::MAX)
                    }
                    _ => {
                        return Err(AdminError::invalid(
                            "maxlen",
                            "give exactly one of maxlen and olderThan",
                        ));
                    }
                };
                if budget != u64::MAX {
                    progress.total(budget);
                }
                let mut cursor = "-".to_owned();
                while budget > 0 {
                    let page = self
                        .range(&dlq, &cursor, &end, PAGE.min(budget as usize))
                        .await?;
                    let Some(last) = page.last() else { break };
                    cursor = format!("({}", last.id);
                    budget = budget.saturating_sub(page.len() as u64);
                    progress.advance(page.len() as u64);
                    let page = page.into_iter().map(|e| (e.id.clone(), Some(e))).collect();
                    self.delete_page(&dlq, page, dry_run, &mut report).await?;
                }
                Ok(vec![report])
            }
            TrimTarget::Commands => {
                let mut reports = Vec::new();
                for target in self.streams_of(platform).await? {
                    let stream = target.key(self.keys());
                    reports.push(self.trim_acked(&stream, dry_run, progress).await?);
                }
                Ok(reports)
            }
        }
    }

    /// Deletes entries of a command stream that were delivered and acked but not deleted.
    async fn trim_acked(
        &self,
        stream: &str,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        let mut report = ActionReport::new("trim", stream, dry_run);
        report.notes.push(
            "only acked entries are deleted; pending and undelivered entries are never touched"
                .into(),
        );
        let mut conn = self.store.conn();
        if !super::group_exists(&mut conn, stream).await? {
            return Ok(report);
        }
        let groups: Vec<redis::streams::StreamInfoGroup> = {
            let reply: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(&mut conn)
                .await?;
            reply.groups
        };
        let Some(group) = groups.into_iter().find(|g| g.name == WORKER_GROUP) else {
            return Ok(report);
        };
        let mut cursor = "-".to_owned();
        loop {
            let page = self
                .range(stream, &cursor, &group.last_delivered_id, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            cursor = format!("({}", last.id);
            let full = page.len() == PAGE;
            progress.advance(page.len() as u64);
            let mut pipe = redis::pipe();
            for e in &page {
                pipe.cmd("XPENDING")
                    .arg(stream)
                    .arg(WORKER_GROUP)
                    .arg(&e.id)
                    .arg(&e.id)
                    .arg(1);
            }
            let pending: Vec<StreamPendingCountReply> = pipe.query_async(&mut conn).await?;
            let acked = page
                .into_iter()
                .zip(pending)
                .filter(|(_, p)| p.ids.is_empty())
                .map(|(e, _)| (e.id.clone(), Some(e)))
                .collect();
            self.delete_page(stream, acked, dry_run, &mut report)
                .await?;
            if !full {
                break;
            }
        }
        Ok(report)
    }
}

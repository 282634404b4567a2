//! The three things an operator may do with pending entries.
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
//! them or will (and would take a claimed entry straight back when it refreshes it). A worker
//! is live by the heartbeat TTL it registered, not by a TTL of the caller's. Every skipped
//! entry is counted by reason in the report (`skipped`, `skipReasons`).

use draas_protocol::keys::WORKER_GROUP;

use std::collections::HashMap;

use super::{
    ActionItem, ActionReport, Admin, AdminError, Payload, Progress, Selection, SkipReason,
    payload_bytes,
};
use crate::store::Registration;

/// The live registration of `consumer`, if it has one.
fn live_owner<'a>(
    workers: &'a HashMap<String, Registration>,
    consumer: &str,
) -> Option<&'a Registration> {
    workers.get(consumer).filter(|r| r.live)
}

/// Why an entry of a live owner is left alone.
fn owner_live_message(owner: &Registration) -> String {
    format!(
        "owner {} is live ({}); it runs the entry or will (force to override)",
        owner.consumer,
        owner.explain()
    )
}

impl Admin {
    /// For each operation still under a lease: its holder and the milliseconds left.
    async fn operation_leases(
        &self,
        ids: &[Option<uuid::Uuid>],
    ) -> Result<Vec<Option<(String, u64)>>, AdminError> {
        let known: Vec<uuid::Uuid> = ids.iter().flatten().copied().collect();
        if known.is_empty() {
            return Ok(vec![None; ids.len()]);
        }
        let rows: Vec<(Option<String>, Option<String>, Option<u64>)> = self
            .store
            .operation_fields(&known)
            .await?
            .into_iter()
            .map(|fields| {
                let mut fields = fields.unwrap_or_default();
                let until = fields.get("leaseUntil").and_then(|u| u.parse().ok());
                (fields.remove("state"), fields.remove("worker"), until)
            })
            .collect();
        let now = crate::clock::now().millis();
        let mut rows = rows.into_iter();
        Ok(ids
            .iter()
            .map(|id| {
                let (state, worker, until) = id.and_then(|_| rows.next())?;
                // A finished record keeps its last lease; only a running one holds it.
                if state.as_deref() != Some("running") {
                    return None;
                }
                let left = until?.checked_sub(now).filter(|l| *l > 0)?;
                Some((worker.unwrap_or_default(), left))
            })
            .collect())
    }

    /// Hands the selected entries to the live consumer `to` (XCLAIM … JUSTID); entries of
    /// another live owner are skipped unless `force`.
    pub async fn claim(
        &self,
        sel: &Selection,
        to: &str,
        force: bool,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<ActionReport, AdminError> {
        let (target, mut walk) = self.walk(sel).await?;
        let workers = self.liveness(target.platform).await?;
        let mut live: Vec<String> = workers
            .values()
            .filter(|r| r.live)
            .map(|r| r.consumer.clone())
            .collect();
        live.sort();
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
                    Some(p) if !force && live_owner(&workers, &p.consumer).is_some() => {
                        let owner = live_owner(&workers, &p.consumer).expect("checked above");
                        let message = owner_live_message(owner);
                        report.skip(&s.id, SkipReason::OwnerLive, Some(&p.consumer), message);
                    }
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
        let workers = self.liveness(target.platform).await?;
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
            let ops: Vec<_> = payloads.iter().map(Payload::command_id).collect();
            let states = self.operation_states(&ops).await?;
            let leases = self.operation_leases(&ops).await?;
            for ((((s, body), payload), state), lease) in page
                .into_iter()
                .zip(bodies)
                .zip(payloads)
                .zip(states)
                .zip(leases)
            {
                let Some(p) = s.pending else {
                    report.push(ActionItem::new(&s.id, "not pending", ""), false, false);
                    continue;
                };
                let op = match &state {
                    Some(st) => format!("operation {st}"),
                    None => "no operation record".to_owned(),
                };
                if let (Some(owner), false) = (live_owner(&workers, &p.consumer), force) {
                    let message = owner_live_message(owner);
                    report.skip(&s.id, SkipReason::OwnerLive, Some(&p.consumer), message);
                    continue;
                }
                // A worker would find the operation leased and leave the copy pending until
                // its sweeper's claim-idle time: nothing gained.
                if let (None, Some("running"), Some((holder, left_ms)), false) =
                    (drop_reason, state.as_deref(), &lease, force)
                {
                    let why = format!(
                        "operation leased by {holder} for another {left_ms} ms; retry once it runs out (or force)"
                    );
                    report.skip(&s.id, SkipReason::OperationLeased, Some(holder), why);
                    continue;
                }
                match (drop_reason, &body, &payload) {
                    (None, None, _) => {
                        let why = "entry body is gone; drop it to clear it".to_owned();
                        report.skip(&s.id, SkipReason::BodyGone, None, why);
                    }
                    (None, _, Payload::Undecodable { error }) => {
                        let why = format!("undecodable ({error}); drop it instead");
                        report.skip(&s.id, SkipReason::Undecodable, None, why);
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

//! The plain data actions return: decoded payloads and per-entry action reports.

use draas_protocol::codec;
use draas_protocol::{CommandEnvelope, Platform};
use serde::Serialize;

use super::REPORT_ITEMS;

/// A stream entry's payload, decoded for people.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Payload {
    /// A command envelope this build can read.
    #[serde(rename_all = "camelCase")]
    Command {
        kind: String,
        command_id: uuid::Uuid,
        correlation_id: uuid::Uuid,
        #[schema(required = true)]
        instance_id: Option<uuid::Uuid>,
        #[schema(required = true)]
        idempotency_key: Option<String>,
        platform: Platform,
    },
    /// Bytes that are not a command of this schema.
    Undecodable { error: String },
    /// The entry's body is gone (deleted while still pending) or has no payload field.
    Missing,
}

impl Payload {
    /// Decodes the payload bytes, never failing.
    pub fn decode(bytes: Option<&[u8]>) -> Self {
        let Some(bytes) = bytes else {
            return Payload::Missing;
        };
        match codec::decode::<CommandEnvelope>(bytes) {
            Ok(env) => Payload::Command {
                kind: env.command.kind().as_str().to_owned(),
                command_id: env.command_id,
                correlation_id: env.correlation_id,
                instance_id: env.instance_id,
                idempotency_key: env.idempotency_key,
                platform: env.platform,
            },
            Err(e) => Payload::Undecodable {
                error: e.to_string(),
            },
        }
    }

    /// The command id, when the payload is a readable command.
    pub fn command_id(&self) -> Option<uuid::Uuid> {
        match self {
            Payload::Command { command_id, .. } => Some(*command_id),
            _ => None,
        }
    }
}

/// Why an action left an entry alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// Its owner is a live worker (judged by the TTL that worker registered): it runs the
    /// entry or will. `force` overrides.
    OwnerLive,
    /// Its operation is leased by a running execution; a copy would wait for the lease anyway.
    OperationLeased,
    /// The entry's body is gone; only a drop clears it.
    BodyGone,
    /// The payload is not a command of this schema; only a drop clears it.
    Undecodable,
}

/// Entries left alone for one reason (and, for a live owner or a lease, one worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Skipped {
    pub reason: SkipReason,
    /// The live owner, or the lease holder.
    #[schema(required = true)]
    pub consumer: Option<String>,
    pub count: u64,
    /// Why, for people (as for the first such entry).
    pub message: String,
}

/// The result of a state-changing action (or, with `dryRun`, what it would do), per entry
/// and in total.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionReport {
    pub action: String,
    pub stream: String,
    pub dry_run: bool,
    /// Entries the selection matched.
    pub matched: u64,
    /// Entries actually changed (0 in a dry run).
    pub changed: u64,
    /// Entries selected but left alone; `skipReasons` says why, with counts.
    pub skipped: u64,
    pub skip_reasons: Vec<Skipped>,
    /// Per-entry outcomes, the first 1000 (`REPORT_ITEMS`); `itemsTruncated` when there were
    /// more.
    pub items: Vec<ActionItem>,
    pub items_truncated: bool,
    /// Anything the operator should know about the whole action.
    pub notes: Vec<String>,
}

impl ActionReport {
    pub(crate) fn new(action: &str, stream: &str, dry_run: bool) -> Self {
        ActionReport {
            action: action.to_owned(),
            stream: stream.to_owned(),
            dry_run,
            matched: 0,
            changed: 0,
            skipped: 0,
            skip_reasons: Vec::new(),
            items: Vec::new(),
            items_truncated: false,
            notes: Vec::new(),
        }
    }

    /// Records one entry: `changed` when the action took effect on it.
    pub(crate) fn push(&mut self, item: ActionItem, matched: bool, changed: bool) {
        self.matched += u64::from(matched);
        self.changed += u64::from(changed);
        if self.items.len() < REPORT_ITEMS {
            self.items.push(item);
        } else {
            self.items_truncated = true;
        }
    }
}

impl ActionReport {
    /// Records an entry left alone: an item `skipped` with `message`, counted by reason and
    /// worker.
    pub(crate) fn skip(
        &mut self,
        id: &str,
        reason: SkipReason,
        consumer: Option<&str>,
        message: String,
    ) {
        self.skipped += 1;
        match self
            .skip_reasons
            .iter_mut()
            .find(|s| s.reason == reason && s.consumer.as_deref() == consumer)
        {
            Some(s) => s.count += 1,
            None => self.skip_reasons.push(Skipped {
                reason,
                consumer: consumer.map(str::to_owned),
                count: 1,
                message: message.clone(),
            }),
        }
        self.push(ActionItem::new(id, "skipped", message), false, false);
    }
}

/// What an action did (or would do) to one entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionItem {
    pub id: String,
    /// e.g. `claimed`, `would retry`, `skipped` (see `skipReasons`), `not pending`.
    pub outcome: String,
    /// Why, or what follows (the new entry id, the operation state).
    pub detail: String,
}

impl ActionItem {
    pub(crate) fn new(id: &str, outcome: &str, detail: impl Into<String>) -> Self {
        ActionItem {
            id: id.to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_counted_by_reason_and_worker() {
        let mut r = ActionReport::new("retry", "s", false);
        r.skip("1-0", SkipReason::OwnerLive, Some("a"), "a is live".into());
        r.skip("2-0", SkipReason::OwnerLive, Some("a"), "a is live".into());
        r.skip("3-0", SkipReason::OwnerLive, Some("b"), "b is live".into());
        r.skip("4-0", SkipReason::BodyGone, None, "gone".into());
        assert_eq!((r.skipped, r.matched, r.changed), (4, 0, 0));
        let counts: Vec<_> = r
            .skip_reasons
            .iter()
            .map(|s| (s.reason, s.consumer.as_deref(), s.count))
            .collect();
        assert_eq!(
            counts,
            [
                (SkipReason::OwnerLive, Some("a"), 2),
                (SkipReason::OwnerLive, Some("b"), 1),
                (SkipReason::BodyGone, None, 1),
            ]
        );
        assert_eq!(r.items.len(), 4);
        assert!(r.items.iter().all(|i| i.outcome == "skipped"));
    }
}

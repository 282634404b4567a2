//! The plain data actions return: decoded payloads and per-entry action reports.

use draas_protocol::codec;
use draas_protocol::{CommandEnvelope, Platform};
use serde::Serialize;

use super::REPORT_ITEMS;

/// A stream entry's payload, decoded for people.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Payload {
    /// A command envelope this build can read.
    #[serde(rename_all = "camelCase")]
    Command {
        kind: String,
        command_id: uuid::Uuid,
        correlation_id: uuid::Uuid,
        instance_id: Option<uuid::Uuid>,
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

/// The result of a state-changing action, per entry and in total.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionReport {
    pub action: String,
    pub stream: String,
    pub dry_run: bool,
    /// Entries the selection matched.
    pub matched: u64,
    /// Entries actually changed (0 in a dry run).
    pub changed: u64,
    /// Per-entry outcomes, the first [`REPORT_ITEMS`].
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

/// What an action did (or would do) to one entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionItem {
    pub id: String,
    /// e.g. `claimed`, `would retry`, `skipped`, `not pending`.
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

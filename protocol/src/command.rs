//! The closed `Command` enum and the envelopes that carry commands, replies and events.
//!
//! Adding a command is adding a variant: the compiler then points at every `match` that must
//! handle it (the API's entry check, the worker's dispatcher, the bus's kind names).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::SCHEMA_VERSION;
use crate::instance::{IllegalTransition, InstanceState, Platform};
use crate::time::Timestamp;

/// Every command a worker executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Command {
    /// Place the instance on its platform and wait until it is healthy.
    Start,
    /// Stop the instance gracefully (SIGINT, then a forced kill after the grace period).
    Stop,
    /// Stop, then start with the stored configuration.
    Restart,
    /// Stop, remove every trace from the platform, then drop the record.
    Delete,
    /// Restart a running instance on the configuration of spec generation `generation`.
    ApplyConfig { generation: u64 },
    /// A probe with no side effects, for health checks and benchmarks.
    Ping,
    /// Read the last `tail` lines of the instance's log (no side effects).
    Logs { tail: u32 },
}

/// The name of a command, without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CommandKind {
    Start,
    Stop,
    Restart,
    Delete,
    ApplyConfig,
    Ping,
    Logs,
}

impl CommandKind {
    /// The camelCase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Start => "start",
            CommandKind::Stop => "stop",
            CommandKind::Restart => "restart",
            CommandKind::Delete => "delete",
            CommandKind::ApplyConfig => "applyConfig",
            CommandKind::Ping => "ping",
            CommandKind::Logs => "logs",
        }
    }

    /// Parses the camelCase wire name.
    pub fn parse(text: &str) -> Option<Self> {
        use CommandKind::*;
        [Start, Stop, Restart, Delete, ApplyConfig, Ping, Logs]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Command {
    /// Whether running the command changes anything (an instance, a workload, a record other
    /// than its own operation's). One that does not may run before its claim is answered, and
    /// its finish may follow the claim in the same round trip (`Store::claim_and_finish`).
    pub fn has_effects(&self) -> bool {
        !matches!(self, Command::Ping | Command::Logs { .. })
    }

    /// The command's name.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Start => CommandKind::Start,
            Command::Stop => CommandKind::Stop,
            Command::Restart => CommandKind::Restart,
            Command::Delete => CommandKind::Delete,
            Command::ApplyConfig { .. } => CommandKind::ApplyConfig,
            Command::Ping => CommandKind::Ping,
            Command::Logs { .. } => CommandKind::Logs,
        }
    }

    /// The first state an instance in `current` moves to when this command runs, or the
    /// illegal transition that forbids it. `None` for commands that touch no instance.
    pub fn entry_state(
        &self,
        current: InstanceState,
    ) -> Option<Result<InstanceState, IllegalTransition>> {
        use InstanceState::*;
        let target = match self {
            Command::Ping | Command::Logs { .. } => return None,
            Command::Start => Starting,
            Command::Stop if current == Lost => Stopped,
            Command::Stop => Stopping,
            Command::Restart if current == Running => Stopping,
            Command::Restart => Starting,
            Command::Delete => Deleting,
            // The API sends ApplyConfig only to running instances; others pick the spec up on start.
            Command::ApplyConfig { .. } => Stopping,
        };
        Some(current.check_move(target).map(|()| target))
    }
}

/// A command on its way to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandEnvelope {
    pub v: u16,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub idempotency_key: Option<String>,
    pub instance_id: Option<Uuid>,
    pub platform: Platform,
    pub issued_at: Timestamp,
    /// After this instant nobody waits for the reply; the command still runs to completion.
    pub deadline: Timestamp,
    /// Which attempt this is (1 for the first delivery); raised on reclaim.
    pub attempt: u32,
    /// W3C `traceparent` of the request that issued the command.
    pub trace: Option<String>,
    /// W3C `tracestate` that goes with `trace`. Absent on older envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_state: Option<String>,
    /// The stream the reply goes to (the issuing API node's reply stream).
    pub reply_to: Option<String>,
    /// Who asked for the command.
    pub origin: Origin,
    pub command: Command,
    /// The API caller that issued it (a token id, or `anonymous` with authentication off);
    /// carried into the events the command causes. Absent on older envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The tenant of the instance it acts on, set by the API. A worker that writes the
    /// operation record (the API writes none for a command only its caller knows the id of)
    /// copies it there, so the record is that tenant's to read. Absent on older envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Who issued a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Origin {
    /// A REST client.
    #[default]
    Client,
    /// The instance's restart policy, after a crash.
    RestartPolicy,
    /// Rescheduling after the node that ran the instance died.
    Reschedule,
}

impl CommandEnvelope {
    /// A fresh envelope: new UUIDv7 command id, attempt 1, current schema version.
    pub fn new(
        platform: Platform,
        instance_id: Option<Uuid>,
        command: Command,
        now: Timestamp,
    ) -> Self {
        let command_id = Uuid::now_v7();
        CommandEnvelope {
            v: SCHEMA_VERSION,
            command_id,
            correlation_id: command_id,
            idempotency_key: None,
            instance_id,
            platform,
            issued_at: now,
            deadline: now,
            attempt: 1,
            trace: None,
            trace_state: None,
            reply_to: None,
            origin: Origin::Client,
            command,
            actor: None,
            tenant: None,
        }
    }
}

/// A machine-readable error with a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// Stable, for programs.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ErrorInfo {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Outcome {
    Succeeded { result: serde_json::Value },
    Failed { error: ErrorInfo },
}

/// A worker's answer to one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub v: u16,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub instance_id: Option<Uuid>,
    pub platform: Platform,
    /// The consumer that executed the command.
    pub worker: String,
    pub completed_at: Timestamp,
    pub outcome: Outcome,
    /// Deliveries that started executing the command, as its operation record says; 0 from a
    /// sender that does not know (the dead-letter path), whose record then tells the rest.
    #[serde(default)]
    pub attempts: u32,
}

/// Something that happened to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKind {
    /// The instance moved from one state to another.
    StateChanged {
        from: InstanceState,
        to: InstanceState,
        reason: String,
    },
    /// A restart made by the restart policy.
    RestartScheduled { attempt: u32, delay_ms: u64 },
    /// Anything else worth a line in the instance's history.
    Note { message: String },
    /// The instance is not where its `desiredState` says and the workers' controller does
    /// not move it (someone stopped it through the API, the restart policy is spent): said
    /// once per situation, not on every look.
    #[serde(rename_all = "camelCase")]
    Drift {
        state: InstanceState,
        desired_state: crate::instance::DesiredState,
        reason: String,
    },
}

/// An entry of the events stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The schema version.
    pub v: u16,
    /// The instance.
    pub instance_id: Uuid,
    /// Its platform.
    pub platform: Platform,
    /// When it happened.
    pub at: Timestamp,
    /// The command that caused it, when one did.
    pub command_id: Option<Uuid>,
    /// Who observed it: a worker's consumer name, or `api`.
    pub source: String,
    /// Who asked for the change: the API caller of the command that caused it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The tenant of the instance, so event feeds are filtered on the server. Filled in from
    /// the instance record when the event is appended (`Store::append_event`); absent on
    /// older events, which only cluster administrators see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceState::*;

    #[test]
    fn entry_states() {
        assert_eq!(Command::Start.entry_state(Stopped), Some(Ok(Starting)));
        assert_eq!(Command::Start.entry_state(Created), Some(Ok(Starting)));
        assert_eq!(Command::Stop.entry_state(Running), Some(Ok(Stopping)));
        assert_eq!(Command::Stop.entry_state(Lost), Some(Ok(Stopped)));
        assert_eq!(Command::Restart.entry_state(Running), Some(Ok(Stopping)));
        assert_eq!(Command::Restart.entry_state(Failed), Some(Ok(Starting)));
        assert_eq!(Command::Delete.entry_state(Running), Some(Ok(Deleting)));
        assert_eq!(Command::Ping.entry_state(Running), None);
        assert!(matches!(Command::Start.entry_state(Running), Some(Err(_))));
        assert!(matches!(Command::Stop.entry_state(Stopped), Some(Err(_))));
        assert!(matches!(
            Command::Delete.entry_state(Deleting),
            Some(Err(_))
        ));
        assert!(matches!(
            Command::ApplyConfig { generation: 2 }.entry_state(Stopped),
            Some(Err(_))
        ));
        assert_eq!(
            Command::ApplyConfig { generation: 2 }.entry_state(Running),
            Some(Ok(Stopping))
        );
    }

    #[test]
    fn kinds_round_trip() {
        for c in [
            Command::Start,
            Command::Stop,
            Command::Restart,
            Command::Delete,
            Command::ApplyConfig { generation: 1 },
            Command::Ping,
            Command::Logs { tail: 5 },
        ] {
            assert_eq!(CommandKind::parse(c.kind().as_str()), Some(c.kind()));
        }
    }
}

//! The durable `Operation` record: what a client polls, and the worker's execution record.
//!
//! It lives in one Redis string per command: a JSON object of string fields
//! ([`Operation::to_record`], [`Operation::from_record`]), which the bus's Lua scripts decode
//! and re-encode with Redis's built-in `cjson`. Records written by earlier versions are hashes
//! of the same fields ([`Operation::from_fields`] reads both).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{CommandEnvelope, CommandKind, ErrorInfo};
use crate::instance::Platform;
use crate::time::Timestamp;

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationState {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Pending => "pending",
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        use OperationState::*;
        [Pending, Running, Succeeded, Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Succeeded or failed: nothing will change it again.
    pub fn is_terminal(self) -> bool {
        matches!(self, OperationState::Succeeded | OperationState::Failed)
    }
}

/// One command as a client sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The operation's id (the command's).
    pub id: Uuid,
    /// The instance it acts on; `null` for platform commands (ping).
    pub instance_id: Option<Uuid>,
    /// The platform whose workers run it.
    pub platform: Platform,
    /// What it does.
    pub command: CommandKind,
    /// Where it is.
    pub state: OperationState,
    /// What a succeeded command returned (command-specific).
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<ErrorInfo>,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it ended.
    pub completed_at: Option<Timestamp>,
    /// Deliveries that started executing it.
    pub attempts: u32,
    /// The consumer that last executed it.
    pub worker: Option<String>,
    /// The tenant of the instance it acts on, from the command's envelope (set by the API, or
    /// by the worker for the commands it issues itself). Absent on records older than
    /// tenants: then the instance's tenant decides who sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A stored record that does not hold a valid operation.
#[derive(Debug, thiserror::Error)]
#[error("operation record field `{field}` is missing or invalid")]
pub struct FieldError {
    pub field: &'static str,
}

impl Operation {
    /// A new pending operation.
    pub fn pending(
        id: Uuid,
        instance_id: Option<Uuid>,
        platform: Platform,
        command: CommandKind,
        now: Timestamp,
    ) -> Self {
        Operation {
            id,
            instance_id,
            platform,
            command,
            state: OperationState::Pending,
            result: None,
            error: None,
            created_at: now,
            completed_at: None,
            attempts: 0,
            worker: None,
            tenant: None,
        }
    }

    /// The pending operation of a command, as whoever writes its record first writes it.
    pub fn of(env: &CommandEnvelope) -> Self {
        Operation {
            tenant: env.tenant.clone(),
            ..Operation::pending(
                env.command_id,
                env.instance_id,
                env.platform,
                env.command.kind(),
                env.issued_at,
            )
        }
    }

    /// The record as stored: a JSON object of this operation's fields and `extra` ones (the
    /// lease of a claim), every value a string, so a script's `cjson` round trip keeps them
    /// exactly.
    pub fn to_record(&self, extra: &[(&'static str, String)]) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .to_fields()
            .into_iter()
            .chain(extra.iter().cloned())
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// The fields of a stored record, including those outside [`Operation`] (`leaseUntil`).
    pub fn record_fields(record: &str) -> Result<HashMap<String, String>, FieldError> {
        serde_json::from_str(record).map_err(|_| FieldError { field: "record" })
    }

    /// Reads a stored record back.
    pub fn from_record(record: &str) -> Result<Self, FieldError> {
        Self::from_fields(&Self::record_fields(record)?)
    }

    /// The fields of this record. Absent options are left out.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("id", self.id.to_string()),
            ("platform", self.platform.as_str().to_owned()),
            ("command", self.command.as_str().to_owned()),
            ("state", self.state.as_str().to_owned()),
            ("created", self.created_at.millis().to_string()),
            ("attempts", self.attempts.to_string()),
        ];
        if let Some(id) = self.instance_id {
            fields.push(("instance", id.to_string()));
        }
        if let Some(result) = &self.result {
            fields.push(("result", result.to_string()));
        }
        if let Some(error) = &self.error {
            fields.push(("error", serde_json::to_string(error).unwrap_or_default()));
        }
        if let Some(t) = self.completed_at {
            fields.push(("completed", t.millis().to_string()));
        }
        if let Some(w) = &self.worker {
            fields.push(("worker", w.clone()));
        }
        if let Some(t) = &self.tenant {
            fields.push(("tenant", t.clone()));
        }
        fields
    }

    /// Reads a record back from its fields.
    pub fn from_fields(fields: &HashMap<String, String>) -> Result<Self, FieldError> {
        fn get<'a>(f: &'a HashMap<String, String>, k: &'static str) -> Result<&'a str, FieldError> {
            f.get(k).map(String::as_str).ok_or(FieldError { field: k })
        }
        fn parse<T: std::str::FromStr>(
            f: &HashMap<String, String>,
            k: &'static str,
        ) -> Result<T, FieldError> {
            get(f, k)?.parse().map_err(|_| FieldError { field: k })
        }
        let optional_json =
            |k: &'static str| -> Result<Option<String>, FieldError> { Ok(fields.get(k).cloned()) };
        Ok(Operation {
            id: parse(fields, "id")?,
            instance_id: match fields.get("instance") {
                Some(s) => Some(s.parse().map_err(|_| FieldError { field: "instance" })?),
                None => None,
            },
            platform: Platform::parse(get(fields, "platform")?)
                .ok_or(FieldError { field: "platform" })?,
            command: CommandKind::parse(get(fields, "command")?)
                .ok_or(FieldError { field: "command" })?,
            state: OperationState::parse(get(fields, "state")?)
                .ok_or(FieldError { field: "state" })?,
            result: match optional_json("result")? {
                Some(s) => {
                    Some(serde_json::from_str(&s).map_err(|_| FieldError { field: "result" })?)
                }
                None => None,
            },
            error: match optional_json("error")? {
                Some(s) => {
                    Some(serde_json::from_str(&s).map_err(|_| FieldError { field: "error" })?)
                }
                None => None,
            },
            created_at: Timestamp(parse(fields, "created")?),
            completed_at: match fields.get("completed") {
                Some(s) => Some(Timestamp(
                    s.parse().map_err(|_| FieldError { field: "completed" })?,
                )),
                None => None,
            },
            attempts: parse(fields, "attempts")?,
            worker: fields.get("worker").cloned(),
            tenant: fields.get("tenant").cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut op = Operation::pending(
            Uuid::now_v7(),
            Some(Uuid::now_v7()),
            Platform::Process,
            CommandKind::Start,
            Timestamp(10),
        );
        let back = |op: &Operation| {
            let map: HashMap<String, String> = op
                .to_fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            Operation::from_fields(&map).unwrap()
        };
        assert_eq!(back(&op), op);
        op.state = OperationState::Failed;
        op.error = Some(ErrorInfo::new("x", "y"));
        op.result = Some(serde_json::json!({"a": 1}));
        op.completed_at = Some(Timestamp(20));
        op.worker = Some("w".into());
        op.attempts = 2;
        op.tenant = Some("acme".into());
        assert_eq!(back(&op), op);
    }

    #[test]
    fn record_round_trip_keeps_extra_fields_as_strings() {
        let mut op = Operation::pending(
            Uuid::now_v7(),
            None,
            Platform::Docker,
            CommandKind::Ping,
            Timestamp(10),
        );
        op.result = Some(serde_json::json!({"big": 12345678901234567890u64, "s": "a/\"b"}));
        let record = op.to_record(&[("leaseUntil", "99".into())]);
        assert_eq!(Operation::from_record(&record).unwrap(), op);
        let fields = Operation::record_fields(&record).unwrap();
        assert_eq!(fields["leaseUntil"], "99");
        assert_eq!(fields["created"], "10");
        assert_eq!(
            Operation::from_record("not json").unwrap_err().field,
            "record"
        );
    }

    #[test]
    fn missing_field_is_named() {
        let err = Operation::from_fields(&HashMap::new()).unwrap_err();
        assert_eq!(err.field, "id");
    }
}

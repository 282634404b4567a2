//! Operation records (`op:<id>` hashes) and idempotency keys (`idem:<key>` strings).
//!
//! The operation hash is both what clients poll and the worker's execution record: a worker
//! claims it (compare-and-set, with a lease) before any side effect, and a redelivered command
//! whose record is already terminal is answered from the record instead of running again.

use std::collections::HashMap;

use draas_protocol::codec::{self, PAYLOAD_FIELD};
use draas_protocol::{ErrorInfo, Operation, OperationState, Outcome, Reply, Timestamp};
use redis::AsyncCommands;
use uuid::Uuid;

use super::{OPERATION_RETENTION_SECS, Store};
use crate::BusError;
use crate::clock::now;
use crate::connect::Conn;
use crate::scripts;
use crate::streams::{REPLIES_MAXLEN, REPLIES_TTL_SECS};

/// What claiming an operation for execution found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller owns it now; `attempts` counts this execution.
    Claimed { attempts: u32 },
    /// It already finished; here is the record.
    Done(Operation),
    /// Another live owner holds the lease.
    Busy { owner: String },
}

/// What an idempotency key already stood for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub operation: Uuid,
    pub fingerprint: String,
}

impl Store {
    /// Adds "write this pending operation" to a pipeline.
    pub fn put_operation_in(&self, pipe: &mut redis::Pipeline, op: &Operation) {
        let key = self.keys.operation(op.id);
        pipe.hset_multiple(&key, &op.to_fields()).ignore();
        pipe.expire(&key, OPERATION_RETENTION_SECS as i64).ignore();
    }

    /// Reads an operation.
    pub async fn operation(&self, id: Uuid) -> Result<Option<Operation>, BusError> {
        let key = self.keys.operation(id);
        let fields: HashMap<String, String> = self.conn().hgetall(&key).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        Operation::from_fields(&fields)
            .map(Some)
            .map_err(|e| BusError::corrupt(key, e))
    }

    /// Claims `op` for `consumer` with a lease until `lease_until`. A missing record (its
    /// writer crashed between the record and the stream append) is created from `op`.
    pub async fn claim_operation(
        &self,
        op: &Operation,
        consumer: &str,
        lease_until: Timestamp,
    ) -> Result<Claim, BusError> {
        let mut invocation = scripts::CLAIM_OPERATION.key(self.keys.operation(op.id));
        invocation
            .arg(consumer)
            .arg(now().millis())
            .arg(lease_until.millis());
        for (field, value) in op.to_fields() {
            if !matches!(field, "state" | "attempts" | "worker") {
                invocation.arg(field).arg(value);
            }
        }
        invocation.arg("attempts").arg(0);
        let (status, detail): (String, String) = invocation.invoke_async(&mut self.conn()).await?;
        Ok(match status.as_str() {
            "claimed" => Claim::Claimed {
                attempts: detail.parse().unwrap_or(1),
            },
            "busy" => Claim::Busy { owner: detail },
            _ => match self.operation(op.id).await? {
                Some(done) => Claim::Done(done),
                None => return Err(BusError::corrupt(self.keys.operation(op.id), "vanished")),
            },
        })
    }

    /// Extends the caller's lease; false once someone else owns the operation.
    pub async fn renew_operation(
        &self,
        id: Uuid,
        consumer: &str,
        lease_until: Timestamp,
    ) -> Result<bool, BusError> {
        let owned: i64 = scripts::RENEW_OPERATION
            .key(self.keys.operation(id))
            .arg(consumer)
            .arg(lease_until.millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(owned == 1)
    }

    /// Gives an operation back unexecuted (it belongs to another node); false if not ours.
    pub async fn release_operation(&self, id: Uuid, consumer: &str) -> Result<bool, BusError> {
        let released: i64 = scripts::RELEASE_OPERATION
            .key(self.keys.operation(id))
            .arg(consumer)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(released == 1)
    }

    /// Records how an operation ended, if `consumer` still owns it. False when fenced off.
    pub async fn finish_operation(
        &self,
        id: Uuid,
        consumer: &str,
        outcome: &Outcome,
        completed: Timestamp,
    ) -> Result<bool, BusError> {
        let mut invocation = scripts::FINISH_OPERATION.key(self.keys.operation(id));
        self.finish_args(&mut invocation, consumer, outcome, completed);
        let written: i64 = invocation.invoke_async(&mut self.conn()).await?;
        Ok(written == 1)
    }

    /// Records how an operation ended and sends `reply` to `reply_to`, if `consumer` still
    /// owns the operation; false when fenced off, and then nothing is sent (the new owner
    /// replies). On one Redis server both happen in one script, so the reply costs no round
    /// trip of its own; on a cluster the two keys live in different slots and this is
    /// [`Store::finish_operation`] followed by [`Store::send_reply`].
    pub async fn finish_and_reply(
        &self,
        consumer: &str,
        reply: &Reply,
        reply_to: Option<&str>,
    ) -> Result<bool, BusError> {
        let (id, outcome, completed) = (reply.command_id, &reply.outcome, reply.completed_at);
        let Some(reply_to) = reply_to.filter(|_| !matches!(self.conn, Conn::Cluster(_))) else {
            let written = self
                .finish_operation(id, consumer, outcome, completed)
                .await?;
            if let (true, Some(reply_to)) = (written, reply_to) {
                self.send_reply(reply_to, reply).await?;
            }
            return Ok(written);
        };
        let mut invocation = scripts::FINISH_AND_REPLY.key(self.keys.operation(id));
        invocation.key(reply_to);
        self.finish_args(&mut invocation, consumer, outcome, completed);
        invocation
            .arg(PAYLOAD_FIELD)
            .arg(codec::encode(reply))
            .arg(REPLIES_MAXLEN)
            .arg(REPLIES_TTL_SECS);
        let written: i64 = invocation.invoke_async(&mut self.conn()).await?;
        Ok(written == 1)
    }

    /// The finish scripts' ARGV 1–6: owner, final state, completion, result, error, retention.
    fn finish_args(
        &self,
        invocation: &mut redis::ScriptInvocation<'_>,
        consumer: &str,
        outcome: &Outcome,
        completed: Timestamp,
    ) {
        let (state, result, error) = match outcome {
            Outcome::Succeeded { result } => {
                (OperationState::Succeeded, result.to_string(), String::new())
            }
            Outcome::Failed { error } => (OperationState::Failed, String::new(), error_json(error)),
        };
        invocation
            .arg(consumer)
            .arg(state.as_str())
            .arg(completed.millis())
            .arg(result)
            .arg(error)
            .arg(self.operation_retention());
    }

    /// Binds an idempotency key to an operation unless it is already bound; returns the
    /// earlier binding when there is one. Keys live as long as operation records.
    pub async fn remember_idempotency(
        &self,
        key: &str,
        operation: Uuid,
        fingerprint: &str,
    ) -> Result<Option<Remembered>, BusError> {
        let mut conn = self.conn();
        let redis_key = self.keys.idempotency(key);
        let value = format!("{operation} {fingerprint}");
        let set: Option<String> = redis::cmd("SET")
            .arg(&redis_key)
            .arg(&value)
            .arg("NX")
            .arg("EX")
            .arg(OPERATION_RETENTION_SECS)
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(None);
        }
        let existing: Option<String> = conn.get(&redis_key).await?;
        let existing = existing.ok_or_else(|| BusError::corrupt(&redis_key, "vanished"))?;
        let (op, fp) = existing
            .split_once(' ')
            .ok_or_else(|| BusError::corrupt(&redis_key, "format"))?;
        Ok(Some(Remembered {
            operation: op
                .parse()
                .map_err(|_| BusError::corrupt(&redis_key, "operation id"))?,
            fingerprint: fp.to_owned(),
        }))
    }

    /// Forgets an idempotency key (used when the request it guarded was rejected).
    pub async fn forget_idempotency(&self, key: &str) -> Result<(), BusError> {
        self.conn().del::<_, ()>(self.keys.idempotency(key)).await?;
        Ok(())
    }
}

fn error_json(error: &ErrorInfo) -> String {
    serde_json::to_string(error).unwrap_or_default()
}

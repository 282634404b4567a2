//! Operation records (`op:<id>` strings of JSON, [`Operation::to_record`]) and idempotency
//! keys (`idem:<key>` strings).
//!
//! The operation record is both what clients poll and the worker's execution record: a worker
//! claims it (compare-and-set, with a lease) before any side effect, and a redelivered command
//! whose record is already terminal is answered from the record instead of running again.
//!
//! Whoever comes first writes it: the API when the command's id is known beyond the request
//! that issued it (an `Idempotency-Key`, `?wait=0`, a reply that did not come in time), else
//! the worker's claim. The claim is one `SET … NX EX … GET`: it creates the running record
//! with its TTL and lease, or returns the record that is there (finished: answered from it;
//! anything else: decided by [`scripts::CLAIM_OPERATIONS`]). Records that an earlier version
//! wrote as hashes are read as such until they are rewritten or expire.

use std::collections::HashMap;

use draas_protocol::codec::{self, PAYLOAD_FIELD};
use draas_protocol::{ErrorInfo, Operation, OperationState, Outcome, Reply, Timestamp};
use redis::AsyncCommands;
use uuid::Uuid;

use super::{OPERATION_RETENTION_SECS, Store};
use crate::BusError;
use crate::clock::now;
use crate::coalesce::Batch;
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
        pipe.cmd("SET")
            .arg(self.keys.operation(op.id))
            .arg(op.to_record(&[]))
            .arg("EX")
            .arg(OPERATION_RETENTION_SECS)
            .ignore();
    }

    /// Writes `op` unless its record exists, in one command; returns the record as it stands
    /// (the API's answer for a command whose reply did not come in time).
    pub async fn record_operation(&self, op: &Operation) -> Result<Operation, BusError> {
        let key = self.keys.operation(op.id);
        let found: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&key)
            .arg(op.to_record(&[]))
            .arg("NX")
            .arg("EX")
            .arg(OPERATION_RETENTION_SECS)
            .arg("GET")
            .query_async(&mut self.conn())
            .await;
        match found {
            Ok(None) => Ok(op.clone()),
            Ok(Some(record)) => {
                Operation::from_record(&record).map_err(|e| BusError::corrupt(key, e))
            }
            // A record of an earlier version: it exists, read it as it is.
            Err(e) if e.code() == Some("WRONGTYPE") => self
                .operation(op.id)
                .await?
                .ok_or_else(|| BusError::corrupt(key, "vanished")),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads an operation.
    pub async fn operation(&self, id: Uuid) -> Result<Option<Operation>, BusError> {
        let key = || self.keys.operation(id);
        let Some(fields) = self.operation_fields(&[id]).await?.pop().flatten() else {
            return Ok(None);
        };
        Operation::from_fields(&fields)
            .map(Some)
            .map_err(|e| BusError::corrupt(key(), e))
    }

    /// The stored fields of each operation (one pipelined `GET`), `None` where there is no
    /// record; with the fields outside [`Operation`] (`leaseUntil`) that operators inspect.
    pub async fn operation_fields(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<Option<HashMap<String, String>>>, BusError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.get(self.keys.operation(*id));
        }
        let mut conn = self.conn();
        let found: Vec<redis::RedisResult<Option<String>>> =
            match pipe.ignore_errors().query_async(&mut conn).await {
                Ok(found) => found,
                // A cluster sends a pipeline whose keys span slots command by command, and that
                // stops at the first error: read each record on its own.
                Err(e) if e.code() == Some("WRONGTYPE") => {
                    let mut found = Vec::with_capacity(ids.len());
                    for id in ids {
                        found.push(conn.get(self.keys.operation(*id)).await);
                    }
                    found
                }
                Err(e) => return Err(e.into()),
            };
        let mut out = Vec::with_capacity(ids.len());
        for (id, found) in ids.iter().zip(found) {
            let key = self.keys.operation(*id);
            out.push(match found {
                Ok(None) => None,
                Ok(Some(record)) => Some(
                    Operation::record_fields(&record).map_err(|e| BusError::corrupt(&key, e))?,
                ),
                // A record of an earlier version, a hash of the same fields.
                Err(e) if e.code() == Some("WRONGTYPE") => {
                    let fields: HashMap<String, String> = conn.hgetall(&key).await?;
                    (!fields.is_empty()).then_some(fields)
                }
                Err(e) => return Err(e.into()),
            });
        }
        Ok(out)
    }

    /// Claims `op` for `consumer` with a lease until `lease_until`: one `SET … NX EX … GET`
    /// that creates the running record when there is none (the usual case: the API writes
    /// none for a command only its caller knows) and answers from a finished one; only a record
    /// that is pending or running goes on to [`scripts::CLAIM_OPERATIONS`]. On one Redis
    /// server the claims made while one is on the wire go together, in one pipeline and at
    /// most one script call ([`crate::coalesce`]); a cluster claims each on its own (the
    /// records are in different slots).
    pub async fn claim_operation(
        &self,
        op: &Operation,
        consumer: &str,
        lease_until: Timestamp,
    ) -> Result<Claim, BusError> {
        let call = self.claim_call(op, consumer, lease_until);
        let claims = || Claims {
            conn: self.conn.clone(),
        };
        let (status, detail) = if matches!(self.conn, Conn::Cluster(_)) {
            // One key per call: the records of a batch would be in different slots.
            match claims().send(std::slice::from_ref(&call)).await {
                Ok(mut answers) if answers.len() == 1 => answers.pop().expect("one answer"),
                Ok(answers) => Err(format!("{} answers to one claim", answers.len())),
                Err(message) => Err(message),
            }
            .map_err(|e| {
                BusError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    Claims::WHAT,
                    e,
                )))
            })?
        } else {
            self.claims.call(claims, call).await?
        };
        self.claim_of(op.id, &status, detail)
    }

    /// The claim of `op` by `consumer` until `lease_until`, with the running record it creates
    /// when there is none.
    pub(crate) fn claim_call(
        &self,
        op: &Operation,
        consumer: &str,
        lease_until: Timestamp,
    ) -> ClaimCall {
        let running = Operation {
            state: OperationState::Running,
            attempts: 1,
            worker: Some(consumer.to_owned()),
            ..op.clone()
        };
        ClaimCall {
            key: self.keys.operation(op.id),
            consumer: consumer.to_owned(),
            lease_until: lease_until.millis(),
            running,
        }
    }

    /// A claim's answer, (status, detail) as [`Claims`] gives it, as a [`Claim`].
    pub(crate) fn claim_of(
        &self,
        id: Uuid,
        status: &str,
        detail: String,
    ) -> Result<Claim, BusError> {
        let key = || self.keys.operation(id);
        Ok(match status {
            "claimed" => Claim::Claimed {
                attempts: detail.parse().unwrap_or(1),
            },
            "busy" => Claim::Busy { owner: detail },
            "done" => match Operation::from_record(&detail) {
                Ok(done) if done.state.is_terminal() => Claim::Done(done),
                Ok(_) => return Err(BusError::corrupt(key(), "answered done unfinished")),
                Err(e) => return Err(BusError::corrupt(key(), e)),
            },
            other => {
                return Err(BusError::corrupt(
                    key(),
                    format!("claim answered `{other}`"),
                ));
            }
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
        let written: i64 = scripts::FINISH_OPERATION
            .key(self.keys.operation(id))
            .arg(&self.finish_args(consumer, outcome, completed)[..])
            .invoke_async(&mut self.conn())
            .await?;
        Ok(written == 1)
    }

    /// Records how an operation ended and sends `reply` to `reply_to`, if `consumer` still
    /// owns the operation; false when fenced off, and then nothing is sent (the new owner
    /// replies). On one Redis server both happen in one script, so the reply costs no round
    /// trip of its own, and the finishes made while one is on the wire go together in one
    /// script call ([`crate::coalesce`]); on a cluster the two keys live in different slots
    /// and this is [`Store::finish_operation`] followed by [`Store::send_reply`].
    pub async fn finish_and_reply(
        &self,
        consumer: &str,
        reply: &Reply,
        reply_to: Option<&str>,
    ) -> Result<bool, BusError> {
        let Some(reply_to) = reply_to.filter(|_| !matches!(self.conn, Conn::Cluster(_))) else {
            let written = self
                .finish_operation(
                    reply.command_id,
                    consumer,
                    &reply.outcome,
                    reply.completed_at,
                )
                .await?;
            if let (true, Some(reply_to)) = (written, reply_to) {
                self.send_reply(reply_to, reply).await?;
            }
            return Ok(written);
        };
        let call = self.finish_call(consumer, reply, reply_to);
        let finishes = || Finishes {
            conn: self.conn.clone(),
        };
        self.finishes.call(finishes, call).await
    }

    /// The finish of `reply`'s operation by `consumer`, with the reply sent to `reply_to`.
    fn finish_call(&self, consumer: &str, reply: &Reply, reply_to: &str) -> FinishCall {
        FinishCall {
            key: self.keys.operation(reply.command_id),
            reply_to: reply_to.to_owned(),
            args: self.finish_args(consumer, &reply.outcome, reply.completed_at),
            payload: codec::encode(reply),
        }
    }

    /// The finish's six values: owner, final state, completion, result, error, retention.
    fn finish_args(&self, consumer: &str, outcome: &Outcome, completed: Timestamp) -> [String; 6] {
        let (state, result, error) = match outcome {
            Outcome::Succeeded { result } => {
                (OperationState::Succeeded, result.to_string(), String::new())
            }
            Outcome::Failed { error } => (OperationState::Failed, String::new(), error_json(error)),
        };
        [
            consumer.to_owned(),
            state.as_str().to_owned(),
            completed.millis().to_string(),
            result,
            error,
            self.operation_retention().to_string(),
        ]
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

/// One claim: the record, who claims it until when, and the operation as its running record
/// says it (written only where a claim creates the record: built then, since a fused call
/// rarely needs it).
pub(crate) struct ClaimCall {
    key: String,
    consumer: String,
    lease_until: u64,
    running: Operation,
}

/// Claims sent as one pipeline of `SET … NX EX … GET` on `conn`, then one
/// [`scripts::CLAIM_OPERATIONS`] call for those whose record was there and unfinished; each
/// answers (status, detail), or fails on its own.
pub(crate) struct Claims {
    conn: Conn,
}

impl Batch for Claims {
    type Item = ClaimCall;
    type Output = (String, String);
    const WHAT: &'static str = "claiming operations";
    const MAX: usize = 128;

    async fn send(
        &self,
        items: &[ClaimCall],
    ) -> Result<Vec<Result<(String, String), String>>, String> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for call in items {
            call.add_to(&mut pipe);
        }
        let found: Vec<redis::RedisResult<Option<String>>> = pipe
            .ignore_errors()
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let found = found.into_iter().map(Found::from).collect();
        decide(&mut conn, &items.iter().collect::<Vec<_>>(), found).await
    }
}

impl ClaimCall {
    /// The running record the claim creates when there is none.
    fn fresh(&self) -> String {
        self.running
            .to_record(&[("leaseUntil", self.lease_until.to_string())])
    }

    /// The record's key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Adds the claim's first step, `SET … NX EX … GET`, to `pipe`.
    pub(crate) fn add_to(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("SET")
            .arg(&self.key)
            .arg(self.fresh())
            .arg("NX")
            .arg("EX")
            .arg(OPERATION_RETENTION_SECS)
            .arg("GET");
    }
}

/// What the first step of a claim (`SET … NX … GET`) found where the record goes.
pub(crate) enum Found {
    /// No record: the step created it, and the claim is made.
    Nothing,
    /// The record that was there, as it is stored.
    Record(String),
    /// A hash of an earlier version (`WRONGTYPE`).
    OldHash,
    /// The step failed, and why.
    Failed(String),
}

impl From<redis::RedisResult<Option<String>>> for Found {
    fn from(answer: redis::RedisResult<Option<String>>) -> Self {
        match answer {
            Ok(None) => Found::Nothing,
            Ok(Some(record)) => Found::Record(record),
            Err(e) if e.code() == Some("WRONGTYPE") => Found::OldHash,
            Err(e) => Found::Failed(e.to_string()),
        }
    }
}

/// The claims of `items` from what their first steps `found`: created (claimed), finished
/// (done), or decided by one [`scripts::CLAIM_OPERATIONS`] call for those whose record was
/// there and unfinished. Each answers (status, detail), or fails on its own.
pub(crate) async fn decide(
    conn: &mut Conn,
    items: &[&ClaimCall],
    found: Vec<Found>,
) -> Result<Vec<Result<(String, String), String>>, String> {
    if found.len() != items.len() {
        return Err(format!("{} answers to {} claims", found.len(), items.len()));
    }
    let mut undecided = Vec::new();
    let mut out: Vec<Result<(String, String), String>> = Vec::with_capacity(items.len());
    for (i, found) in found.into_iter().enumerate() {
        out.push(match found {
            Found::Nothing => Ok(("claimed".to_owned(), "1".to_owned())),
            Found::Record(record) => match Operation::record_fields(&record) {
                Ok(f)
                    if matches!(
                        f.get("state").map(String::as_str),
                        Some("succeeded" | "failed")
                    ) =>
                {
                    Ok(("done".to_owned(), record))
                }
                Ok(_) => {
                    undecided.push(i);
                    Err(String::new())
                }
                Err(e) => Err(e.to_string()),
            },
            // A hash of an earlier version: the script reads it.
            Found::OldHash => {
                undecided.push(i);
                Err(String::new())
            }
            Found::Failed(message) => Err(message),
        });
    }
    if undecided.is_empty() {
        return Ok(out);
    }
    let mut invocation = scripts::CLAIM_OPERATIONS.prepare_invoke();
    invocation.arg(now().millis());
    for &i in &undecided {
        let call = &items[i];
        invocation
            .key(&call.key)
            .arg(&call.consumer)
            .arg(call.lease_until)
            .arg(call.fresh())
            .arg(OPERATION_RETENTION_SECS);
    }
    let answered: Result<Vec<String>, String> = invocation
        .invoke_async(conn)
        .await
        .map_err(|e| e.to_string())
        .and_then(|flat: Vec<String>| {
            if flat.len() == 2 * undecided.len() {
                Ok(flat)
            } else {
                Err(format!(
                    "{} answers to {} claims",
                    flat.len() / 2,
                    undecided.len()
                ))
            }
        });
    // The claims decided by the first step stand whatever becomes of the script call.
    for (n, &i) in undecided.iter().enumerate() {
        out[i] = match &answered {
            Ok(flat) => match flat[2 * n].as_str() {
                "error" => Err(flat[2 * n + 1].clone()),
                status => Ok((status.to_owned(), flat[2 * n + 1].clone())),
            },
            Err(message) => Err(message.clone()),
        };
    }
    Ok(out)
}

/// One finish with its reply.
pub(crate) struct FinishCall {
    key: String,
    reply_to: String,
    args: [String; 6],
    payload: Vec<u8>,
}

impl FinishCall {
    /// Adds this finish to a [`scripts::FINISH_AND_REPLY`] call.
    fn add_to(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation
            .key(&self.key)
            .key(&self.reply_to)
            .arg(&self.args[..])
            .arg(PAYLOAD_FIELD)
            .arg(self.payload.as_slice())
            .arg(REPLIES_MAXLEN)
            .arg(REPLIES_TTL_SECS);
    }
}

/// What one [`scripts::FINISH_AND_REPLY`] call answered: per finish, whether it was written
/// (false: fenced off), or why it failed on its own.
fn finish_answers(written: Vec<String>) -> Vec<Result<bool, String>> {
    written
        .into_iter()
        .map(|w| match w.strip_prefix("error: ") {
            Some(message) => Err(message.to_owned()),
            None => Ok(w == "1"),
        })
        .collect()
}

/// Finishes and their replies sent as one [`scripts::FINISH_AND_REPLY`] call on `conn` (one
/// Redis server only); each answers whether it was written (false: fenced off), or fails on
/// its own.
pub(crate) struct Finishes {
    conn: Conn,
}

impl Batch for Finishes {
    type Item = FinishCall;
    type Output = bool;
    const WHAT: &'static str = "finishing operations";
    const MAX: usize = 128;

    async fn send(&self, items: &[FinishCall]) -> Result<Vec<Result<bool, String>>, String> {
        let mut invocation = scripts::FINISH_AND_REPLY.prepare_invoke();
        for call in items {
            call.add_to(&mut invocation);
        }
        let written: Vec<String> = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(finish_answers(written))
    }
}

fn error_json(error: &ErrorInfo) -> String {
    serde_json::to_string(error).unwrap_or_default()
}

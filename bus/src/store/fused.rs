//! The claim and the finish of an effect-free command in one call.
//!
//! A command that changes nothing (a ping, a log read) has its outcome before it is claimed,
//! so the worker runs it first, then sends its claim and its finish together: one script
//! ([`scripts::RECORD_FRESH_AND_REPLY`]) writes the finished record with `SET … NX … GET` and,
//! when that created the record, sends the reply. Creating the record is the claim: this
//! execution is then the first and only one that claimed the operation, exactly as a plain
//! claim that creates a running record, and nothing is decoded or compared in Redis. One
//! round trip on the critical path, one `EVALSHA` (a `SET` and an `XADD` inside).
//!
//! When a record was there (pending, finished, running, or a hash of an earlier version),
//! nothing is written, and the caller goes on as after a plain claim with what the script
//! found: the same decision ([`super::operations::decide`]), then the usual finish with the
//! outcome already computed. When the record was written but its reply failed, the caller
//! answers as for a finished record: it sends the reply from the record.
//!
//! Nothing is given up. A command with an effect still waits for its claim before its first
//! effect. An effect-free one may run twice (a duplicated entry), but only an execution whose
//! call created the record, or that won it later by a claim, records an outcome.
//!
//! The calls made together are batched ([`crate::coalesce`]): one script call for all of
//! them. On a cluster a record and its reply stream are in different slots, so there the
//! claim goes alone and the finish follows it as usual.

use draas_protocol::codec::{self, PAYLOAD_FIELD};
use draas_protocol::{Operation, OperationState, Outcome, Reply, Timestamp};

use super::Store;
use super::operations::{ClaimCall, Claims, Found, decide};
use crate::BusError;
use crate::coalesce::Batch;
use crate::connect::Conn;
use crate::scripts;
use crate::store::Claim;
use crate::streams::{REPLIES_MAXLEN, REPLIES_TTL_SECS};

/// What claiming and finishing in one call did.
#[derive(Debug, Clone, PartialEq)]
pub enum Fused {
    /// This call claimed the operation, recorded its outcome and sent the reply.
    Finished,
    /// Go on from this claim as after [`Store::claim_operation`] (a `Claimed` still needs its
    /// finish). Nothing was recorded or sent, except in one case: the record was written and
    /// its reply failed, answered as `Done` with that record (its reply is to be sent again).
    Unfinished(Claim),
}

impl Store {
    /// Claims `reply`'s operation `op` for `consumer` (lease until `lease_until`) and, in the
    /// same call, records `reply` as its outcome and sends it to `reply_to`, if the operation
    /// has no record yet. Only for a command with no effect: see the module docs.
    pub async fn claim_and_finish(
        &self,
        op: &Operation,
        consumer: &str,
        lease_until: Timestamp,
        reply: &Reply,
        reply_to: &str,
    ) -> Result<Fused, BusError> {
        if matches!(self.conn, Conn::Cluster(_)) {
            return Ok(Fused::Unfinished(
                self.claim_operation(op, consumer, lease_until).await?,
            ));
        }
        let call = FreshFinish {
            claim: self.claim_call(op, consumer, lease_until),
            record: finished_record(op, consumer, lease_until, reply),
            retention: self.operation_retention(),
            reply_to: reply_to.to_owned(),
            payload: codec::encode(reply),
        };
        let batch = || FreshFinishes {
            conn: self.conn.clone(),
        };
        let (status, detail) = match self.fresh_finishes.call(batch, call).await? {
            None => return Ok(Fused::Finished),
            Some(claim) => claim,
        };
        Ok(Fused::Unfinished(self.claim_of(op.id, &status, detail)?))
    }

    /// Loads the fused call's script into Redis's script cache, so the first call after a
    /// worker's start is not the one that pays for the load. Nothing to do on a cluster, which
    /// does not fuse.
    pub async fn preload_scripts(&self) -> Result<(), BusError> {
        if !matches!(self.conn, Conn::Cluster(_)) {
            scripts::RECORD_FRESH_AND_REPLY
                .load_async(&mut self.conn())
                .await?;
        }
        Ok(())
    }
}

/// `reply`'s operation `op` finished, as a claim by `consumer` (lease until `lease_until`)
/// and its finish would leave the record: attempt 1, this consumer, the claim's lease.
fn finished_record(
    op: &Operation,
    consumer: &str,
    lease_until: Timestamp,
    reply: &Reply,
) -> String {
    let (state, result, error) = match &reply.outcome {
        Outcome::Succeeded { result } => (OperationState::Succeeded, Some(result.clone()), None),
        Outcome::Failed { error } => (OperationState::Failed, None, Some(error.clone())),
    };
    let finished = Operation {
        state,
        result,
        error,
        completed_at: Some(reply.completed_at),
        attempts: 1,
        worker: Some(consumer.to_owned()),
        ..op.clone()
    };
    finished.to_record(&[("leaseUntil", lease_until.millis().to_string())])
}

/// One fused call: the record to create, the reply to send, the claim to make otherwise.
pub(crate) struct FreshFinish {
    claim: ClaimCall,
    record: String,
    retention: u64,
    reply_to: String,
    payload: Vec<u8>,
}

/// Fused calls sent as one [`scripts::RECORD_FRESH_AND_REPLY`] call on `conn`, then one
/// [`scripts::CLAIM_OPERATIONS`] call for those that found an unfinished record. Each answers
/// `None` (finished) or its claim as (status, detail), or fails on its own.
pub(crate) struct FreshFinishes {
    conn: Conn,
}

impl Batch for FreshFinishes {
    type Item = FreshFinish;
    type Output = Option<(String, String)>;
    const WHAT: &'static str = "claiming and finishing operations";
    const MAX: usize = Claims::MAX;

    async fn send(
        &self,
        items: &[FreshFinish],
    ) -> Result<Vec<Result<Option<(String, String)>, String>>, String> {
        let mut conn = self.conn.clone();
        let mut invocation = scripts::RECORD_FRESH_AND_REPLY.prepare_invoke();
        for call in items {
            invocation
                .key(call.claim.key())
                .key(&call.reply_to)
                .arg(&call.record)
                .arg(call.retention)
                .arg(PAYLOAD_FIELD)
                .arg(call.payload.as_slice())
                .arg(REPLIES_MAXLEN)
                .arg(REPLIES_TTL_SECS);
        }
        let flat: Vec<String> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if flat.len() != 2 * items.len() {
            return Err(format!(
                "{} answers to {} calls",
                flat.len() / 2,
                items.len()
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        let (mut claims, mut found) = (Vec::new(), Vec::new());
        for (i, (call, answer)) in items.iter().zip(flat.chunks_exact(2)).enumerate() {
            let (status, detail) = (answer[0].as_str(), answer[1].clone());
            out.push(match status {
                "finished" => Ok(None),
                // Finished; the reply failed: answered as a finished record is (its caller
                // sends the reply from the record).
                "recorded" => {
                    tracing::warn!(
                        message = "recorded an outcome; its reply failed and is sent again",
                        operation = call.claim.key(),
                        error = %detail
                    );
                    Ok(Some(("done".to_owned(), call.record.clone())))
                }
                "found" | "error" => {
                    claims.push((i, &call.claim));
                    found.push(match status {
                        "found" => Found::Record(detail),
                        _ if detail.starts_with("WRONGTYPE") => Found::OldHash,
                        _ => Found::Failed(detail),
                    });
                    Err(String::new())
                }
                other => Err(format!("answered `{other}`")),
            });
        }
        if claims.is_empty() {
            return Ok(out);
        }
        let calls: Vec<&ClaimCall> = claims.iter().map(|(_, call)| *call).collect();
        let decided = decide(&mut conn, &calls, found).await?;
        for ((i, _), claim) in claims.into_iter().zip(decided) {
            out[i] = claim.map(Some);
        }
        Ok(out)
    }
}

//! The claim and the finish of an effect-free command in one round trip.
//!
//! A command that changes nothing before its finish (a ping, a log read) has its outcome
//! before its claim is answered, so the worker sends the finish right behind the claim, in
//! the same pipeline: one round trip instead of two on its critical path. The finish counts
//! only if that very claim created the record. The claim writes a random token into the
//! running record it creates, and the finish ([`scripts::FINISH_AND_REPLY`]) writes and
//! replies only when the record carries the token. Redis runs one connection's commands in
//! order, so the finish sees the claim's effect.
//!
//! In every other case the finish is refused, and the caller goes on as after a plain claim,
//! with the claim's answer:
//! - the record was there: finished, pending, running, or a hash of an earlier version;
//! - the script failed or is not loaded (`NOSCRIPT`: a pipeline does not load it, so the
//!   worker loads it at start, [`Store::preload_scripts`]).
//!
//! Nothing is given up. A command with an effect still waits for its claim before its first
//! effect. An effect-free one may run twice (a duplicated entry), but only an execution whose
//! claim created the record, or won it later, records an outcome.
//!
//! The calls made together are batched as claims and finishes are ([`crate::coalesce`]): one
//! pipeline of `SET … NX EX … GET`, then one `EVALSHA` for all the finishes. On a cluster a
//! record and its reply stream are in different slots, so there the claim goes alone and the
//! finish follows it as usual.

use draas_protocol::{Operation, Reply, Timestamp};
use uuid::Uuid;

use super::Store;
use super::operations::{ClaimCall, Claims, FinishCall, decide, finish_answers};
use crate::BusError;
use crate::coalesce::Batch;
use crate::connect::Conn;
use crate::scripts;
use crate::store::Claim;

/// What claiming and finishing in one round trip did.
#[derive(Debug, Clone, PartialEq)]
pub enum Fused {
    /// This call claimed the operation, recorded its outcome and sent the reply.
    Finished,
    /// Nothing was recorded or sent: go on from this claim as after
    /// [`Store::claim_operation`] (a `Claimed` still needs its finish).
    Unfinished(Claim),
}

impl Store {
    /// Claims `reply`'s operation `op` for `consumer` until `lease_until` and, in the same
    /// round trip, records `reply` as its outcome and sends it to `reply_to`, if this claim is
    /// the one that created the operation's record. Only for a command with no effect before
    /// its finish: see the module docs.
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
        let token = Uuid::new_v4().simple().to_string();
        let call = (
            self.claim_call(op, consumer, lease_until, Some(&token)),
            self.finish_call(consumer, reply, reply_to, &token),
        );
        let together = || ClaimsAndFinishes {
            conn: self.conn.clone(),
        };
        let ((status, detail), finished) = self.claim_finishes.call(together, call).await?;
        if finished {
            return Ok(Fused::Finished);
        }
        Ok(Fused::Unfinished(self.claim_of(op.id, &status, detail)?))
    }

    /// Loads the finish script into Redis's script cache before the first fused call: a
    /// pipeline calls a script by its hash and cannot load it. Redis forgets its scripts when
    /// it restarts; then one fused call falls back, and its usual finish loads the script
    /// again. Nothing to do on a cluster, which does not fuse.
    pub async fn preload_scripts(&self) -> Result<(), BusError> {
        if !matches!(self.conn, Conn::Cluster(_)) {
            scripts::FINISH_AND_REPLY
                .load_async(&mut self.conn())
                .await?;
        }
        Ok(())
    }
}

/// Claims with their finishes, sent as one pipeline on `conn`: each claim's first step, then
/// one [`scripts::FINISH_AND_REPLY`] call for all the finishes, each conditioned on its
/// claim's token; then [`scripts::CLAIM_OPERATIONS`] for the claims that found an unfinished
/// record. Each answers its claim (status, detail) and whether its finish was written.
pub(crate) struct ClaimsAndFinishes {
    conn: Conn,
}

impl Batch for ClaimsAndFinishes {
    type Item = (ClaimCall, FinishCall);
    type Output = ((String, String), bool);
    const WHAT: &'static str = "claiming and finishing operations";
    const MAX: usize = Claims::MAX;

    async fn send(
        &self,
        items: &[(ClaimCall, FinishCall)],
    ) -> Result<Vec<Result<((String, String), bool), String>>, String> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        let mut invocation = scripts::FINISH_AND_REPLY.prepare_invoke();
        for (claim, finish) in items {
            claim.add_to(&mut pipe);
            finish.add_to(&mut invocation);
        }
        pipe.invoke_script(&invocation);
        let mut answers: Vec<redis::RedisResult<redis::Value>> = pipe
            .ignore_errors()
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if answers.len() != items.len() + 1 {
            return Err(format!(
                "{} answers to {} claims and their finish",
                answers.len(),
                items.len()
            ));
        }
        // A finish that failed, or a script Redis did not have, finished nothing: the claims
        // stand on their own.
        let finished: Vec<bool> = match answers.pop().expect("one more than the claims") {
            Ok(value) => match redis::from_redis_value::<Vec<String>>(value) {
                Ok(written) if written.len() == items.len() => finish_answers(written)
                    .into_iter()
                    .map(|w| w.unwrap_or(false))
                    .collect(),
                _ => vec![false; items.len()],
            },
            Err(_) => vec![false; items.len()],
        };
        let found = answers
            .into_iter()
            .map(|answer| answer.and_then(|v| Ok(redis::from_redis_value::<Option<String>>(v)?)))
            .collect();
        let calls: Vec<&ClaimCall> = items.iter().map(|(claim, _)| claim).collect();
        let decided = decide(&mut conn, &calls, found).await?;
        Ok(decided
            .into_iter()
            .zip(finished)
            .map(|(claim, finished)| claim.map(|claim| (claim, finished)))
            .collect())
    }
}

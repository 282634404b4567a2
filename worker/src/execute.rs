//! One stream entry, start to finish: decode, claim the operation (the execution record),
//! run the command (at most once if it has effects), record the outcome, reply, then ack and
//! delete the entry. A command without effects (a ping, a log read) delivered for the first
//! time runs first instead, and its claim and its finish are one call
//! (`Store::claim_and_finish`, one script on one server, which writes the finished record
//! only where there is none): running it changes nothing, and only the execution that created
//! the record (or won it later by a claim) records an outcome.
//!
//! The order matters. The outcome is recorded before the reply and the ack, so a crash at any
//! point leaves either an unfinished claim (the lease runs out and another worker re-runs it)
//! or a finished record (a redelivery answers from the record and runs nothing).

use std::sync::Arc;

use draas_bus::clock::now;
use draas_bus::store::{Claim, Fused};
use draas_bus::streams::payload;
use draas_protocol::{
    CommandEnvelope, Operation, OperationState, Outcome, Reply, SCHEMA_VERSION, Timestamp, codec,
};
use draas_telemetry::cache::Handles;
use draas_telemetry::names;
use redis::streams::StreamId;
use tracing::Instrument;

use crate::driver::Driver;
use crate::lifecycle::{Ctx, Dispatch, TRANSIENT};

/// What became of an entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Finished (now or earlier); the entry was acked.
    Acked,
    /// Left pending: another live owner holds it, or a step failed; it will be reclaimed.
    LeftPending,
}

/// How an entry reached this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Read as new (`XREADGROUP >`): its command has, as a rule, no record yet.
    First,
    /// Reclaimed from a consumer that held it too long: it may have run, or be running.
    Again,
}

/// Handles one entry of `stream`.
pub(crate) async fn entry<D: Driver>(
    ctx: &Arc<Ctx<D>>,
    stream: &str,
    entry: &StreamId,
    lease: std::time::Duration,
    delivery: Delivery,
) -> Handled {
    let env: CommandEnvelope = match payload(entry).and_then(|b| Ok(codec::decode(&b)?)) {
        Ok(env) => env,
        Err(error) => {
            // An entry nobody can read will never succeed: keep it for operators, then ack.
            tracing::error!(message = "undecodable command; dead-lettering", id = %entry.id, %error);
            let reason = format!("undecodable: {error}");
            return match ctx
                .store
                .dead_letter(ctx.platform, stream, entry, &reason, 1)
                .await
            {
                Ok(()) => {
                    metrics::counter!(names::DEAD_LETTERS, "platform" => ctx.platform.as_str())
                        .increment(1);
                    Handled::Acked
                }
                Err(error) => {
                    tracing::error!(message = "dead-lettering failed", id = %entry.id, %error);
                    Handled::LeftPending
                }
            };
        }
    };
    let span = tracing::info_span!(
        "command",
        otel.name = format!("command {}", env.command.kind().as_str()),
        otel.kind = "consumer",
        command = %env.command_id,
        kind = env.command.kind().as_str(),
        platform = env.platform.as_str(),
        attempt = env.attempt,
        trace_id = tracing::field::Empty,
    );
    draas_telemetry::trace::set_parent(&span, env.trace.as_deref(), env.trace_state.as_deref());
    if let Some(id) = env
        .trace
        .as_deref()
        .and_then(draas_telemetry::trace::trace_id)
    {
        span.record("trace_id", id);
    }
    if env.attempt > 1 {
        metrics::counter!(names::REDELIVERIES, "platform" => env.platform.as_str()).increment(1);
    }
    match run(ctx, stream, entry, &env, lease, delivery)
        .instrument(span)
        .await
    {
        Ok(handled) => handled,
        Err(error) => {
            tracing::warn!(message = "command left pending", id = %entry.id, command = %env.command_id, %error);
            Handled::LeftPending
        }
    }
}

async fn run<D: Driver>(
    ctx: &Arc<Ctx<D>>,
    stream: &str,
    entry: &StreamId,
    env: &CommandEnvelope,
    lease: std::time::Duration,
    delivery: Delivery,
) -> Result<Handled, draas_bus::BusError> {
    let job = Job {
        ctx,
        stream,
        entry,
        env,
        lease,
        metrics: CommandMetrics::of(env),
    };
    // A command that changes nothing, delivered for the first time, runs before it is claimed,
    // and its claim and finish are one call (`Store::claim_and_finish`): the finished record
    // is written, and the reply sent, only when there is no record, as for a fresh command.
    // A redelivered one claims first: it may be finished or running elsewhere, and a log
    // read is not free to repeat.
    let Some(reply_to) = env
        .reply_to
        .as_deref()
        .filter(|_| delivery == Delivery::First && !env.command.has_effects())
    else {
        return job.claim_first().await;
    };
    let (started, waited) = (std::time::Instant::now(), CommandMetrics::waited(env));
    let dispatched = {
        let dispatch = ctx.dispatch(env, 1);
        let fresh = keep_entry_fresh(ctx, stream, &entry.id, lease);
        tokio::pin!(dispatch, fresh);
        tokio::select! {
            biased;
            dispatched = &mut dispatch => dispatched,
            never = &mut fresh => match never {},
        }
    };
    let outcome = match settle(env, dispatched) {
        Settled::Outcome(outcome) => outcome,
        Settled::Transient => return Ok(Handled::LeftPending),
        // Not one of today's commands without effects: the usual path decides.
        Settled::Defer(_) => return job.claim_first().await,
    };
    let finished = job.reply(outcome.clone(), 1, now(), ctx.consumer.clone());
    let fused = ctx
        .store
        .claim_and_finish(
            &Operation::of(env),
            &ctx.consumer,
            lease_until(lease),
            &finished,
            reply_to,
        )
        .await?;
    match fused {
        Fused::Finished => {
            job.metrics.queue_wait.record(waited);
            job.metrics.finished(started, &finished.outcome);
            job.ack(None).await
        }
        Fused::Unfinished(claim) => {
            let early = Early {
                outcome,
                started,
                waited,
            };
            job.conclude(claim, Some(early)).await
        }
    }
}

/// One entry being handled, and what its steps share.
struct Job<'a, D> {
    ctx: &'a Arc<Ctx<D>>,
    stream: &'a str,
    entry: &'a StreamId,
    env: &'a CommandEnvelope,
    lease: std::time::Duration,
    metrics: CommandMetrics,
}

impl<D: Driver> Job<'_, D> {
    /// The reply: the outcome, the deliveries that executed the command and when it ended, as
    /// its operation record has them (the API answers from the reply, not the record).
    fn reply(
        &self,
        outcome: Outcome,
        attempts: u32,
        completed_at: Timestamp,
        worker: String,
    ) -> Reply {
        let env = self.env;
        Reply {
            v: SCHEMA_VERSION,
            command_id: env.command_id,
            correlation_id: env.correlation_id,
            instance_id: env.instance_id,
            platform: env.platform,
            worker,
            completed_at,
            outcome,
            attempts,
        }
    }

    /// The usual path: claim, then (in [`Job::conclude`]) run and finish.
    async fn claim_first(&self) -> Result<Handled, draas_bus::BusError> {
        let ctx = self.ctx;
        let claim = ctx
            .store
            .claim_operation(
                &Operation::of(self.env),
                &ctx.consumer,
                lease_until(self.lease),
            )
            .await?;
        self.conclude(claim, None).await
    }

    /// What follows a claim's answer: nothing (busy), the recorded reply (done), or the
    /// execution (unless it already ran: `early`) and its finish (claimed); then the ack.
    async fn conclude(
        &self,
        claim: Claim,
        early: Option<Early>,
    ) -> Result<Handled, draas_bus::BusError> {
        let (ctx, env) = (self.ctx, self.env);
        // A reply still to send (`None` once the finish has sent it with the record).
        let unsent = match claim {
            Claim::Busy { owner } => {
                tracing::debug!(message = "operation owned by a live worker", command = %env.command_id, %owner);
                return Ok(Handled::LeftPending);
            }
            Claim::Done(done) => Some(self.reply(
                outcome_of(&done),
                done.attempts,
                done.completed_at.unwrap_or_else(now),
                done.worker.clone().unwrap_or_else(|| ctx.consumer.clone()),
            )),
            Claim::Claimed { attempts } => {
                let (outcome, started) = match early {
                    Some(early) => {
                        self.metrics.queue_wait.record(early.waited);
                        (early.outcome, early.started)
                    }
                    None => match self.execute(attempts).await? {
                        Ran::Ended(outcome, started) => (outcome, started),
                        Ran::Interrupted => return Ok(Handled::LeftPending),
                        Ran::Forwarded => return Ok(Handled::Acked),
                    },
                };
                let finished = self.reply(outcome, attempts, now(), ctx.consumer.clone());
                // The record, then the reply: one script where Redis allows it.
                if !ctx
                    .store
                    .finish_and_reply(&ctx.consumer, &finished, env.reply_to.as_deref())
                    .await?
                {
                    // Our lease ran out and another worker took the command over: it replies.
                    tracing::warn!(message = "operation taken over while running", command = %env.command_id);
                    return Ok(Handled::LeftPending);
                }
                self.metrics.finished(started, &finished.outcome);
                None
            }
        };
        self.ack(unsent).await
    }

    /// Runs the claimed command, renewing its lease meanwhile.
    async fn execute(&self, attempts: u32) -> Result<Ran, draas_bus::BusError> {
        let (ctx, env) = (self.ctx, self.env);
        self.metrics.queue_wait.record(CommandMetrics::waited(env));
        let started = std::time::Instant::now();
        // Stops renewing when this execution ends, however it ends.
        let renewer = tokio_util::task::AbortOnDropHandle::new(renew_while_running(
            ctx,
            env,
            self.stream,
            &self.entry.id,
            self.lease,
        ));
        let dispatched = ctx.dispatch(env, attempts).await;
        drop(renewer);
        match settle(env, dispatched) {
            Settled::Outcome(outcome) => Ok(Ran::Ended(outcome, started)),
            Settled::Transient => Ok(Ran::Interrupted),
            Settled::Defer(node) => {
                // Another live node runs the instance: give the operation back unexecuted
                // and hand the entry to that node's own stream.
                tracing::info!(message = "forwarding a command to the node that runs its instance", command = %env.command_id, %node);
                ctx.store
                    .release_operation(env.command_id, &ctx.consumer)
                    .await?;
                let to = ctx.store.keys().node_commands(ctx.platform, &node);
                ctx.store.forward(self.stream, self.entry, &to).await?;
                metrics::counter!(names::FORWARDS, "platform" => env.platform.as_str())
                    .increment(1);
                Ok(Ran::Forwarded)
            }
        }
    }

    /// Sends the reply still unsent, if any, then acks and deletes the entry.
    async fn ack(&self, unsent: Option<Reply>) -> Result<Handled, draas_bus::BusError> {
        let (ctx, env) = (self.ctx, self.env);
        async {
            if let (Some(reply), Some(reply_to)) = (unsent, &env.reply_to) {
                ctx.store.send_reply(reply_to, &reply).await?;
            }
            ctx.store.ack(self.stream, &self.entry.id).await?;
            Ok::<_, draas_bus::BusError>(())
        }
        .instrument(tracing::info_span!("reply"))
        .await?;
        Ok(Handled::Acked)
    }
}

/// A command without effects that ran before it was claimed.
struct Early {
    outcome: Outcome,
    /// When it started to run.
    started: std::time::Instant,
    /// How long it had waited by then, in seconds.
    waited: f64,
}

/// What became of a claimed execution.
enum Ran {
    /// It ended with this outcome; it started then.
    Ended(Outcome, std::time::Instant),
    /// Redis failed under it: the entry stays pending (and the lease stays).
    Interrupted,
    /// Given back and forwarded to the node that runs the instance; the entry is acked.
    Forwarded,
}

/// What an execution came to.
enum Settled {
    Outcome(Outcome),
    /// Redis failed under it: neither done nor failed (see [`settle`]).
    Transient,
    /// Another live node runs the instance.
    Defer(String),
}

fn settle(env: &CommandEnvelope, dispatched: Dispatch) -> Settled {
    match dispatched {
        Dispatch::Done(Ok(result)) => Settled::Outcome(Outcome::Succeeded { result }),
        Dispatch::Done(Err(error)) if error.code == TRANSIENT => {
            // Redis failed under us: the command is neither done nor failed. Leave the
            // entry (and the lease, if claimed); the sweeper hands it back and the next
            // attempt resumes from the command's own last step.
            tracing::warn!(message = "redis unavailable mid-command; leaving it pending", command = %env.command_id, error = %error.message);
            Settled::Transient
        }
        Dispatch::Done(Err(error)) => Settled::Outcome(Outcome::Failed { error }),
        Dispatch::Defer(node) => Settled::Defer(node),
    }
}

fn outcome_of(op: &Operation) -> Outcome {
    match (op.state, &op.error) {
        (OperationState::Failed, Some(error)) => Outcome::Failed {
            error: error.clone(),
        },
        (OperationState::Failed, None) => Outcome::Failed {
            error: draas_protocol::ErrorInfo::new("failed", "operation failed"),
        },
        _ => Outcome::Succeeded {
            result: op.result.clone().unwrap_or(serde_json::Value::Null),
        },
    }
}

fn lease_until(lease: std::time::Duration) -> Timestamp {
    Timestamp(now().millis() + lease.as_millis() as u64)
}

/// Keeps the operation's lease fresh while a long command (a slow start) runs, and keeps the
/// stream entry's idle time low (XCLAIM JUSTID to ourselves: no delivery is counted), so no
/// sweeper mistakes a live execution for a dead consumer's entry.
fn renew_while_running<D: Driver>(
    ctx: &Arc<Ctx<D>>,
    env: &CommandEnvelope,
    stream: &str,
    entry_id: &str,
    lease: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    let ctx = Arc::clone(ctx);
    let id = env.command_id;
    let (stream, entry_id) = (stream.to_owned(), entry_id.to_owned());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            match ctx
                .store
                .renew_operation(id, &ctx.consumer, lease_until(lease))
                .await
            {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(message = "lease renewal failed", command = %id, %error)
                }
            }
            if let Err(error) = ctx
                .store
                .touch_pending(&stream, &ctx.consumer, &entry_id)
                .await
            {
                tracing::warn!(message = "pending entry refresh failed", command = %id, %error);
            }
        }
    })
}

/// Keeps the stream entry's idle time low while a command runs before its claim (there is no
/// record yet to renew), as [`renew_while_running`] does after one; never ends.
async fn keep_entry_fresh<D: Driver>(
    ctx: &Ctx<D>,
    stream: &str,
    entry_id: &str,
    lease: std::time::Duration,
) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(lease / 3).await;
        if let Err(error) = ctx
            .store
            .touch_pending(stream, &ctx.consumer, entry_id)
            .await
        {
            tracing::warn!(message = "pending entry refresh failed", entry = %entry_id, %error);
        }
    }
}

/// The metric handles of one (platform, kind), made once per process.
#[derive(Clone)]
struct CommandMetrics {
    queue_wait: metrics::Histogram,
    execution: metrics::Histogram,
    succeeded: metrics::Counter,
    failed: metrics::Counter,
}

impl CommandMetrics {
    /// How long the command has waited since its issue, in seconds: recorded as its queue
    /// wait once it is claimed.
    fn waited(env: &CommandEnvelope) -> f64 {
        now().millis().saturating_sub(env.issued_at.millis()) as f64 / 1000.0
    }

    /// Records an execution that ended with `outcome`, recorded and replied.
    fn finished(&self, started: std::time::Instant, outcome: &Outcome) {
        self.execution.record(started.elapsed().as_secs_f64());
        if matches!(outcome, Outcome::Succeeded { .. }) {
            self.succeeded.increment(1);
        } else {
            self.failed.increment(1);
        }
    }

    fn of(env: &CommandEnvelope) -> CommandMetrics {
        static HANDLES: std::sync::LazyLock<
            Handles<(draas_protocol::Platform, draas_protocol::CommandKind), CommandMetrics>,
        > = std::sync::LazyLock::new(Handles::default);
        let key = (env.platform, env.command.kind());
        HANDLES.get(&key, || {
            let (platform, kind) = (key.0.as_str(), key.1.as_str());
            let labels = [("platform", platform), ("kind", kind)];
            let done = |outcome: &'static str| {
                metrics::counter!(names::COMMANDS_COMPLETED, "platform" => platform,
                    "kind" => kind, "outcome" => outcome)
            };
            let handles = CommandMetrics {
                queue_wait: metrics::histogram!(names::COMMAND_QUEUE_WAIT, &labels),
                execution: metrics::histogram!(names::COMMAND_EXECUTION, &labels),
                succeeded: done("succeeded"),
                failed: done("failed"),
            };
            (key, handles)
        })
    }
}

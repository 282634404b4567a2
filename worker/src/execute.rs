//! One stream entry, start to finish: decode, claim the operation (the execution record),
//! run the command at most once, record the outcome, reply, then ack and delete the entry.
//!
//! The order matters. The outcome is recorded before the reply and the ack, so a crash at any
//! point leaves either an unfinished claim (the lease runs out and another worker re-runs it)
//! or a finished record (a redelivery answers from the record and runs nothing).

use std::sync::Arc;

use draas_bus::clock::now;
use draas_bus::store::Claim;
use draas_bus::streams::payload;
use draas_protocol::{
    CommandEnvelope, Operation, OperationState, Outcome, Reply, SCHEMA_VERSION, Timestamp, codec,
};
use redis::streams::StreamId;

use crate::driver::Driver;
use crate::lifecycle::Ctx;

/// What became of an entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Finished (now or earlier); the entry was acked.
    Acked,
    /// Left pending: another live owner holds it, or a step failed; it will be reclaimed.
    LeftPending,
}

/// Handles one entry of `stream`.
pub(crate) async fn entry<D: Driver>(
    ctx: &Arc<Ctx<D>>,
    stream: &str,
    entry: &StreamId,
    lease: std::time::Duration,
) -> Handled {
    let env: CommandEnvelope = match payload(entry).and_then(|b| Ok(codec::decode(&b)?)) {
        Ok(env) => env,
        Err(error) => {
            // An entry nobody can read will never succeed: keep it for operators, then ack.
            tracing::error!(message = "undecodable command; dead-lettering", id = %entry.id, %error);
            return dead_letter(ctx, stream, entry, &error.to_string()).await;
        }
    };
    match run(ctx, stream, entry, &env, lease).await {
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
) -> Result<Handled, draas_bus::BusError> {
    let op = Operation::pending(
        env.command_id,
        env.instance_id,
        env.platform,
        env.command.kind(),
        env.issued_at,
    );
    let outcome = match ctx
        .store
        .claim_operation(&op, &ctx.consumer, lease_until(lease))
        .await?
    {
        Claim::Busy { owner } => {
            tracing::debug!(message = "operation owned by a live worker", command = %env.command_id, %owner);
            return Ok(Handled::LeftPending);
        }
        Claim::Done(done) => outcome_of(&done),
        Claim::Claimed { .. } => {
            let renewer = renew_while_running(ctx, env, lease);
            let result = ctx.dispatch(env).await;
            renewer.abort();
            let outcome = match result {
                Ok(result) => Outcome::Succeeded { result },
                Err(error) => Outcome::Failed { error },
            };
            if !ctx
                .store
                .finish_operation(env.command_id, &ctx.consumer, &outcome)
                .await?
            {
                // Our lease ran out and another worker took the command over: it replies.
                tracing::warn!(message = "operation taken over while running", command = %env.command_id);
                return Ok(Handled::LeftPending);
            }
            outcome
        }
    };
    if let Some(reply_to) = &env.reply_to {
        let reply = Reply {
            v: SCHEMA_VERSION,
            command_id: env.command_id,
            correlation_id: env.correlation_id,
            instance_id: env.instance_id,
            platform: env.platform,
            worker: ctx.consumer.clone(),
            completed_at: now(),
            outcome,
        };
        ctx.store.send_reply(reply_to, &reply).await?;
    }
    ctx.store
        .ack_and_delete(stream, std::slice::from_ref(&entry.id))
        .await?;
    Ok(Handled::Acked)
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

/// Keeps the operation's lease fresh while a long command (a slow start) runs.
fn renew_while_running<D: Driver>(
    ctx: &Arc<Ctx<D>>,
    env: &CommandEnvelope,
    lease: std::time::Duration,
) -> tokio::task::AbortHandle {
    let ctx = Arc::clone(ctx);
    let id = env.command_id;
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
        }
    })
    .abort_handle()
}

async fn dead_letter<D: Driver>(
    ctx: &Arc<Ctx<D>>,
    stream: &str,
    entry: &StreamId,
    reason: &str,
) -> Handled {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(ctx.store.keys().dead_letters(ctx.platform))
        .arg("*");
    cmd.arg("reason")
        .arg(reason)
        .arg("stream")
        .arg(stream)
        .arg("entry")
        .arg(&entry.id);
    for (field, value) in &entry.map {
        if let redis::Value::BulkString(bytes) = value {
            cmd.arg(format!("orig.{field}")).arg(bytes.as_slice());
        }
    }
    let moved: Result<String, _> = cmd.query_async(&mut ctx.store.conn()).await;
    match moved {
        Ok(_) => match ctx
            .store
            .ack_and_delete(stream, std::slice::from_ref(&entry.id))
            .await
        {
            Ok(()) => Handled::Acked,
            Err(_) => Handled::LeftPending,
        },
        Err(error) => {
            tracing::error!(message = "dead-lettering failed", id = %entry.id, %error);
            Handled::LeftPending
        }
    }
}

//! The platform's controller: one worker of the platform at a time (elected by a lease in
//! Redis, `Store::hold_converge_lease`) looks every `converge_interval` at the instances of its
//! platform, a bounded cursor-paged batch per look, and moves those with a `desiredState`
//! toward it: a lost or crashed instance its restart policy would restart is started, a
//! running one desired stopped is stopped; any other disagreement is a `drift` event. It
//! never acts while a command is at work on an instance (the last command's operation is not
//! finished, or the state is a transitional one) and handles each situation once: the mark
//! (`Store::mark_converged`) is taken before the command is appended, and names the
//! generation, the fencing token and the states, so two controllers around a lease handover
//! cannot both act.
//!
//! [`judge`] decides without I/O; this module pages, checks, marks and appends.

mod judge;

use std::sync::Arc;
use std::time::Duration;

use draas_bus::BusError;
use draas_bus::clock::now;
use draas_bus::store::StoredInstance;
use draas_protocol::{CommandEnvelope, EventKind};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::driver::Driver;
use crate::lifecycle::Ctx;
use judge::{Verdict, judge, situation};

/// Ids read from the index per page.
const PAGE: usize = 100;
/// Ids looked at per tick at most; the cursor carries on from there at the next.
const PER_TICK: usize = 1_000;
/// Who the commands the controller sends name as their actor (in their events).
const ACTOR: &str = "controller";

/// Runs the controller loop until `stop` is cancelled; gives the lease up on the way out.
/// A zero `interval` turns it off.
pub(crate) async fn run<D: Driver>(ctx: Arc<Ctx<D>>, interval: Duration, stop: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    // Three looks' worth: a holder that misses two renewals in a row loses it.
    let ttl = (interval * 3).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    let mut cursor = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let held = ctx
            .store
            .hold_converge_lease(ctx.platform, &ctx.consumer, ttl)
            .await;
        match held {
            Ok(true) if !leading => {
                tracing::info!(message = "controller lease taken", platform = %ctx.platform);
                leading = true;
            }
            Ok(true) => {}
            Ok(false) => {
                if leading {
                    tracing::info!(message = "controller lease lost", platform = %ctx.platform);
                }
                leading = false;
                cursor = None;
                continue;
            }
            Err(error) => {
                tracing::warn!(message = "controller lease not renewed", %error);
                continue;
            }
        }
        if let Err(error) = look(&ctx, &mut cursor, interval).await {
            tracing::warn!(message = "controller look failed", %error);
        }
    }
    if leading
        && let Err(error) = ctx
            .store
            .release_converge_lease(ctx.platform, &ctx.consumer)
            .await
    {
        tracing::warn!(message = "controller lease not released", %error);
    }
}

/// One look: up to [`PER_TICK`] ids of the instance index from `cursor` on; back to the
/// start once the index is done.
async fn look<D: Driver>(
    ctx: &Ctx<D>,
    cursor: &mut Option<Uuid>,
    settle: Duration,
) -> Result<(), BusError> {
    let settle_ms = settle.as_millis() as u64;
    let mut scanned = 0;
    while scanned < PER_TICK {
        let (page, last) = ctx.store.stored_instances_page(*cursor, PAGE).await?;
        let Some(last) = last else {
            *cursor = None;
            return Ok(());
        };
        *cursor = Some(last);
        scanned += PAGE;
        for stored in page {
            if stored.instance.spec.platform != ctx.platform {
                continue;
            }
            let id = stored.instance.id;
            if let Err(error) = consider(ctx, stored, settle_ms).await {
                tracing::warn!(message = "controller could not judge an instance", instance = %id, %error);
            }
        }
    }
    Ok(())
}

/// Judges one instance and acts on the verdict, at most once per situation.
async fn consider<D: Driver>(
    ctx: &Ctx<D>,
    stored: StoredInstance,
    settle_ms: u64,
) -> Result<(), BusError> {
    let verdict = judge(&stored, now(), settle_ms);
    if matches!(verdict, Verdict::Agree | Verdict::Wait) || in_flight(ctx, &stored).await? {
        return Ok(());
    }
    let inst = &stored.instance;
    let (id, state) = (inst.id, inst.state);
    let Some(desired) = inst.spec.desired_state else {
        return Ok(());
    };
    let situation = situation(&stored);
    match verdict {
        Verdict::Act {
            command,
            origin,
            reason,
        } => {
            let mut env = CommandEnvelope::new(ctx.platform, Some(id), command, now());
            env.origin = origin;
            env.actor = Some(ACTOR.to_owned());
            // Shown by the operator tools: the situation this command answers.
            env.idempotency_key = Some(format!("{ACTOR}:{id}:{situation}"));
            let command_id = env.command_id;
            if !ctx
                .store
                .mark_converged(id, &situation, &command_id.to_string())
                .await?
            {
                return Ok(());
            }
            tracing::info!(message = "controller acting", instance = %id, %state, %desired, command = %env.command.kind());
            if let Err(error) = ctx.enqueue_envelope(env).await {
                // Not appended: the next look may try again.
                ctx.store.unmark_converged(id, &situation).await?;
                return Err(error);
            }
            ctx.emit(id, Some(command_id), EventKind::Note { message: reason })
                .await;
        }
        Verdict::Drift(reason) => {
            if !ctx.store.mark_converged(id, &situation, "drift").await? {
                return Ok(());
            }
            tracing::info!(message = "instance drifted", instance = %id, %state, %desired, %reason);
            ctx.emit(
                id,
                None,
                EventKind::Drift {
                    state,
                    desired_state: desired,
                    reason,
                },
            )
            .await;
        }
        Verdict::Agree | Verdict::Wait => {}
    }
    Ok(())
}

/// Whether a command is at work on the instance: the operation of the last command that
/// moved it has not finished.
async fn in_flight<D: Driver>(ctx: &Ctx<D>, stored: &StoredInstance) -> Result<bool, BusError> {
    let Some(op) = stored.last_command else {
        return Ok(false);
    };
    Ok(ctx
        .store
        .operation(op)
        .await?
        .is_some_and(|op| !op.state.is_terminal()))
}

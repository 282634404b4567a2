//! Turns exits the driver observed into honest instance state: a running instance whose
//! process died unasked becomes `failed`, with the exit code and the log tail.

use draas_protocol::{Command, EventKind, InstanceState, Origin};
use tokio::sync::mpsc;

use crate::driver::{Driver, DriverEvent, Exit};
use crate::lifecycle::Ctx;
use draas_bus::store::Transition;
use draas_telemetry::names;

/// Consumes driver events until the channel closes.
pub(crate) async fn run<D: Driver>(
    ctx: std::sync::Arc<Ctx<D>>,
    mut events: mpsc::UnboundedReceiver<DriverEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            DriverEvent::Exited(exit) => {
                if let Err(error) = record(&ctx, &exit).await {
                    tracing::warn!(message = "could not record instance exit", instance = %exit.instance, %error);
                }
            }
            DriverEvent::Note { instance, message } => {
                ctx.emit(instance, None, EventKind::Note { message }).await;
            }
            DriverEvent::Observed { instance, observed } => {
                if let Err(error) = observe(&ctx, instance, observed).await {
                    tracing::warn!(message = "could not record an observation", %instance, %error);
                }
            }
        }
    }
}

/// Stores what the platform says about the workload and notes each change in the instance's
/// history. Several workers may watch the same workload: an observation already stored is
/// neither written nor noted again.
async fn observe<D: Driver>(
    ctx: &Ctx<D>,
    instance: uuid::Uuid,
    observed: draas_protocol::Observed,
) -> Result<(), draas_bus::BusError> {
    let Some(stored) = ctx.store.instance(instance).await? else {
        return Ok(());
    };
    let known = stored.instance.runtime.observed.as_ref();
    if known.is_some_and(|k| k.same_as(&observed)) {
        return Ok(());
    }
    if ctx.store.set_observed(instance, &observed).await? {
        let what = match &observed.name {
            Some(name) => format!("{} {name}: {}", ctx.platform, observed.describe()),
            None => format!("{}: {}", ctx.platform, observed.describe()),
        };
        ctx.emit(instance, None, EventKind::Note { message: what })
            .await;
    }
    Ok(())
}

/// Waits (bounded) until the instance leaves `starting`, then records the exit.
fn settle_then_record<D: Driver>(ctx: &std::sync::Arc<Ctx<D>>, exit: &Exit) {
    let (ctx, exit) = (std::sync::Arc::clone(ctx), exit.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            match ctx.store.instance(exit.instance).await {
                Ok(Some(s)) if s.instance.state == InstanceState::Starting => continue,
                Ok(Some(s)) if s.instance.state == InstanceState::Running => {
                    if let Err(error) = Box::pin(record(&ctx, &exit)).await {
                        tracing::warn!(message = "could not record instance exit", instance = %exit.instance, %error);
                    }
                    return;
                }
                _ => return,
            }
        }
    });
}

async fn record<D: Driver>(
    ctx: &std::sync::Arc<Ctx<D>>,
    exit: &Exit,
) -> Result<(), draas_bus::BusError> {
    let Some(stored) = ctx.store.instance(exit.instance).await? else {
        return Ok(());
    };
    let inst = stored.instance;
    if inst.state == InstanceState::Starting {
        // The exit raced the last step of a start (after its readiness check, before it
        // recorded `running`): decide once the start has recorded its outcome.
        settle_then_record(ctx, exit);
        return Ok(());
    }
    // Only a running instance can die unasked: stopping ones are watched by their command.
    if inst.state != InstanceState::Running {
        return Ok(());
    }
    // A late exit of a process that was already replaced says nothing about the current one.
    if let (Some(exited), Some(current)) = (exit.pid, inst.runtime.pid)
        && exited != current
    {
        return Ok(());
    }
    // A watcher's report from before the current run started is about an earlier run.
    if let (Some(seen), Some(started)) = (exit.seen_at, inst.runtime.started_at)
        && seen < started
    {
        return Ok(());
    }
    // A workload the platform keeps restarting is stopped: `failed` means not running.
    if exit.still_running
        && let Err(error) = ctx.driver.stop(exit.instance).await
    {
        tracing::warn!(message = "could not stop a failed instance", instance = %exit.instance, %error);
    }
    let how = match (&exit.reason, exit.code, exit.signal) {
        (Some(reason), _, _) => reason.clone(),
        (None, Some(code), _) => format!("exited with code {code}"),
        (None, None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "exited".to_owned(),
    };
    let mut runtime = inst.runtime.clone();
    runtime.pid = None;
    runtime.exit_code = exit.code.or(exit.signal.map(|s| 128 + s));
    runtime.message = Some(format!(
        "instance {how} unexpectedly\n--- log tail ---\n{}",
        draas_protocol::env::scrub(&exit.log_tail, &inst.spec.env)
    ));
    let moved = ctx
        .store
        .transition(
            exit.instance,
            InstanceState::Running,
            InstanceState::Failed,
            0,
            Some(&runtime),
        )
        .await?;
    if let Transition::Done(_) = moved {
        tracing::warn!(message = "instance died", instance = %exit.instance, %how);
        metrics::counter!(names::UNEXPECTED_EXITS, "platform" => ctx.platform.as_str())
            .increment(1);
        schedule_restart(ctx, exit, &inst).await;
        ctx.emit(
            exit.instance,
            None,
            EventKind::StateChanged {
                from: InstanceState::Running,
                to: InstanceState::Failed,
                reason: how.clone(),
            },
        )
        .await;
    }
    Ok(())
}

/// Applies the restart policy: never; on-failure (a non-zero exit or a signal); always. Each
/// restart waits `initialBackoffMs × 2^restarts` (capped at `maxBackoffMs`), is an event, and
/// goes through the bus as a Start command, fenced like any other.
async fn schedule_restart<D: Driver>(
    ctx: &std::sync::Arc<Ctx<D>>,
    exit: &Exit,
    inst: &draas_protocol::Instance,
) {
    let policy = &inst.spec.restart_policy;
    let attempt = inst.runtime.restarts + 1;
    let Some(delay_ms) = policy.restart_delay(exit.code, inst.runtime.restarts) else {
        return;
    };
    ctx.emit(
        exit.instance,
        None,
        EventKind::RestartScheduled { attempt, delay_ms },
    )
    .await;
    let ctx = std::sync::Arc::clone(ctx);
    let id = exit.instance;
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        match ctx.enqueue(id, Command::Start, Origin::RestartPolicy).await {
            Ok(_) => {
                metrics::counter!(names::RESTARTS, "platform" => ctx.platform.as_str()).increment(1)
            }
            Err(error) => {
                tracing::warn!(message = "restart could not be enqueued", instance = %id, %error)
            }
        }
    });
}

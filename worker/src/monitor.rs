//! Turns exits the driver observed into honest instance state: a running instance whose
//! process died unasked becomes `failed`, with the exit code and the log tail.

use draas_protocol::{EventKind, InstanceState};
use tokio::sync::mpsc;

use crate::driver::{Driver, Exit};
use crate::lifecycle::Ctx;
use draas_bus::store::Transition;

/// Consumes exits until the channel closes.
pub(crate) async fn run<D: Driver>(
    ctx: std::sync::Arc<Ctx<D>>,
    mut exits: mpsc::UnboundedReceiver<Exit>,
) {
    while let Some(exit) = exits.recv().await {
        if let Err(error) = record(&ctx, &exit).await {
            tracing::warn!(message = "could not record instance exit", instance = %exit.instance, %error);
        }
    }
}

async fn record<D: Driver>(ctx: &Ctx<D>, exit: &Exit) -> Result<(), draas_bus::BusError> {
    let Some(stored) = ctx.store.instance(exit.instance).await? else {
        return Ok(());
    };
    let inst = stored.instance;
    if inst.state != InstanceState::Running {
        return Ok(());
    }
    let how = match (exit.code, exit.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "exited".to_owned(),
    };
    let mut runtime = inst.runtime.clone();
    runtime.pid = None;
    runtime.exit_code = exit.code.or(exit.signal.map(|s| 128 + s));
    runtime.message = Some(format!(
        "process {how} unexpectedly\n--- log tail ---\n{}",
        exit.log_tail
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
        tracing::warn!(message = "instance process died", instance = %exit.instance, %how);
        ctx.emit(
            exit.instance,
            None,
            EventKind::StateChanged {
                from: InstanceState::Running,
                to: InstanceState::Failed,
                reason: format!("process {how}"),
            },
        )
        .await;
    }
    Ok(())
}

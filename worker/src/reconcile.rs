//! Start-up reconciliation: make the records of this node's instances match what actually
//! runs here, before taking any command.
//!
//! - A process left by an earlier worker on this node is adopted (never launched again).
//! - An adopted process whose instance is gone, or now placed on another node, is stopped.
//! - An instance recorded as running here whose process is gone is marked `failed`.
//! - On a shared platform (Docker, Kubernetes), an instance recorded as running whose workload
//!   is gone (removed while no worker watched) is marked `failed`.

use std::sync::Arc;

use draas_bus::store::Transition;
use draas_protocol::{EventKind, InstanceState, RuntimeInfo};

use crate::driver::Driver;
use crate::lifecycle::Ctx;

/// Adopts surviving processes and corrects the records of this node's instances.
pub(crate) async fn run<D: Driver>(ctx: &Arc<Ctx<D>>) -> Result<(), draas_bus::BusError> {
    let adopted = ctx.driver.adopt().await;
    for id in &adopted {
        let record = ctx.store.instance(*id).await?;
        // A process belongs to the node that started it; a container on a shared daemon only
        // needs its record to exist.
        let ours = match &record {
            None => false,
            Some(_) if !ctx.driver.node_bound() => true,
            Some(r) => r.instance.runtime.node.as_deref() == Some(ctx.node.as_str()),
        };
        if !ours {
            tracing::warn!(message = "stopping a process whose instance is gone or placed elsewhere", instance = %id);
            if let Err(error) = ctx.driver.remove(*id).await {
                tracing::warn!(message = "could not remove a stray instance", instance = %id, %error);
            }
            continue;
        }
        // Ours, but recorded as stopped, failed or lost while this node's worker was away
        // (another worker took a command for it): it must not keep running.
        let state = record.map(|r| r.instance.state);
        let may_run = matches!(
            state,
            Some(InstanceState::Running | InstanceState::Starting | InstanceState::Stopping)
        );
        if !may_run {
            tracing::warn!(message = "stopping a process its record says is not running", instance = %id, ?state);
            if let Err(error) = ctx.driver.stop(*id).await {
                tracing::warn!(message = "could not stop a stray instance", instance = %id, %error);
            }
        }
    }
    if !ctx.driver.node_bound() {
        fail_vanished(ctx, &adopted).await?;
    }
    for id in ctx.store.placed(ctx.platform, &ctx.node).await? {
        let Some(stored) = ctx.store.instance(id).await? else {
            ctx.store.unplace(ctx.platform, &ctx.node, id).await?;
            continue;
        };
        let inst = stored.instance;
        let here = inst.runtime.node.as_deref() == Some(ctx.node.as_str());
        if !here {
            ctx.store.unplace(ctx.platform, &ctx.node, id).await?;
            continue;
        }
        if inst.state == InstanceState::Running && !adopted.contains(&id) {
            let runtime = RuntimeInfo {
                node: inst.runtime.node.clone(),
                message: Some("the process was gone when its worker restarted".into()),
                restarts: inst.runtime.restarts,
                ..RuntimeInfo::default()
            };
            let moved = ctx
                .store
                .transition(
                    id,
                    InstanceState::Running,
                    InstanceState::Failed,
                    0,
                    Some(&runtime),
                )
                .await?;
            if let Transition::Done(_) = moved {
                ctx.emit(
                    id,
                    None,
                    EventKind::StateChanged {
                        from: InstanceState::Running,
                        to: InstanceState::Failed,
                        reason: "process gone while its worker was down".into(),
                    },
                )
                .await;
            }
        }
    }
    Ok(())
}

/// Marks `failed` the running instances of this (shared) platform whose workload is not among
/// those found running. The records are read after the first listing, so an instance that
/// became running meanwhile is checked against a second listing before it is failed.
async fn fail_vanished<D: Driver>(
    ctx: &Arc<Ctx<D>>,
    found: &[uuid::Uuid],
) -> Result<(), draas_bus::BusError> {
    let mut suspects = Vec::new();
    let mut after = None;
    loop {
        let (page, last) = ctx.store.instances_page(after, 500).await?;
        suspects.extend(
            page.into_iter()
                .filter(|i| i.spec.platform == ctx.platform)
                .filter(|i| i.state == InstanceState::Running && !found.contains(&i.id)),
        );
        match last {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    if suspects.is_empty() {
        return Ok(());
    }
    let found_again = ctx.driver.adopt().await;
    for inst in suspects
        .into_iter()
        .filter(|i| !found_again.contains(&i.id))
    {
        let reason =
            "its workload was gone when a worker started (removed while no worker watched)";
        let runtime = RuntimeInfo {
            message: Some(reason.into()),
            restarts: inst.runtime.restarts,
            ..RuntimeInfo::default()
        };
        let moved = ctx
            .store
            .transition(
                inst.id,
                InstanceState::Running,
                InstanceState::Failed,
                0,
                Some(&runtime),
            )
            .await?;
        if let Transition::Done(_) = moved {
            tracing::warn!(message = "instance workload vanished", instance = %inst.id);
            ctx.emit(
                inst.id,
                None,
                EventKind::StateChanged {
                    from: InstanceState::Running,
                    to: InstanceState::Failed,
                    reason: reason.into(),
                },
            )
            .await;
        }
    }
    Ok(())
}

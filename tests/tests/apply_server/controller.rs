//! The workers' controller: drift said once for a crash the restart policy never restarts,
//! and a lost instance started again exactly once by the one controller holding the lease.

use std::time::Duration;

use draas_bus::store::Transition;
use draas_protocol::{DesiredState, Event, EventKind, InstanceState, Platform, RuntimeInfo};
use serde_json::json;

use super::common::{
    self, System, WorkerNode, counting_runtime, fast_recovery, launches, scratch, sensor_config,
    wait_until,
};
use super::{controller_looks, doc, events, moves, put, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_the_policy_never_restarts_is_drift_said_once() -> anyhow::Result<()> {
    let sys = System::start_tuned(common::runtime_binary(), |c| {
        c.converge_interval = Duration::from_millis(100);
    })
    .await?;
    let store = store(&sys).await;
    let mut body = doc("fragile", "running", sensor_config());
    body["spec"]["restartPolicy"] = json!({"mode": "never"});
    let (status, _, answer) = put(&sys, "fragile", &body, None).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["instance"]["id"].as_str().unwrap().to_owned();
    let pid = sys.wait_state(&id, "running").await["runtime"]["pid"]
        .as_i64()
        .unwrap();

    common::sigkill(pid);
    let drift = wait_until(|| async {
        events(&store, &id)
            .await
            .into_iter()
            .find_map(|e| match e.kind {
                EventKind::Drift {
                    state,
                    desired_state,
                    reason,
                } => Some((state, desired_state, reason)),
                _ => None,
            })
    })
    .await?;
    assert_eq!(drift.0, InstanceState::Failed, "{drift:?}");
    assert_eq!(drift.1, DesiredState::Running, "{drift:?}");
    assert!(drift.2.contains("never"), "{drift:?}");

    // Several more looks later: still failed, never restarted, and the drift said once.
    controller_looks(&sys, 5).await;
    assert_eq!(sys.instance(&id).await["state"], "failed");
    let all = events(&store, &id).await;
    let drifts = all
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Drift { .. }))
        .count();
    assert_eq!(drifts, 1, "{all:?}");
    assert_eq!(
        moves(&all, InstanceState::Failed, InstanceState::Starting),
        0,
        "{all:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_instance_is_started_again_once_by_the_lease_holder() -> anyhow::Result<()> {
    let log = scratch("launches").join("launches.log");
    let runtime = counting_runtime(&log, 0);
    let tune = |c: &mut draas_worker::WorkerConfig| {
        fast_recovery(c);
        c.stop_instances_on_exit = false;
        c.converge_interval = Duration::from_millis(100);
    };
    let mut sys = System::start_tuned(runtime.clone(), tune).await?;
    let store = store(&sys).await;
    let mut body = doc("nomad", "running", sensor_config());
    body["spec"]["restartPolicy"] = json!({"mode": "on-failure"});
    let (status, _, answer) = put(&sys, "nomad", &body, None).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["instance"]["id"].as_str().unwrap().to_owned();
    let first = sys.wait_state(&id, "running").await;
    let node_a = first["runtime"]["node"].as_str().unwrap().to_owned();
    let pid = first["runtime"]["pid"].as_i64().unwrap();
    assert_eq!(launches(&log, &id), 1);

    // Two more workers, each with a controller; then the first node dies with its instance.
    let b = WorkerNode::start_tuned(
        &sys.redis.url,
        &sys.keys,
        runtime.clone(),
        scratch("b"),
        tune,
    )
    .await?;
    let c = WorkerNode::start_tuned(&sys.redis.url, &sys.keys, runtime, scratch("c"), tune).await?;
    common::wait_for_workers(&sys.http, &sys.api.url, 3).await;
    let dead = std::mem::replace(&mut sys.worker, b);
    dead.crash();
    common::sigkill(pid);
    // What the sweeper does to a dead node's instance, without its reschedule: as if the
    // worker that marked it lost crashed before appending the start. Only the controller
    // can bring it back now.
    let lost = RuntimeInfo {
        message: Some(format!(
            "node `{node_a}` stopped heartbeating; its worker is gone"
        )),
        ..RuntimeInfo::default()
    };
    let id_uuid: uuid::Uuid = id.parse()?;
    let moved = store
        .transition(
            id_uuid,
            InstanceState::Running,
            InstanceState::Lost,
            0,
            Some(&lost),
        )
        .await?;
    assert!(matches!(moved, Transition::Done(_)), "{moved:?}");
    store.unplace(Platform::Process, &node_a, id_uuid).await?;

    let back = wait_until(|| async {
        let inst = sys.instance(&id).await;
        (inst["state"] == "running" && inst["runtime"]["node"] != node_a.as_str()).then_some(inst)
    })
    .await?;
    assert_eq!(back["runtime"]["restarts"], 1, "{back}");

    // One controller holds the lease, and it alone acted, once, even after more looks.
    controller_looks(&sys, 5).await;
    let holder = store.converge_lease_holder(Platform::Process).await?;
    let all = events(&store, &id).await;
    let acted: Vec<&Event> = all
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Note { message } if message.contains("lost with its node")))
        .collect();
    assert_eq!(acted.len(), 1, "{all:?}");
    assert_eq!(Some(&acted[0].source), holder.as_ref(), "{all:?}");
    assert_eq!(
        moves(&all, InstanceState::Lost, InstanceState::Starting),
        1,
        "{all:?}"
    );
    assert_eq!(launches(&log, &id), 2, "launched once more, not twice");
    assert_eq!(sys.instance(&id).await["state"], "running");
    c.shutdown().await;
    Ok(())
}

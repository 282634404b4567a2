//! Reading Kubernetes status: what a pod's status says about an instance (pending, running,
//! crash-looping, image pull error…), and whether a Deployment has rolled out. Pure
//! functions over k8s-openapi types, unit-tested with statuses as the kubelet writes them.

use draas_protocol::{Observed, ObservedPhase, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::spec::CONTAINER;

/// Waiting reasons that mean the image cannot be had.
const IMAGE_ERRORS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Waiting reasons after which the pod will not start without a change to its spec.
const CONFIG_ERRORS: [&str; 2] = ["CreateContainerConfigError", "CreateContainerError"];

/// What the pod says, as an observation of the instance.
pub fn observe(pod: &Pod, at: Timestamp) -> Observed {
    let name = pod.metadata.name.clone();
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|all| all.iter().find(|c| c.name == CONTAINER).or(all.first()))
        .cloned();
    let restarts = container
        .as_ref()
        .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
        .unwrap_or(0);
    let last_exit_code = container.as_ref().and_then(last_exit_code);
    let waiting = container
        .as_ref()
        .and_then(|c| c.state.as_ref()?.waiting.clone());
    let (phase, reason, message) = if pod.metadata.deletion_timestamp.is_some() {
        (ObservedPhase::Terminating, None, None)
    } else if let Some(w) = waiting {
        let reason = w.reason.unwrap_or_default();
        let phase = if IMAGE_ERRORS.contains(&reason.as_str()) {
            ObservedPhase::ImagePullError
        } else if reason == "CrashLoopBackOff" {
            ObservedPhase::CrashLooping
        } else {
            ObservedPhase::Pending
        };
        (phase, Some(reason).filter(|r| !r.is_empty()), w.message)
    } else {
        match status.phase.as_deref() {
            Some("Running") if is_ready(pod) => (ObservedPhase::Running, None, None),
            Some("Running") => (
                ObservedPhase::NotReady,
                Some("NotReady".to_owned()),
                status.message,
            ),
            Some("Failed") | Some("Succeeded") => (
                ObservedPhase::NotReady,
                status.reason.or(status.phase),
                status.message,
            ),
            _ => (ObservedPhase::Pending, status.reason, status.message),
        }
    };
    Observed {
        phase,
        reason,
        message,
        name,
        restarts,
        last_exit_code,
        at,
    }
}

/// Whether the observation means the pod will not come up without a change: the start
/// waiting for it fails at once instead of at its deadline.
pub fn hopeless(observed: &Observed) -> bool {
    matches!(
        observed.phase,
        ObservedPhase::ImagePullError | ObservedPhase::CrashLooping
    ) || observed
        .reason
        .as_deref()
        .is_some_and(|r| CONFIG_ERRORS.contains(&r))
}

fn last_exit_code(c: &ContainerStatus) -> Option<i32> {
    let terminated = c
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .or_else(|| c.last_state.as_ref()?.terminated.clone())?;
    Some(terminated.exit_code)
}

/// Whether the pod has ended for good (phase `Failed` or `Succeeded`): it runs nothing.
pub fn ended(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

/// The exit code of the pod's server container if it has terminated now (not an earlier
/// run's, which `lastState` keeps).
pub fn terminated_code(pod: &Pod) -> Option<i32> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let container = statuses.iter().find(|c| c.name == CONTAINER)?;
    Some(container.state.as_ref()?.terminated.as_ref()?.exit_code)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|all| all.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the Deployment's current generation has a ready replica.
pub fn rolled_out(deployment: &Deployment) -> bool {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else {
        return false;
    };
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) >= 1
        && status.ready_replicas.unwrap_or(0) >= 1
}

/// The replicas the Deployment asks for (Kubernetes defaults an absent count to 1).
pub fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "draas-x-abcde"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_ready_running_pod_is_running() {
        let p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "drasi", "image": "i", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}],
        }));
        let o = observe(&p, Timestamp(1));
        assert_eq!(o.phase, ObservedPhase::Running);
        assert_eq!(o.name.as_deref(), Some("draas-x-abcde"));
        assert!(!hopeless(&o));
    }

    #[test]
    fn crash_loops_carry_reason_and_last_exit_code() {
        let p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "drasi", "image": "i", "imageID": "", "ready": false,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
        }));
        let o = observe(&p, Timestamp(1));
        assert_eq!(o.phase, ObservedPhase::CrashLooping);
        assert_eq!(o.last_exit_code, Some(1));
        assert_eq!(o.restarts, 4);
        assert!(hopeless(&o));
        assert_eq!(
            o.describe(),
            "crashLooping: CrashLoopBackOff (back-off 40s restarting failed container); \
             last exit code 1; 4 restarts"
        );
    }

    #[test]
    fn image_pull_errors_and_other_waits() {
        let waiting = |reason: &str| {
            pod(
                json!({"phase": "Pending", "containerStatuses": [{"name": "drasi", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": "m"}}}]}),
            )
        };
        for reason in IMAGE_ERRORS {
            let o = observe(&waiting(reason), Timestamp(1));
            assert_eq!(o.phase, ObservedPhase::ImagePullError, "{reason}");
            assert!(hopeless(&o));
        }
        let creating = observe(&waiting("ContainerCreating"), Timestamp(1));
        assert_eq!(creating.phase, ObservedPhase::Pending);
        assert!(!hopeless(&creating));
        assert!(hopeless(&observe(
            &waiting("CreateContainerConfigError"),
            Timestamp(1)
        )));
    }

    #[test]
    fn terminating_unscheduled_and_unready_pods() {
        let mut p = pod(json!({"phase": "Running"}));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(observe(&p, Timestamp(1)).phase, ObservedPhase::Terminating);
        let unscheduled = pod(json!({"phase": "Pending", "reason": "Unschedulable"}));
        let o = observe(&unscheduled, Timestamp(1));
        assert_eq!(
            (o.phase, o.reason.as_deref()),
            (ObservedPhase::Pending, Some("Unschedulable"))
        );
        let unready = pod(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}]}));
        assert_eq!(
            observe(&unready, Timestamp(1)).phase,
            ObservedPhase::NotReady
        );
    }

    #[test]
    fn rollout_needs_the_current_generation_ready() {
        let d = |generation: i64, observed: i64, ready: i32| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "d", "generation": generation},
                "status": {"observedGeneration": observed, "updatedReplicas": ready,
                    "readyReplicas": ready},
            }))
            .unwrap()
        };
        assert!(rolled_out(&d(2, 2, 1)));
        assert!(!rolled_out(&d(2, 1, 1)));
        assert!(!rolled_out(&d(2, 2, 0)));
        let unobserved: Deployment =
            serde_json::from_value(json!({"metadata": {"name": "d"}})).unwrap();
        assert!(!rolled_out(&unobserved));
        assert_eq!(desired_replicas(&unobserved), 1);
    }
}

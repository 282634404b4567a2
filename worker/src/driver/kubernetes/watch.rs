//! Follows the instance pods with a kube-runtime watcher (list, then watch, re-listing with
//! backoff after a dropped connection) and reports, per instance, what Kubernetes says:
//! pending, running, not ready, crash-looping (with its reason and last exit code), image
//! pull errors, terminating, absent. Each change of an instance's observation is a
//! [`DriverEvent::Observed`]; a running instance whose pod starts crash-looping or cannot
//! pull its image is also an [`DriverEvent::Exited`], so the monitor marks it failed. A second
//! watcher reports Deployments deleted or scaled to zero behind DRaaS's back the same way.

use std::collections::{HashMap, HashSet};

use draas_bus::clock::now;
use draas_protocol::{Observed, ObservedPhase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use uuid::Uuid;

use super::spec::{CONTAINER, LABEL_ID, LABEL_MANAGED};
use super::status;
use crate::driver::{DriverEvent, Events, Exit};

/// Starts the pod and Deployment watchers; they end when `events` closes.
pub(super) fn spawn(
    pods: Api<Pod>,
    deployments: Api<Deployment>,
    selector: String,
    deployment: String,
    events: Events,
) {
    tokio::spawn(follow_deployments(
        deployments,
        selector.clone(),
        deployment.clone(),
        events.clone(),
    ));
    tokio::spawn(async move {
        let mut state = Pods::default();
        let config = watcher::Config::default().labels(&selector);
        let mut stream = watcher(pods.clone(), config).default_backoff().boxed();
        while let Some(item) = stream.next().await {
            if events.is_closed() {
                return;
            }
            match item {
                Ok(event) => {
                    for report in state.apply(event, &deployment) {
                        send(&pods, &events, report).await;
                    }
                }
                Err(error) => tracing::warn!(message = "pod watch failed; retrying", %error),
            }
        }
    });
}

/// Reports Deployments deleted or scaled to zero: the monitor fails an instance that is
/// `running` when that happens (DRaaS's own stop and delete move the instance out of `running`
/// first, so they are no news).
async fn follow_deployments(
    api: Api<Deployment>,
    selector: String,
    deployment: String,
    events: Events,
) {
    let config = watcher::Config::default().labels(&selector);
    let mut stream = watcher(api, config).default_backoff().boxed();
    // Replicas as last seen, so only a change to zero is news.
    let mut replicas: HashMap<Uuid, i32> = HashMap::new();
    while let Some(item) = stream.next().await {
        if events.is_closed() {
            return;
        }
        // (object, whether it is a live change rather than the initial listing, deleted)
        let (object, live, deleted) = match item {
            Ok(watcher::Event::Delete(d)) => (d, true, true),
            Ok(watcher::Event::Apply(d)) => (d, true, false),
            Ok(watcher::Event::InitApply(d)) => (d, false, false),
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(message = "deployment watch failed; retrying", %error);
                continue;
            }
        };
        let Some(instance) = instance_of(object.metadata.labels.as_ref(), &deployment) else {
            continue;
        };
        let wanted = status::desired_replicas(&object);
        let before = replicas.insert(instance, wanted);
        let deleted = deleted || object.metadata.deletion_timestamp.is_some();
        let reason = if deleted {
            replicas.remove(&instance);
            "its Deployment was deleted outside DRaaS"
        } else if live && wanted == 0 && before.is_some_and(|b| b > 0) {
            "its Deployment was scaled to zero outside DRaaS"
        } else {
            continue;
        };
        let exit = Exit {
            instance,
            pid: None,
            code: None,
            signal: None,
            log_tail: String::new(),
            reason: Some(reason.to_owned()),
            seen_at: Some(now()),
            still_running: false,
        };
        let _ = events.send(DriverEvent::Exited(exit));
    }
}

/// The instance a workload belongs to, if this deployment manages it.
fn instance_of(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    deployment: &str,
) -> Option<Uuid> {
    let labels = labels?;
    if labels.get(LABEL_MANAGED).map(String::as_str) != Some(deployment) {
        return None;
    }
    labels.get(LABEL_ID)?.parse().ok()
}

/// A change worth reporting.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    instance: Uuid,
    observed: Observed,
    /// The pod stopped serving and will not come back by itself.
    broken: bool,
}

/// The pods of every instance as last seen, and what was last reported.
#[derive(Default)]
struct Pods {
    /// instance → pod name → (creation time, observation).
    pods: HashMap<Uuid, HashMap<String, (Option<String>, Observed)>>,
    reported: HashMap<Uuid, Observed>,
    /// Pods seen during a re-list; the others vanished while the watch was down.
    relisted: Option<HashSet<String>>,
}

impl Pods {
    fn apply(&mut self, event: watcher::Event<Pod>, deployment: &str) -> Vec<Report> {
        let mut touched = HashSet::new();
        match event {
            watcher::Event::Init => self.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                if let Some((id, name)) = identify(&pod, deployment) {
                    if let Some(seen) = &mut self.relisted {
                        seen.insert(name.clone());
                    }
                    let created = pod
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string());
                    let observed = status::observe(&pod, now());
                    self.pods
                        .entry(id)
                        .or_default()
                        .insert(name, (created, observed));
                    touched.insert(id);
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some((id, name)) = identify(&pod, deployment) {
                    if let Some(pods) = self.pods.get_mut(&id) {
                        pods.remove(&name);
                    }
                    touched.insert(id);
                }
            }
            watcher::Event::InitDone => {
                let seen = self.relisted.take().unwrap_or_default();
                for (id, pods) in &mut self.pods {
                    let before = pods.len();
                    pods.retain(|name, _| seen.contains(name));
                    if pods.len() != before {
                        touched.insert(*id);
                    }
                }
            }
        }
        touched
            .into_iter()
            .filter_map(|id| self.report(id))
            .collect()
    }

    /// The instance's current observation, if it differs from the last one reported.
    fn report(&mut self, id: Uuid) -> Option<Report> {
        let pods = self.pods.get(&id);
        let current = pods
            .and_then(|pods| {
                // The newest pod that is not on its way out, else the newest of all.
                pods.values()
                    .filter(|(_, o)| o.phase != ObservedPhase::Terminating)
                    .max_by(|a, b| a.0.cmp(&b.0))
                    .or_else(|| pods.values().max_by(|a, b| a.0.cmp(&b.0)))
                    .map(|(_, o)| o.clone())
            })
            .unwrap_or(Observed {
                phase: ObservedPhase::Absent,
                reason: None,
                message: None,
                name: None,
                restarts: 0,
                last_exit_code: None,
                at: now(),
            });
        if pods.is_some_and(|p| p.is_empty()) {
            self.pods.remove(&id);
        }
        if self.reported.get(&id).is_some_and(|r| r.same_as(&current)) {
            return None;
        }
        let before = self.reported.insert(id, current.clone());
        let was_broken = before.is_some_and(|b| status::hopeless(&b));
        let broken = status::hopeless(&current) && !was_broken;
        if current.phase == ObservedPhase::Absent {
            self.reported.remove(&id);
        }
        Some(Report {
            instance: id,
            observed: current,
            broken,
        })
    }
}

/// The instance id and pod name of a pod this deployment manages.
fn identify(pod: &Pod, deployment: &str) -> Option<(Uuid, String)> {
    let id = instance_of(pod.metadata.labels.as_ref(), deployment)?;
    Some((id, pod.metadata.name.clone()?))
}

async fn send(pods: &Api<Pod>, events: &Events, report: Report) {
    let Report {
        instance,
        observed,
        broken,
    } = report;
    if broken {
        let log_tail = match &observed.name {
            Some(pod) => previous_logs(pods, pod).await,
            None => String::new(),
        };
        let exit = Exit {
            instance,
            pid: None,
            code: observed.last_exit_code,
            signal: None,
            log_tail,
            reason: Some(format!("its pod is {}", observed.describe())),
            seen_at: Some(observed.at),
            still_running: true,
        };
        let _ = events.send(DriverEvent::Exited(exit));
    }
    let _ = events.send(DriverEvent::Observed { instance, observed });
}

/// The last lines of the crashed container (or of the current one when there is none).
async fn previous_logs(pods: &Api<Pod>, pod: &str) -> String {
    for previous in [true, false] {
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            tail_lines: Some(20),
            previous,
            ..LogParams::default()
        };
        if let Ok(text) = pods.logs(pod, &params).await {
            return text.trim_end().to_owned();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: &str = "draas";
    const ID: &str = "0190c6a2-7d4e-7b1a-9a3f-2f6c1e0d5b11";

    fn pod(name: &str, created: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created,
                "labels": {LABEL_ID: ID, LABEL_MANAGED: DEPLOYMENT}},
            "status": status,
        }))
        .unwrap()
    }

    fn running(name: &str, created: &str) -> Pod {
        pod(
            name,
            created,
            json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}),
        )
    }

    fn crash_looping(name: &str, created: &str) -> Pod {
        pod(
            name,
            created,
            json!({"phase": "Running", "containerStatuses": [{
            "name": "drasi", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2}}}]}),
        )
    }

    fn phases(reports: &[Report]) -> Vec<(ObservedPhase, bool)> {
        reports
            .iter()
            .map(|r| (r.observed.phase, r.broken))
            .collect()
    }

    #[test]
    fn reports_changes_once_and_flags_a_new_crash_loop() {
        let mut pods = Pods::default();
        let t = "2026-01-01T00:00:00Z";
        let first = pods.apply(watcher::Event::Apply(running("p1", t)), DEPLOYMENT);
        assert_eq!(phases(&first), [(ObservedPhase::Running, false)]);
        assert!(
            pods.apply(watcher::Event::Apply(running("p1", t)), DEPLOYMENT)
                .is_empty()
        );
        let crash = pods.apply(watcher::Event::Apply(crash_looping("p1", t)), DEPLOYMENT);
        assert_eq!(phases(&crash), [(ObservedPhase::CrashLooping, true)]);
        assert_eq!(crash[0].observed.last_exit_code, Some(2));
        let gone = pods.apply(watcher::Event::Delete(crash_looping("p1", t)), DEPLOYMENT);
        assert_eq!(phases(&gone), [(ObservedPhase::Absent, false)]);
        assert!(pods.pods.is_empty());
    }

    #[test]
    fn the_newest_live_pod_speaks_for_the_instance() {
        let mut pods = Pods::default();
        let old = "2026-01-01T00:00:00Z";
        let new = "2026-01-01T00:01:00Z";
        pods.apply(watcher::Event::Apply(crash_looping("old", old)), DEPLOYMENT);
        let reports = pods.apply(watcher::Event::Apply(running("new", new)), DEPLOYMENT);
        assert_eq!(phases(&reports), [(ObservedPhase::Running, false)]);
        assert_eq!(reports[0].observed.name.as_deref(), Some("new"));
    }

    #[test]
    fn a_relist_drops_pods_that_vanished_meanwhile_and_ignores_foreign_pods() {
        let mut pods = Pods::default();
        let t = "2026-01-01T00:00:00Z";
        pods.apply(watcher::Event::Apply(running("p1", t)), DEPLOYMENT);
        assert!(pods.apply(watcher::Event::Init, DEPLOYMENT).is_empty());
        let mut foreign = running("x", t);
        foreign
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_MANAGED.into(), "other".into());
        assert!(
            pods.apply(watcher::Event::InitApply(foreign), DEPLOYMENT)
                .is_empty()
        );
        let done = pods.apply(watcher::Event::InitDone, DEPLOYMENT);
        assert_eq!(phases(&done), [(ObservedPhase::Absent, false)]);
    }
}

//! The controller's judgement of one instance, without I/O: agree, wait, act (a start or a
//! stop), or report drift. The restart policy's arithmetic is `RestartPolicy::restart_delay`,
//! the same rule the monitor applies to exits and the sweeper to lost nodes.

use draas_bus::store::StoredInstance;
use draas_protocol::{Command, DesiredState, InstanceState, Origin, RestartPolicy, Timestamp};

/// What the controller makes of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It is where it should be, or nobody asked for a place (no `desiredState`).
    Agree,
    /// Something is at work on it, or its last change is too recent to judge.
    Wait,
    /// Send `command`; `reason` is said as the instance's event.
    Act {
        command: Command,
        origin: Origin,
        reason: String,
    },
    /// It is not where it should be and the controller does not move it.
    Drift(String),
}

/// Judges `stored` at `now`. A state younger than `settle_ms` is left alone (the command that
/// made it, or the one the sweeper or the monitor appends right after, goes first); so is a
/// failure the restart policy will retry, until its backoff has passed too.
pub(crate) fn judge(stored: &StoredInstance, now: Timestamp, settle_ms: u64) -> Verdict {
    use InstanceState::*;
    let inst = &stored.instance;
    let Some(desired) = inst.spec.desired_state else {
        return Verdict::Agree;
    };
    let age = now.millis().saturating_sub(inst.updated_at.millis());
    let policy = &inst.spec.restart_policy;
    let restarts = inst.runtime.restarts;
    match (desired, inst.state) {
        (_, Starting | Stopping | Deleting | Deleted) => Verdict::Wait,
        (DesiredState::Running, Running) => Verdict::Agree,
        (DesiredState::Stopped, Created | Stopped | Failed | Lost) => Verdict::Agree,
        _ if age < settle_ms => Verdict::Wait,
        (DesiredState::Running, Lost) => match policy.restart_delay(None, restarts) {
            Some(_) => Verdict::Act {
                command: Command::Start,
                origin: Origin::Reschedule,
                reason: "lost with its node and desired running: starting it again".into(),
            },
            None => Verdict::Drift(format!("lost with its node; {}", spent(policy, restarts))),
        },
        (DesiredState::Running, Failed) => {
            // A failure no command made is an exit the monitor saw: the restart policy's to
            // retry. A failed command (a start that never got ready) it does not retry.
            if stored.last_command.is_some() {
                return Verdict::Drift(
                    "its last command failed; the restart policy retries only exits: start it or apply again"
                        .into(),
                );
            }
            match policy.restart_delay(inst.runtime.exit_code, restarts) {
                Some(delay) if age < settle_ms.saturating_add(delay) => Verdict::Wait,
                Some(_) => Verdict::Act {
                    command: Command::Start,
                    origin: Origin::RestartPolicy,
                    reason: "failed, and the restart its policy allows never came: starting it"
                        .into(),
                },
                None => Verdict::Drift(format!("failed; {}", spent(policy, restarts))),
            }
        }
        (DesiredState::Running, Created | Stopped) => Verdict::Drift(format!(
            "{} while desired running; the controller starts only lost and crashed instances: start it or apply again",
            inst.state
        )),
        (DesiredState::Stopped, Running) => Verdict::Act {
            command: Command::Stop,
            origin: Origin::Client,
            reason: "running while desired stopped: stopping it".into(),
        },
    }
}

/// Why the restart policy does not restart an instance.
fn spent(policy: &RestartPolicy, restarts: u32) -> String {
    match policy.mode {
        draas_protocol::RestartMode::Never => {
            "its restart policy is `never`: it stays down".to_owned()
        }
        _ => format!(
            "its restart policy is spent ({restarts} of {} restarts): it stays down",
            policy.max_attempts
        ),
    }
}

/// The situation a verdict is about, as the mark that makes it handled once: the
/// generation, the fencing token (every command takes a new one, so a situation never comes
/// back with the same token) and both states.
pub(crate) fn situation(stored: &StoredInstance) -> String {
    let inst = &stored.instance;
    let desired = inst.spec.desired_state.map_or("none", DesiredState::as_str);
    format!(
        "g{}:f{}:{}:{desired}",
        inst.generation, stored.fence, inst.state
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use draas_protocol::drasi::DrasiConfig;
    use draas_protocol::{Instance, InstanceSpec, RestartMode, RuntimeInfo};

    fn stored(
        desired: Option<DesiredState>,
        state: InstanceState,
        mode: RestartMode,
        restarts: u32,
        last_command: Option<uuid::Uuid>,
    ) -> StoredInstance {
        StoredInstance {
            instance: Instance {
                id: uuid::Uuid::from_u128(7),
                tenant: "default".into(),
                spec: InstanceSpec {
                    name: "x".into(),
                    description: None,
                    platform: draas_protocol::Platform::Process,
                    labels: Default::default(),
                    config: DrasiConfig::from_json_value(serde_json::json!({})).unwrap(),
                    restart_policy: RestartPolicy {
                        mode,
                        max_attempts: 2,
                        initial_backoff_ms: 1_000,
                        max_backoff_ms: 1_000,
                    },
                    image: None,
                    resources: None,
                    env: Default::default(),
                    desired_state: desired,
                },
                state,
                generation: 3,
                created_at: Timestamp(0),
                updated_at: Timestamp(10_000),
                runtime: RuntimeInfo {
                    restarts,
                    exit_code: Some(137),
                    ..RuntimeInfo::default()
                },
            },
            fence: 9,
            last_command,
        }
    }

    const RUN: Option<DesiredState> = Some(DesiredState::Running);
    const STOP: Option<DesiredState> = Some(DesiredState::Stopped);

    fn at(ms: u64) -> Timestamp {
        Timestamp(10_000 + ms)
    }

    #[test]
    fn without_a_desired_state_nothing_is_judged() {
        let s = stored(None, InstanceState::Lost, RestartMode::Always, 0, None);
        assert_eq!(judge(&s, at(60_000), 100), Verdict::Agree);
    }

    #[test]
    fn a_lost_instance_is_started_within_its_policy() {
        let s = stored(RUN, InstanceState::Lost, RestartMode::OnFailure, 0, None);
        assert_eq!(judge(&s, at(50), 100), Verdict::Wait, "too fresh");
        assert!(matches!(
            judge(&s, at(100), 100),
            Verdict::Act {
                command: Command::Start,
                origin: Origin::Reschedule,
                ..
            }
        ));
        let spent = stored(RUN, InstanceState::Lost, RestartMode::Always, 2, None);
        assert!(matches!(judge(&spent, at(100), 100), Verdict::Drift(r) if r.contains("spent")));
        let never = stored(RUN, InstanceState::Lost, RestartMode::Never, 0, None);
        assert!(matches!(judge(&never, at(100), 100), Verdict::Drift(r) if r.contains("never")));
    }

    #[test]
    fn a_crash_waits_for_the_policys_own_restart_first() {
        let s = stored(RUN, InstanceState::Failed, RestartMode::OnFailure, 1, None);
        // The second restart's backoff is 1 s (capped); settle 100 ms on top.
        assert_eq!(judge(&s, at(1_099), 100), Verdict::Wait);
        assert!(matches!(
            judge(&s, at(1_100), 100),
            Verdict::Act {
                command: Command::Start,
                origin: Origin::RestartPolicy,
                ..
            }
        ));
        let never = stored(RUN, InstanceState::Failed, RestartMode::Never, 0, None);
        assert!(matches!(judge(&never, at(100), 100), Verdict::Drift(_)));
        let failed_start = stored(
            RUN,
            InstanceState::Failed,
            RestartMode::Always,
            0,
            Some(uuid::Uuid::from_u128(1)),
        );
        assert!(matches!(
            judge(&failed_start, at(60_000), 100),
            Verdict::Drift(_)
        ));
    }

    #[test]
    fn stopped_by_hand_is_drift_and_running_when_stopped_is_stopped() {
        let s = stored(RUN, InstanceState::Stopped, RestartMode::Always, 0, None);
        assert!(matches!(judge(&s, at(100), 100), Verdict::Drift(_)));
        let s = stored(STOP, InstanceState::Running, RestartMode::Always, 0, None);
        assert!(matches!(
            judge(&s, at(100), 100),
            Verdict::Act {
                command: Command::Stop,
                ..
            }
        ));
        for state in [
            InstanceState::Stopped,
            InstanceState::Failed,
            InstanceState::Lost,
        ] {
            let s = stored(STOP, state, RestartMode::Always, 0, None);
            assert_eq!(judge(&s, at(100), 100), Verdict::Agree, "{state}");
        }
        for state in [InstanceState::Starting, InstanceState::Stopping] {
            let s = stored(RUN, state, RestartMode::Always, 0, None);
            assert_eq!(judge(&s, at(60_000), 100), Verdict::Wait, "{state}");
        }
    }

    #[test]
    fn a_situation_names_generation_fence_and_states() {
        let s = stored(RUN, InstanceState::Lost, RestartMode::Always, 0, None);
        assert_eq!(situation(&s), "g3:f9:lost:running");
    }
}

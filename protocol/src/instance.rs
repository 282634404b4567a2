//! The instance model and its lifecycle state machine.
//!
//! Every legal state change is one row of [`TRANSITIONS`]; nothing else may move an instance.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::drasi::{DrasiConfig, Endpoint};
use crate::env::{self, InstanceEnv};
use crate::time::Timestamp;

/// Where an instance runs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Process,
    Docker,
    Kubernetes,
}

impl Platform {
    /// Every platform, in a fixed order.
    pub const ALL: [Platform; 3] = [Platform::Process, Platform::Docker, Platform::Kubernetes];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Process => "process",
            Platform::Docker => "docker",
            Platform::Kubernetes => "kubernetes",
        }
    }

    /// Parses the lowercase wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifecycle state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Created,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
    Lost,
    Deleting,
    Deleted,
}

use InstanceState::*;

/// The one table of direct transitions. `from` may move to any state in its row, and nowhere else.
pub const TRANSITIONS: &[(InstanceState, &[InstanceState])] = &[
    (Created, &[Starting, Deleting]),
    (Starting, &[Running, Failed, Stopping, Lost]),
    (Running, &[Stopping, Failed, Lost, Deleting]),
    (Stopping, &[Stopped, Failed]),
    (Stopped, &[Starting, Deleting]),
    (Failed, &[Starting, Stopping, Stopped, Deleting]),
    (Lost, &[Starting, Stopped, Failed, Deleting]),
    (Deleting, &[Deleted, Failed]),
    (Deleted, &[]),
];

impl InstanceState {
    /// Every state, in table order.
    pub const ALL: [InstanceState; 9] = [
        Created, Starting, Running, Stopping, Stopped, Failed, Lost, Deleting, Deleted,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Created => "created",
            Starting => "starting",
            Running => "running",
            Stopping => "stopping",
            Stopped => "stopped",
            Failed => "failed",
            Lost => "lost",
            Deleting => "deleting",
            Deleted => "deleted",
        }
    }

    /// Parses the lowercase wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The states this one may move to directly.
    pub fn successors(self) -> &'static [InstanceState] {
        TRANSITIONS
            .iter()
            .find(|(from, _)| *from == self)
            .map(|(_, to)| *to)
            .unwrap_or(&[])
    }

    /// Whether `self -> to` is a row of the table.
    pub fn can_move_to(self, to: InstanceState) -> bool {
        self.successors().contains(&to)
    }

    /// Checks `self -> to`, naming both states when it is illegal.
    pub fn check_move(self, to: InstanceState) -> Result<(), IllegalTransition> {
        if self.can_move_to(to) {
            Ok(())
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move that the transition table does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("instance is {from}; it cannot move to {to} (allowed from {from}: {allowed})", allowed = fmt_states(from.successors()))]
pub struct IllegalTransition {
    pub from: InstanceState,
    pub to: InstanceState,
}

fn fmt_states(states: &[InstanceState]) -> String {
    if states.is_empty() {
        return "none".to_owned();
    }
    states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// When a crashed instance is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    #[default]
    Never,
    OnFailure,
    Always,
}

/// Restart policy of an instance: mode, attempt cap and exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    /// When to restart an instance that exited on its own.
    #[serde(default)]
    pub mode: RestartMode,
    /// Restarts at most this many times in a row (counted from the last start a user asked
    /// for).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait before the first restart, doubled for each next one.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// The longest wait between restarts.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff_ms() -> u64 {
    1_000
}
fn default_max_backoff_ms() -> u64 {
    60_000
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Never,
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

impl RestartPolicy {
    /// Whether the policy restarts an instance that ended with `exit_code` (`None`: killed by
    /// a signal, or lost with its node) after `restarts` restarts, and if so the delay before
    /// the next: `initialBackoffMs × 2^restarts`, capped at `maxBackoffMs`. `never` never
    /// restarts; `on-failure` restarts anything but a clean exit (code 0); `always` restarts
    /// anything; none restarts after `maxAttempts`. The one rule of the worker's monitor, its
    /// sweeper and its controller.
    pub fn restart_delay(&self, exit_code: Option<i32>, restarts: u32) -> Option<u64> {
        let restart = match self.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => exit_code != Some(0),
            RestartMode::Always => true,
        };
        if !restart || restarts >= self.max_attempts {
            return None;
        }
        let factor = 1u64 << restarts.min(20);
        Some(
            self.initial_backoff_ms
                .saturating_mul(factor)
                .min(self.max_backoff_ms),
        )
    }
}

/// Where the user wants an instance to be, as a declarative apply (`PUT`) states it: the
/// workers' controller moves an instance toward it after crashes and lost nodes, within its
/// restart policy, and reports drift when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Stopped,
}

impl DesiredState {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user asks for: everything about an instance that is not observed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    /// 1 to 63 lowercase letters, digits or `-`, not starting or ending with `-`; unique in the
    /// tenant.
    pub name: String,
    /// Free text for people, at most 1024 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub platform: Platform,
    /// Keys 1–63 bytes, values 0–63 bytes; lists filter on them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The drasi-server configuration the instance runs.
    pub config: DrasiConfig,
    /// What happens when the instance exits on its own.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Container image for the docker and kubernetes platforms; the worker's default when
    /// unset. The process platform refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Memory and CPU limits (docker and kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The instance's whole environment beyond what the operator passes: the only variables
    /// its config may reference as `${NAME}`. Secret values never appear in a read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, crate::env::EnvValue>)]
    pub env: InstanceEnv,
    /// Where the instance should be (`PUT` sets it; absent for instances created by `POST`,
    /// which nothing moves on its own beyond the restart policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
}

/// Resource limits of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU limit in thousandths of a core (1000 = one core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
}

/// What a platform reports about a placed instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    /// The node (worker host) that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The process platform: its process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The docker platform: its container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The kubernetes platform: its pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The instance's REST API (drasi-server compatible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Every endpoint the instance exposes: the API and each listening source or reaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// When it last became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// How it last exited, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed or stopped, when known (secret values scrubbed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When its health was last confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_at: Option<Timestamp>,
    /// Restarts made by the restart policy since the last start a user asked for.
    #[serde(default)]
    pub restarts: u32,
    /// What the platform itself last said about the workload (Kubernetes: the pod), written by
    /// the worker's watcher independently of commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
}

/// A platform's own view of an instance's workload, as its watcher last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// The watcher's verdict.
    pub phase: ObservedPhase,
    /// The platform's reason, e.g. `CrashLoopBackOff` or `ErrImagePull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The workload's name on the platform (the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Restarts the platform made on its own (container restarts).
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
    /// When it was observed.
    pub at: Timestamp,
}

/// The phases a watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ObservedPhase {
    /// Scheduled or being created, not ready yet.
    Pending,
    /// Running and ready.
    Running,
    /// Running but not (or no longer) ready.
    NotReady,
    /// The container keeps exiting and the platform backs off restarting it.
    CrashLooping,
    /// The image cannot be pulled.
    ImagePullError,
    /// Being shut down.
    Terminating,
    /// Nothing runs (scaled to zero or removed).
    Absent,
}

impl Observed {
    /// One line for people: `crashLooping: CrashLoopBackOff (back-off 10s…); last exit code 1`.
    pub fn describe(&self) -> String {
        let mut text = self.phase.as_str().to_owned();
        if let Some(reason) = &self.reason {
            text.push_str(": ");
            text.push_str(reason);
        }
        if let Some(message) = &self.message {
            text.push_str(&format!(" ({message})"));
        }
        if let Some(code) = self.last_exit_code {
            text.push_str(&format!("; last exit code {code}"));
        }
        if self.restarts > 0 {
            text.push_str(&format!("; {} restarts", self.restarts));
        }
        text
    }

    /// Whether two observations say the same, whenever they were made.
    pub fn same_as(&self, other: &Observed) -> bool {
        Observed {
            at: other.at,
            ..self.clone()
        } == *other
    }
}

impl ObservedPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedPhase::Pending => "pending",
            ObservedPhase::Running => "running",
            ObservedPhase::NotReady => "notReady",
            ObservedPhase::CrashLooping => "crashLooping",
            ObservedPhase::ImagePullError => "imagePullError",
            ObservedPhase::Terminating => "terminating",
            ObservedPhase::Absent => "absent",
        }
    }
}

/// An instance as the API shows it: spec, state and runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// The instance's id (UUIDv7: ids sort by creation time).
    pub id: Uuid,
    /// The tenant of the token that created it; never changes. Records written before
    /// tenants existed belong to the default tenant.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(flatten)]
    pub spec: InstanceSpec,
    /// Where the instance is in its life.
    pub state: InstanceState,
    /// Bumped by every spec change; ApplyConfig names the generation it applies.
    pub generation: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
    /// What the platform reports about it.
    #[serde(default)]
    pub runtime: RuntimeInfo,
}

fn default_tenant() -> String {
    crate::auth::DEFAULT_TENANT.to_owned()
}

impl Instance {
    /// The instance as every read shows it: secret environment values removed, and removed
    /// from the runtime's message too should a component have echoed one.
    pub fn redacted(mut self) -> Instance {
        if let Some(message) = &self.runtime.message {
            self.runtime.message = Some(env::scrub(message, &self.spec.env));
        }
        self.spec.env = env::redacted(&self.spec.env);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_one_row_per_state_and_deleted_is_terminal() {
        for state in InstanceState::ALL {
            let rows = TRANSITIONS
                .iter()
                .filter(|(from, _)| *from == state)
                .count();
            assert_eq!(rows, 1, "{state} must have exactly one row");
            assert!(
                !state.can_move_to(state),
                "{state} -> {state} is not a transition"
            );
        }
        assert!(Deleted.successors().is_empty());
    }

    #[test]
    fn the_table() {
        let rendered: Vec<String> = TRANSITIONS
            .iter()
            .map(|(from, to)| format!("{from} -> {}", fmt_states(to)))
            .collect();
        assert_eq!(
            rendered,
            [
                "created -> starting, deleting",
                "starting -> running, failed, stopping, lost",
                "running -> stopping, failed, lost, deleting",
                "stopping -> stopped, failed",
                "stopped -> starting, deleting",
                "failed -> starting, stopping, stopped, deleting",
                "lost -> starting, stopped, failed, deleting",
                "deleting -> deleted, failed",
                "deleted -> none",
            ]
        );
    }

    #[test]
    fn illegal_move_names_current_state() {
        let err = Stopped.check_move(Stopping).unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance is stopped; it cannot move to stopping (allowed from stopped: starting, deleting)"
        );
    }

    #[test]
    fn every_state_reachable_from_created() {
        let mut seen = vec![Created];
        let mut frontier = vec![Created];
        while let Some(s) = frontier.pop() {
            for &next in s.successors() {
                if !seen.contains(&next) {
                    seen.push(next);
                    frontier.push(next);
                }
            }
        }
        assert_eq!(seen.len(), InstanceState::ALL.len());
    }

    #[test]
    fn restart_policy_defaults_and_kebab_modes() {
        let p: RestartPolicy = serde_json::from_str(r#"{"mode":"on-failure"}"#).unwrap();
        assert_eq!(p.mode, RestartMode::OnFailure);
        assert_eq!(p.max_attempts, 5);
        assert!(serde_json::from_str::<RestartPolicy>(r#"{"mode":"sometimes"}"#).is_err());
    }

    #[test]
    fn restart_delay_by_mode_attempts_and_backoff() {
        let policy = |mode| RestartPolicy {
            mode,
            max_attempts: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 250,
        };
        assert_eq!(policy(RestartMode::Never).restart_delay(Some(1), 0), None);
        assert_eq!(
            policy(RestartMode::OnFailure).restart_delay(Some(0), 0),
            None
        );
        assert_eq!(
            policy(RestartMode::OnFailure).restart_delay(Some(1), 0),
            Some(100)
        );
        // A signal or a lost node counts as a failure.
        assert_eq!(
            policy(RestartMode::OnFailure).restart_delay(None, 1),
            Some(200)
        );
        assert_eq!(
            policy(RestartMode::Always).restart_delay(Some(0), 2),
            Some(250)
        );
        assert_eq!(policy(RestartMode::Always).restart_delay(Some(0), 3), None);
    }

    #[test]
    fn desired_state_is_optional_and_lowercase() {
        let spec =
            |extra: &str| format!(r#"{{"name":"n","platform":"process","config":{{}}{extra}}}"#);
        let plain: InstanceSpec = serde_json::from_str(&spec("")).unwrap();
        assert_eq!(plain.desired_state, None);
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("desiredState")
        );
        let stopped: InstanceSpec =
            serde_json::from_str(&spec(r#","desiredState":"stopped""#)).unwrap();
        assert_eq!(stopped.desired_state, Some(DesiredState::Stopped));
        assert!(
            serde_json::from_str::<InstanceSpec>(&spec(r#","desiredState":"paused""#)).is_err()
        );
    }
}

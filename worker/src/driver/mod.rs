//! The `Driver` trait: what a platform must do for the lifecycle commands, and nothing else.
//!
//! Drivers: [`process`] (local child processes), [`docker`] (containers on a Docker daemon,
//! through bollard) and [`kubernetes`] (Deployments on a cluster, through kube-rs). Shared
//! pieces: [`ports`] (port assignment), [`ready`] (when an instance counts as ready:
//! healthy, and every component it declares running).

pub mod docker;
pub mod kubernetes;
pub mod launch;
pub mod ports;
pub mod process;
pub mod ready;

use std::future::Future;

/// Label holding the instance id, on every container and Kubernetes object of an instance.
pub const LABEL_ID: &str = "io.draas.instance.id";
/// Label naming the DRaaS deployment (the key prefix) that manages a workload, so two
/// deployments sharing a Docker daemon or a namespace never touch each other's workloads.
pub const LABEL_MANAGED: &str = "io.draas.managed-by";

use draas_protocol::{Instance, RuntimeInfo};
use uuid::Uuid;

/// An instance exit that nobody asked for, as a driver observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub instance: Uuid,
    pub pid: Option<u32>,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The last lines the instance wrote.
    pub log_tail: String,
    /// What the platform says happened, when it says more than an exit status.
    pub reason: Option<String>,
    /// Set by drivers whose reports can trail the commands (watch streams): when the report
    /// was seen. A report seen before the instance's current run started is stale.
    pub seen_at: Option<draas_protocol::Timestamp>,
    /// The platform keeps the broken workload alive (Kubernetes restarts a crash-looping pod
    /// with back-off): it is stopped when the instance is marked failed.
    pub still_running: bool,
}

/// What a driver reports on its own, outside any command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// An instance stopped without being asked to.
    Exited(Exit),
    /// Something worth a line in the instance's history (image pull progress, say).
    Note { instance: Uuid, message: String },
    /// What the platform now says about the instance's workload (Kubernetes: its pod).
    Observed {
        instance: Uuid,
        observed: draas_protocol::Observed,
    },
}

/// Where drivers send their events.
pub type Events = tokio::sync::mpsc::UnboundedSender<DriverEvent>;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("instance did not become ready: {reason}\n--- log tail ---\n{log_tail}")]
    NotReady { reason: String, log_tail: String },
    #[error("cannot launch `{executable}`: {source}")]
    Launch {
        executable: String,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("image `{image}` is not available: {reason}")]
    Image { image: String, reason: String },
    #[error("docker: {0}")]
    Docker(String),
    #[error("kubernetes: {0}")]
    Kubernetes(String),
    /// The config, as the workload would read it, breaks a rule of the platform.
    #[error("{0}")]
    Config(String),
}

/// One platform's way of running instances.
pub trait Driver: Send + Sync + 'static {
    /// Takes over the instances an earlier worker on this node left running, so they are
    /// neither launched twice nor reported lost. Returns their ids.
    fn adopt(&self) -> impl Future<Output = Vec<Uuid>> + Send;

    /// Whether an instance lives and dies with the node whose worker started it (a local
    /// process does; a container on a shared daemon does not).
    fn node_bound(&self) -> bool;

    /// Places the instance and returns once it is healthy.
    fn start(
        &self,
        instance: &Instance,
    ) -> impl Future<Output = Result<RuntimeInfo, DriverError>> + Send;

    /// Stops the instance gracefully; returns its exit code when it was running.
    fn stop(&self, instance: Uuid)
    -> impl Future<Output = Result<Option<i32>, DriverError>> + Send;

    /// Stops the instance if needed and removes everything it left on the platform.
    fn remove(&self, instance: Uuid) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// The last `lines` lines of the instance's log.
    fn logs(
        &self,
        instance: Uuid,
        lines: usize,
    ) -> impl Future<Output = Result<String, DriverError>> + Send;

    /// Stops every instance this driver runs (used on shutdown when asked to).
    fn stop_all(&self) -> impl Future<Output = ()> + Send;

    /// Where this worker reaches the running instance's listener `name` (`api`,
    /// `source:<id>`), as `http://host:port`: by default the address its start recorded.
    fn endpoint(
        &self,
        instance: &Instance,
        name: &str,
    ) -> impl Future<Output = Result<String, DriverError>> + Send {
        let found = recorded_endpoint(instance, name);
        async move { found }
    }
}

/// The address of listener `name` among the endpoints the instance's start recorded.
pub fn recorded_endpoint(instance: &Instance, name: &str) -> Result<String, DriverError> {
    instance
        .runtime
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.url.clone())
        .ok_or_else(|| {
            DriverError::Config(format!(
                "the instance has no `{name}` listener recorded; is it running?"
            ))
        })
}

//! Worker configuration: every knob, with the defaults `draas worker` starts from.

use std::path::PathBuf;
use std::time::Duration;

use draas_bus::connect::RedisTarget;
use draas_protocol::image::ImagePolicy;
use draas_protocol::{EgressPolicy, Keyspace, Platform};

/// The official drasi-server image: the instance image on Docker and Kubernetes unless a
/// worker or an instance names another.
pub const DEFAULT_IMAGE: &str = "ghcr.io/drasi-project/drasi-server:latest";

/// Everything a worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Which Redis, and the TLS files for `rediss://`.
    pub redis_url: RedisTarget,
    pub keys: Keyspace,
    pub platform: Platform,
    /// Holds the node identity and every instance's working directory.
    pub data_dir: PathBuf,
    /// Commands executed at once.
    pub concurrency: usize,
    /// XREADGROUP BLOCK time.
    pub block: Duration,
    pub heartbeat_interval: Duration,
    /// A worker whose last beat is older than this counts as dead.
    pub heartbeat_ttl: Duration,
    /// How long a claimed operation is ours before another worker may take it over; renewed
    /// while the command runs.
    pub lease: Duration,
    /// After the first shutdown signal, how long in-flight commands get to finish.
    pub drain_deadline: Duration,
    /// Stop every instance this worker runs when it shuts down (`draas up` does this).
    /// Otherwise instances keep running and the next worker on this node adopts them.
    pub stop_instances_on_exit: bool,
    /// How often the sweeper reclaims idle entries, prunes dead consumers and reaps dead nodes.
    pub sweep_interval: Duration,
    /// An entry pending this long belongs to a dead consumer: live workers keep the entries
    /// they execute fresh, so only a dead (or stuck) owner lets one idle this long.
    pub claim_idle: Duration,
    /// Deliveries after which an entry goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// How long a finished (or dead-lettered) operation record stays readable.
    pub operation_retention: Duration,
    /// Dead consumers with no pending entries are removed from the group after this long.
    pub prune_after: Duration,
    /// How often the platform's controller (one worker, elected by a lease) moves instances
    /// toward their `desiredState`; zero turns this worker's controller off.
    pub converge_interval: Duration,
    pub process: ProcessConfig,
    /// What the workload runs, as a JSON file in the format `draas-runtime capabilities`
    /// prints (`--capabilities-file`): advertised as it is, the workload is not asked. A file
    /// that cannot be read or is not that format stops the worker at start. `None`: the
    /// process and docker platforms ask the workload, kubernetes advertises nothing.
    pub capabilities_file: Option<PathBuf>,
    /// The data-plane listener API nodes forward instances' data requests to; `None`: this
    /// worker serves no data plane.
    pub data_plane: Option<crate::dataplane::DataPlaneConfig>,
    pub docker: DockerConfig,
    pub kubernetes: KubernetesConfig,
}

/// Settings of the kubernetes driver. The readiness deadline and stop grace come from
/// [`ProcessConfig`]; the cluster from the in-cluster config or a kubeconfig (`KUBECONFIG`).
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// A kubeconfig file to use instead of the inferred configuration (in-cluster, then
    /// `KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Namespace every instance's objects live in.
    pub namespace: String,
    /// Image for instances that name none.
    pub image: String,
    /// Other images an instance may name (`--allowed-image`); none by default.
    pub allowed_images: ImagePolicy,
    /// Deliver SIGINT before the pod's SIGTERM with a `preStop` hook (`/bin/sh -c 'kill -INT 1'`,
    /// then wait for the exit): drasi-server stops gracefully only on SIGINT. Turn it off for
    /// images without a shell whose server stops gracefully on SIGTERM (draas-runtime does).
    pub sigint_hook: bool,
    /// The pods' `imagePullPolicy`: `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    /// Size of each instance's data volume (a PersistentVolumeClaim mounted at `/app/data`);
    /// `None` keeps the data in an `emptyDir`, lost whenever the pod goes.
    pub data_size: Option<String>,
    /// Storage class of the data volumes; `None`: the cluster's default.
    pub storage_class: Option<String>,
}

/// Settings of the docker driver. Readiness and stop grace come from [`ProcessConfig`].
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Image for instances that name none. The official drasi-server image by default, for
    /// users with a registry; tests and `draas up` use the locally built runtime image.
    pub image: String,
    /// Other images an instance may name (`--allowed-image`); none by default.
    pub allowed_images: ImagePolicy,
    /// How containers are networked.
    pub network: DockerNetwork,
    /// Pull an image that is not present locally (progress is reported as events).
    pub pull: bool,
}

/// Container networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerNetwork {
    /// The host's network: instances listen on free host ports, like processes.
    Host,
    /// The default bridge, with every listening port published on the loopback address.
    Bridge,
    /// A named network: instances are reached by container name on fixed ports.
    Named(String),
}

impl DockerNetwork {
    /// `host`, `bridge`, or a network name.
    pub fn parse(text: &str) -> Self {
        match text {
            "host" => DockerNetwork::Host,
            "bridge" => DockerNetwork::Bridge,
            name => DockerNetwork::Named(name.to_owned()),
        }
    }
}

/// Settings of the process driver; the readiness, stop and instance-environment settings
/// apply to every platform.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The drasi-server compatible executable; `draas-runtime` by default.
    pub executable: PathBuf,
    /// How long a new instance has to answer `/health` with 200.
    pub readiness_timeout: Duration,
    /// Time between SIGINT and SIGKILL on stop.
    pub stop_grace: Duration,
    /// Each instance's log file is rotated at this size (one old file is kept).
    pub log_max_bytes: u64,
    /// The address instances listen on.
    pub host: String,
    /// Where instances may connect to. Enforced by draas-runtime's egress proxy, which the
    /// instance's environment points every HTTP client at (see `driver::launch`).
    pub egress: EgressPolicy,
    /// Variables of the worker's own environment that process instances also get
    /// (`--pass-env`); nothing else of it reaches them.
    pub pass_env: Vec<String>,
    /// Fixed arguments the workload gets after `--config <file>` on every platform
    /// (`--runtime-arg`), e.g. drasi-server's `--plugins-dir DIR`.
    pub runtime_args: Vec<String>,
}

impl WorkerConfig {
    /// Defaults for `platform` against `redis_url`, with data under `data_dir`.
    pub fn new(
        redis_url: impl Into<RedisTarget>,
        platform: Platform,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        WorkerConfig {
            redis_url: redis_url.into(),
            keys: Keyspace::default(),
            platform,
            data_dir: data_dir.into(),
            concurrency: 64,
            block: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            drain_deadline: Duration::from_secs(30),
            stop_instances_on_exit: false,
            sweep_interval: Duration::from_secs(5),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            operation_retention: Duration::from_secs(draas_bus::store::OPERATION_RETENTION_SECS),
            prune_after: Duration::from_secs(3600),
            converge_interval: Duration::from_secs(5),
            process: ProcessConfig {
                executable: PathBuf::from("draas-runtime"),
                readiness_timeout: Duration::from_secs(30),
                stop_grace: Duration::from_secs(10),
                log_max_bytes: 10 * 1024 * 1024,
                host: "127.0.0.1".to_owned(),
                egress: EgressPolicy::default(),
                pass_env: vec!["PATH".to_owned()],
                runtime_args: Vec::new(),
            },
            capabilities_file: None,
            data_plane: None,
            docker: DockerConfig {
                image: DEFAULT_IMAGE.to_owned(),
                allowed_images: ImagePolicy::default(),
                network: DockerNetwork::Host,
                pull: true,
            },
            kubernetes: KubernetesConfig {
                kubeconfig: None,
                namespace: "default".to_owned(),
                image: DEFAULT_IMAGE.to_owned(),
                allowed_images: ImagePolicy::default(),
                sigint_hook: true,
                image_pull_policy: "IfNotPresent".to_owned(),
                data_size: Some("1Gi".to_owned()),
                storage_class: None,
            },
        }
    }
}

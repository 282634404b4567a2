//! `draas`: the one operator binary. `main` only parses arguments, sets up logging and wires
//! signals; every subcommand's work lives in its own module.
//!
//! - `draas up`: the whole system on one machine ([`up`]).
//! - `draas api`: one API node.
//! - `draas worker`: one worker.
//! - `draas bench`: request/reply benchmark ([`bench`]).
//! - `draas tenants`: tenant quotas ([`tenants`]).

/// mimalloc instead of glibc's malloc: the API and the workers allocate per request and per
/// command from several threads, where glibc's allocator was a fifth of the API's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_token;
mod bench;
mod client;
mod context;
mod data_secret;
mod observability;
mod ops;
mod signals;
mod stop_all;
mod tenants;
mod tokens;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use draas_protocol::image::ImagePolicy;
use draas_protocol::{EgressPolicy, Keyspace, Platform};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "draas",
    version,
    about = "Drasi as a Service: control plane for Drasi instances"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Log lines as `text` or `json` (JSON lines carry the current span's fields, the trace
    /// id among them).
    #[arg(long, global = true, env = "DRAAS_LOG_FORMAT", default_value = "text")]
    log_format: draas_telemetry::trace::LogFormat,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run everything locally: a private Redis (unless REDIS_URL is set), the API and a process worker.
    Up(up::UpArgs),
    /// Run one API node.
    Api(Box<ApiArgs>),
    /// Run one worker for a platform.
    Worker(Box<WorkerArgs>),
    /// Measure Ping round trips through the bus and through the API.
    Bench(bench::BenchArgs),
    /// Operator tooling straight on Redis: streams, pending entries, dead letters, consumers.
    Ops(ops::OpsArgs),
    /// API tokens straight on Redis: create (the first one too), list, revoke.
    Tokens(tokens::TokensArgs),
    /// Tenant quotas straight on Redis: set, get, list.
    Tenants(tenants::TenantsArgs),
    /// Instances through the API: list, get, create, edit, start, stop, restart, delete, logs, events.
    Instances(client::InstancesArgs),
    /// Operations through the API: get (and follow with --wait).
    Operations(client::OperationsArgs),
    /// Create, change, start, stop (and with --prune delete) instances to match DrasiInstance documents.
    Apply(client::ApplyArgs),
    /// What `draas apply` would do, as a plan and a diff; exit 1 when it would change anything.
    Diff(client::DiffArgs),
    /// One instance (as `draas instances get`); `-o yaml` is a document `draas apply` accepts.
    Get(client::GetArgs),
}

/// Options every component shares. The Redis URL and prefix are settled by
/// [`Common::resolve`] (in `context`) before a command runs; read `redis_url` and `prefix`.
#[derive(Args, Clone)]
pub struct Common {
    /// Redis URL [default: that of the `draas up` whose context is found (see --context),
    /// else redis://127.0.0.1:6379].
    #[arg(long = "redis-url", env = "REDIS_URL", value_name = "URL")]
    redis_url_arg: Option<String>,
    /// Prefix of every Redis key [default: the `draas up` context's, else draas].
    #[arg(long = "prefix", env = "DRAAS_PREFIX", value_name = "PREFIX")]
    prefix_arg: Option<String>,
    /// Data directory (or context.json) of the `draas up` whose Redis to use when no Redis
    /// URL is given [default: $DRAAS_DATA_DIR, else .draas].
    #[arg(long, env = "DRAAS_CONTEXT", value_name = "PATH")]
    context: Option<PathBuf>,
    /// PEM CA certificate(s) a `rediss://` Redis is checked against, instead of the system's.
    #[arg(long = "redis-ca", env = "REDIS_CA", value_name = "FILE")]
    redis_ca: Option<PathBuf>,
    /// PEM client certificate for a Redis that asks for one (mutual TLS); needs --redis-key.
    #[arg(
        long = "redis-cert",
        env = "REDIS_CERT",
        value_name = "FILE",
        requires = "redis_key"
    )]
    redis_cert: Option<PathBuf>,
    /// PEM private key of --redis-cert.
    #[arg(
        long = "redis-key",
        env = "REDIS_KEY",
        value_name = "FILE",
        requires = "redis_cert"
    )]
    redis_key: Option<PathBuf>,
    /// The Redis URL in use, settled by `resolve`.
    #[arg(skip)]
    redis_url: String,
    /// The key prefix in use, settled by `resolve`.
    #[arg(skip)]
    prefix: String,
}

impl Common {
    /// The Redis in use (settled by `resolve`) with the TLS files given beside it.
    pub fn redis(&self) -> draas_bus::connect::RedisTarget {
        draas_bus::connect::RedisTarget::new(
            self.redis_url.clone(),
            draas_bus::connect::RedisTls {
                ca: self.redis_ca.clone(),
                cert: self.redis_cert.clone(),
                key: self.redis_key.clone(),
            },
        )
    }

    /// A store on that Redis under the settled key prefix (the commands that work straight
    /// on Redis: tokens, tenants).
    pub async fn store(&self) -> anyhow::Result<draas_bus::Store> {
        let conn = draas_bus::connect::shared(self.redis())
            .await
            .with_context(|| format!("connecting to {}", self.redis()))?;
        Ok(draas_bus::Store::new(conn, Keyspace::new(&self.prefix)))
    }
}

#[derive(Args)]
struct ApiArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    metrics: observability::MetricsArgs,
    /// The data-plane secret of the workers, so this node can forward data requests.
    #[command(flatten)]
    data: data_secret::SecretArgs,
    /// Address to listen on.
    #[arg(long, env = "DRAAS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Seconds lifecycle requests wait for completion when `?wait=` is absent.
    #[arg(long, env = "DRAAS_DEFAULT_WAIT", default_value_t = 30.0)]
    default_wait: f64,
    /// Wait for WAITAOF before answering (Redis 7.2+ with appendonly yes).
    #[arg(long, env = "DRAAS_WAIT_AOF")]
    wait_aof: bool,
    /// A browser origin (scheme://host[:port]) allowed besides same-origin requests;
    /// repeatable. Requests with any other `Origin` header are refused. No CORS headers are sent.
    #[arg(
        long = "allow-origin",
        env = "DRAAS_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_parser = parse_origin
    )]
    allow_origins: Vec<String>,
    /// The largest request body accepted, in bytes; larger ones are refused with a 413.
    #[arg(long, env = "DRAAS_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Where instances may connect to: literal outbound URLs of a config are checked against it
    /// when it is accepted (422 naming the field). Give the workers the same policy.
    #[arg(long, env = "DRAAS_EGRESS", default_value = "deny-local", value_parser = parse_egress)]
    egress: EgressPolicy,
    /// An image an instance may name (`*` matches any run of characters); repeatable. None by
    /// default: a create or patch naming `image` is refused. Give the workers the same.
    #[arg(long = "allowed-image", value_name = "PATTERN")]
    allowed_images: Vec<String>,
    /// `tokens` (every /api/v1 request needs a bearer token; at least one must exist) or
    /// `none` (development only; refused on a non-loopback --listen).
    #[arg(long, env = "DRAAS_AUTH", default_value = "tokens", value_parser = tokens::parse_auth)]
    auth: draas_api::auth::AuthMode,
    /// Requests per second each caller (token) may make to this API node, e.g. 50/s; the
    /// limit is per node. Over it: 429 with Retry-After.
    #[arg(long, env = "DRAAS_RATE_LIMIT", default_value = "50/s")]
    rate_limit: draas_api::limits::PerSecond,
    /// Requests a caller may make at once above the rate (the bucket size).
    #[arg(long, env = "DRAAS_RATE_BURST", default_value_t = std::num::NonZeroU32::new(100).unwrap())]
    rate_burst: std::num::NonZeroU32,
    /// No rate limit at all.
    #[arg(long, env = "DRAAS_NO_RATE_LIMIT")]
    no_rate_limit: bool,
    /// Seconds a client has to send a request's headers before it is disconnected.
    #[arg(long, env = "DRAAS_HEADER_READ_TIMEOUT", default_value_t = 10.0)]
    header_read_timeout: f64,
    /// Seconds a client has to send a request's whole body (else 408, disconnected).
    #[arg(long, env = "DRAAS_BODY_READ_TIMEOUT", default_value_t = 30.0)]
    body_read_timeout: f64,
    /// Approximate number of entries the audit stream keeps.
    #[arg(long, env = "DRAAS_AUDIT_MAXLEN", default_value_t = 100_000)]
    audit_maxlen: usize,
}

/// `--egress`: allow, deny-local, deny-private or a comma-separated CIDR list.
fn parse_egress(text: &str) -> Result<EgressPolicy, String> {
    text.parse()
        .map_err(|e: draas_protocol::egress::EgressParseError| e.to_string())
}

fn parse_origin(text: &str) -> Result<String, String> {
    draas_api::guard::normalize_origin(text)
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    metrics: observability::MetricsArgs,
    /// Serve the data plane on this address (API nodes forward instances' data requests to
    /// it); needs the data-plane secret. Off by default.
    #[arg(long, env = "DRAAS_DATA_LISTEN")]
    data_listen: Option<SocketAddr>,
    /// The address API nodes should use for the data plane (http://host:port), when it is not
    /// the --data-listen address (a wildcard bind, NAT, a Service).
    #[arg(long, env = "DRAAS_DATA_ADVERTISE", requires = "data_listen")]
    data_advertise: Option<String>,
    #[command(flatten)]
    data: data_secret::SecretArgs,
    /// Platform to serve.
    #[arg(long, value_parser = parse_platform, default_value = "process")]
    platform: Platform,
    /// Node identity and instance working directories.
    #[arg(long, env = "DRAAS_DATA_DIR", default_value = ".draas/worker")]
    data_dir: PathBuf,
    /// drasi-server compatible executable for the process platform.
    #[arg(long, env = "DRAAS_RUNTIME")]
    runtime: Option<PathBuf>,
    /// Commands executed at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds a new instance has to become healthy.
    #[arg(long, default_value_t = 30.0)]
    readiness_timeout: f64,
    /// Seconds between SIGINT and SIGKILL when stopping an instance.
    #[arg(long, default_value_t = 10.0)]
    stop_grace: f64,
    /// Seconds in-flight commands get after the first shutdown signal.
    #[arg(long, default_value_t = 30.0)]
    drain_deadline: f64,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 2.0)]
    heartbeat_interval: f64,
    /// Seconds without a heartbeat after which a worker (and its node) counts as dead.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_ttl: f64,
    /// Seconds an operation claim lasts unless renewed (it is renewed while a command runs).
    #[arg(long, default_value_t = 30.0)]
    lease: f64,
    /// Seconds a pending entry must idle before the sweeper reclaims it (at least --lease).
    #[arg(long, default_value_t = 30.0)]
    claim_idle: f64,
    /// Seconds between sweeps (reclaim, prune, node reaping).
    #[arg(long, default_value_t = 5.0)]
    sweep_interval: f64,
    /// Seconds between the looks of the platform's controller (one worker, by lease), which
    /// moves instances toward their desiredState and reports drift; 0 turns it off here.
    #[arg(long, default_value_t = 5.0)]
    converge_interval: f64,
    /// Deliveries after which a command is dead-lettered.
    #[arg(long, default_value_t = 5)]
    max_deliveries: u64,
    /// Seconds a finished operation stays readable, at least 600 (twice the API's longest
    /// wait). Each record is about 0.5 KB of Redis memory, so records take about
    /// commands/s × this × 0.5 KB.
    #[arg(long, default_value_t = draas_bus::store::OPERATION_RETENTION_SECS)]
    operation_retention: u64,
    /// Stop this worker's instances when it exits (otherwise the next worker on this node adopts them).
    #[arg(long)]
    stop_instances_on_exit: bool,
    /// Docker and Kubernetes: image for instances that name none.
    #[arg(long, env = "DRAAS_IMAGE", default_value = draas_worker::config::DEFAULT_IMAGE)]
    image: String,
    /// Docker and Kubernetes: an image an instance may name besides --image (`*` matches any
    /// run of characters: `ghcr.io/acme/*`); repeatable. None by default: tenants cannot choose.
    #[arg(long = "allowed-image", value_name = "PATTERN")]
    allowed_images: Vec<String>,
    /// Docker: `host`, `bridge` (ports published on 127.0.0.1) or the name of a network.
    #[arg(long, env = "DRAAS_DOCKER_NETWORK", default_value = "host")]
    network: String,
    /// Docker: never pull a missing image; fail the start instead.
    #[arg(long)]
    no_pull: bool,
    /// Kubernetes: namespace of the instances' objects. The cluster comes from the in-cluster
    /// config or a kubeconfig (`KUBECONFIG`, else ~/.kube/config).
    #[arg(long, env = "DRAAS_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Kubernetes: a kubeconfig file instead of the in-cluster config or `KUBECONFIG`.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubernetes: no preStop hook sending SIGINT before SIGTERM. Only for images without
    /// `/bin/sh` whose server stops gracefully on SIGTERM (draas-runtime does; drasi-server
    /// does not).
    #[arg(long)]
    no_sigint_hook: bool,
    /// Kubernetes: size of each instance's data volume (a PersistentVolumeClaim at /app/data,
    /// kept across stop and start), e.g. 1Gi or 500Mi; `none` keeps data in an emptyDir.
    #[arg(long, default_value = "1Gi", value_parser = parse_data_size)]
    data_size: DataSize,
    /// Kubernetes: storage class of the data volumes (default: the cluster's default class).
    #[arg(long)]
    storage_class: Option<String>,
    /// Kubernetes: the pods' imagePullPolicy (IfNotPresent, Always or Never).
    #[arg(long, default_value = "IfNotPresent", value_parser = ["IfNotPresent", "Always", "Never"])]
    image_pull_policy: String,
    /// Where instances may connect to: `deny-local` (no loopback, link-local or metadata
    /// addresses), `deny-private` (also private ranges), `allow`, or a comma-separated CIDR list
    /// of the only networks allowed. Enforced by draas-runtime's egress proxy when a request is
    /// made; other workloads need `allow`.
    #[arg(long, env = "DRAAS_EGRESS", default_value = "deny-local", value_parser = parse_egress)]
    egress: EgressPolicy,
    /// A variable of this worker's environment that process instances also get; repeatable.
    /// Nothing else of the worker's environment reaches an instance.
    #[arg(
        long = "pass-env",
        env = "DRAAS_PASS_ENV",
        value_delimiter = ',',
        default_value = "PATH"
    )]
    pass_env: Vec<String>,
    /// A fixed argument for the workload after `--config <file>`, on every platform;
    /// repeatable, e.g. `--runtime-arg=--plugins-dir --runtime-arg=/opt/drasi/plugins` for
    /// drasi-server (see the README).
    #[arg(long = "runtime-arg", value_name = "ARG", allow_hyphen_values = true)]
    runtime_args: Vec<String>,
    /// What the workload runs, on every platform: a JSON file as `draas-runtime capabilities`
    /// prints it, {"workload": "NAME VERSION", "sources": [KIND, ...], "reactions": [KIND,
    /// ...]}. Advertised as it is (the workload is not asked), so the API refuses a kind it
    /// lacks at create; a file that cannot be read or is not that format stops the worker.
    /// Without it, process and docker workers ask the workload (`<runtime> capabilities`, the
    /// image with `capabilities`) and kubernetes workers advertise nothing. For drasi-server,
    /// which cannot say, list the kinds of the plugins installed (see the README).
    #[arg(long, env = "DRAAS_CAPABILITIES_FILE", value_name = "PATH")]
    capabilities_file: Option<PathBuf>,
}

/// `--data-size`: a Kubernetes quantity, or none.
#[derive(Clone)]
struct DataSize(Option<String>);

fn parse_data_size(text: &str) -> Result<DataSize, String> {
    if text == "none" {
        return Ok(DataSize(None));
    }
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let units = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "k", "M", "G", "T", "P"];
    let number_ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.parse::<f64>().is_ok_and(|n| n > 0.0);
    if number_ok && units.contains(&unit) {
        Ok(DataSize(Some(text.to_owned())))
    } else {
        Err(format!(
            "`{text}` is not a storage size: a positive number with an optional unit \
             (Ki, Mi, Gi, Ti, Pi, k, M, G, T, P), e.g. 1Gi, or `none`"
        ))
    }
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    Platform::parse(text)
        .ok_or_else(|| format!("unknown platform `{text}`; use process, docker or kubernetes"))
}

impl WorkerArgs {
    fn config(&self) -> anyhow::Result<draas_worker::WorkerConfig> {
        let mut config =
            draas_worker::WorkerConfig::new(self.common.redis(), self.platform, &self.data_dir);
        config.keys = Keyspace::new(&self.common.prefix);
        config.concurrency = self.concurrency.max(1);
        config.process.executable = self.runtime.clone().unwrap_or_else(default_runtime);
        config.process.readiness_timeout = Duration::from_secs_f64(self.readiness_timeout);
        config.process.stop_grace = Duration::from_secs_f64(self.stop_grace);
        config.drain_deadline = Duration::from_secs_f64(self.drain_deadline);
        config.heartbeat_interval = Duration::from_secs_f64(self.heartbeat_interval);
        config.heartbeat_ttl = Duration::from_secs_f64(self.heartbeat_ttl);
        config.lease = Duration::from_secs_f64(self.lease);
        config.claim_idle = Duration::from_secs_f64(self.claim_idle.max(self.lease));
        config.sweep_interval = Duration::from_secs_f64(self.sweep_interval);
        config.converge_interval = Duration::from_secs_f64(self.converge_interval.max(0.0));
        config.max_deliveries = self.max_deliveries.max(1);
        config.operation_retention = Duration::from_secs(
            self.operation_retention
                .max(draas_bus::store::MIN_OPERATION_RETENTION_SECS),
        );
        config.stop_instances_on_exit = self.stop_instances_on_exit;
        config.docker.image = self.image.clone();
        config.docker.allowed_images = ImagePolicy::new(&self.allowed_images);
        config.kubernetes.allowed_images = ImagePolicy::new(&self.allowed_images);
        config.docker.network = draas_worker::config::DockerNetwork::parse(&self.network);
        config.docker.pull = !self.no_pull;
        config.kubernetes.image = self.image.clone();
        config.kubernetes.namespace = self.namespace.clone();
        config.kubernetes.kubeconfig = self.kubeconfig.clone();
        config.kubernetes.sigint_hook = !self.no_sigint_hook;
        config.kubernetes.image_pull_policy = self.image_pull_policy.clone();
        config.kubernetes.data_size = self.data_size.0.clone();
        config.kubernetes.storage_class = self.storage_class.clone();
        config.process.egress = self.egress.clone();
        config.process.pass_env = self.pass_env.clone();
        config.process.runtime_args = self.runtime_args.clone();
        config.capabilities_file = self.capabilities_file.clone();
        if let Some(listen) = self.data_listen {
            let secret = self.data.secret()?.ok_or_else(|| {
                anyhow::anyhow!(
                    "--data-listen needs the data-plane secret (--data-secret-file or \
                     DRAAS_DATA_SECRET): the data plane serves API nodes only"
                )
            })?;
            config.data_plane = Some(draas_worker::dataplane::DataPlaneConfig {
                listen,
                advertise: self.data_advertise.clone(),
                secret,
            });
        }
        Ok(config)
    }
}

/// `draas-runtime` next to this binary when it is there (a cargo build puts both in one
/// folder), else whatever `draas-runtime` is on PATH.
pub fn default_runtime() -> PathBuf {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("draas-runtime")));
    sibling
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("draas-runtime"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = match &cli.command {
        Cmd::Api(_) => "draas-api",
        Cmd::Worker(_) => "draas-worker",
        _ => "draas",
    };
    // Flushes exported spans when `main` returns.
    let _tracing = match draas_telemetry::trace::init(service, cli.log_format) {
        Ok(tracing) => tracing,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => client::exit(&error),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // The command runs as a task on the runtime's workers, not on this thread inside
    // `block_on`: a future there is woken across threads (a futex wake-up) by every reply its
    // connections' tasks receive, and the tasks it spawns go through the shared queue.
    let command = runtime.spawn(async move {
        match cli.command {
            Cmd::Up(args) => up::run(args).await,
            Cmd::Api(mut args) => {
                args.common.resolve().await?;
                run_api(*args).await
            }
            Cmd::Worker(mut args) => {
                context::check_not_ups_worker(&args.data_dir)?;
                args.common.resolve().await?;
                run_worker(*args).await
            }
            Cmd::Bench(args) => bench::run(args).await,
            Cmd::Ops(mut args) => {
                args.common.resolve().await?;
                ops::run(args).await
            }
            Cmd::Tokens(mut args) => {
                args.common.resolve().await?;
                tokens::run(args).await
            }
            Cmd::Tenants(mut args) => {
                args.common.resolve().await?;
                tenants::run(args).await
            }
            Cmd::Instances(args) => client::instances(args).await,
            Cmd::Operations(args) => client::operations(args).await,
            Cmd::Apply(args) => client::apply(args).await,
            Cmd::Diff(args) => client::diff(args).await,
            Cmd::Get(args) => client::get(args).await,
        }
    });
    match runtime.block_on(command) {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(anyhow::anyhow!("the command's task ended early: {error}")),
    }
}

async fn run_api(args: ApiArgs) -> anyhow::Result<()> {
    let mut config = draas_api::ApiConfig::new(args.common.redis());
    config.keys = Keyspace::new(&args.common.prefix);
    config.default_wait = Duration::from_secs_f64(args.default_wait);
    config.wait_aof = args.wait_aof;
    config.allowed_origins = args.allow_origins;
    config.max_body_bytes = args.max_body_bytes;
    config.egress = args.egress;
    config.allowed_images = ImagePolicy::new(args.allowed_images);
    config.auth = args.auth;
    config.data_secret = args.data.secret()?;
    config.rate_limit = (!args.no_rate_limit).then_some(draas_api::limits::RateLimit {
        per_second: args.rate_limit.0,
        burst: args.rate_burst,
    });
    if args.no_rate_limit {
        config.failed_auth_limit = None;
    }
    config.header_read_timeout = Duration::from_secs_f64(args.header_read_timeout.max(0.1));
    config.body_read_timeout = Duration::from_secs_f64(args.body_read_timeout.max(0.1));
    config.audit_maxlen = args.audit_maxlen.max(1);
    tokens::check_listen(args.auth, args.listen)?;
    args.metrics.start(CancellationToken::new()).await?;
    let app = draas_api::App::connect(config)
        .await
        .context("connecting to Redis")?;
    if args.auth == draas_api::auth::AuthMode::Tokens {
        tokens::check_tokens_exist(&app.store).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(message = "api listening", url = %format!("http://{}", listener.local_addr()?));
    let (first, _second) = signals::two_stage();
    draas_api::serve(listener, app, first).await?;
    Ok(())
}

async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let (first, second) = signals::two_stage();
    args.metrics.start(CancellationToken::new()).await?;
    draas_worker::run(args.config()?, first, second).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_data_size;

    #[test]
    fn data_sizes_are_quantities_or_none() {
        for good in ["1Gi", "500Mi", "2", "1.5Gi", "10G"] {
            assert_eq!(parse_data_size(good).unwrap().0.as_deref(), Some(good));
        }
        assert!(parse_data_size("none").unwrap().0.is_none());
        for bad in ["", "Gi", "0", "1GB", "-1Gi", "1 Gi", "lots"] {
            assert!(parse_data_size(bad).is_err(), "{bad}");
        }
    }
}

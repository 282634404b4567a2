//! Test harness: a private `redis-server` per test, the real API and the real worker running
//! in-process on loopback, and `draas-runtime` as the instance executable. Everything a test
//! starts is stopped by PID when the test's handles drop.

#![allow(dead_code)]

pub mod cluster;
pub mod kmock;
pub mod observer;
pub mod postgres;
pub mod sse;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use draas_protocol::{Keyspace, Platform};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any condition in these tests may take before it counts as failed.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A private redis-server on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    pub url: String,
    dir: PathBuf,
    child: Child,
}

impl RedisServer {
    pub fn start() -> anyhow::Result<Self> {
        let dir = scratch("redis");
        Self::start_in(dir, free_port())
    }

    /// Starts (or restarts) a server on `port` over `dir`, with AOF on so restarts keep data.
    pub fn start_in(dir: PathBuf, port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args([
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server must be installed (apt-get install -y redis-server)")?;
        let url = format!("redis://127.0.0.1:{port}");
        let server = RedisServer {
            port,
            url,
            dir,
            child,
        };
        wait_sync(|| {
            let client = redis::Client::open(server.url.as_str()).ok()?;
            let mut conn = client.get_connection().ok()?;
            redis::cmd("PING").query::<String>(&mut conn).ok()
        })?;
        Ok(server)
    }

    /// Restarts the server on the same port and data (SIGTERM flushes the AOF first).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        terminate(&mut self.child);
        *self = Self::start_in(self.dir.clone(), self.port)?;
        Ok(())
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).expect("valid url")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM, then wait (bounded), then SIGKILL.
pub fn terminate(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A key prefix no other test uses: `tag` plus 8 random hex digits.
pub fn fresh_keys(tag: &str) -> Keyspace {
    Keyspace::new(format!(
        "{tag}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ))
}

/// A fresh scratch directory.
pub fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "draas-test-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `draas-runtime` binary built by this workspace.
pub fn runtime_binary() -> PathBuf {
    workspace_binary("draas-runtime")
}

/// The `draas` binary built by this workspace.
pub fn draas_binary() -> PathBuf {
    workspace_binary("draas")
}

/// Runs `draas <command> --redis-url … --prefix … <args>` (stdin closed); returns whether it
/// succeeded and its stdout (with its stderr when it failed).
pub fn draas_cli(command: &str, redis_url: &str, keys: &Keyspace, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(draas_binary())
        .args([command, "--redis-url", redis_url, "--prefix", keys.prefix()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run draas");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.success() {
        true => (true, stdout),
        false => (false, stdout + &String::from_utf8_lossy(&out.stderr)),
    }
}

fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        bin.display()
    );
    bin
}

/// The data-plane secret the tests' API nodes and workers share.
pub fn data_secret() -> draas_protocol::dataplane::DataSecret {
    draas_protocol::dataplane::DataSecret::new("test-data-plane-secret-0123456789abcdef")
        .expect("a valid secret")
}

/// A running API node (in-process, on loopback).
pub struct ApiNode {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ApiNode {
    pub async fn start(redis_url: &str, keys: &Keyspace) -> anyhow::Result<Self> {
        Self::start_tuned(redis_url, keys, |_| {}).await
    }

    /// Starts an API node with its configuration adjusted by `tune`.
    pub async fn start_tuned(
        redis_url: &str,
        keys: &Keyspace,
        tune: impl FnOnce(&mut draas_api::ApiConfig),
    ) -> anyhow::Result<Self> {
        let mut config = draas_api::ApiConfig::new(redis_url);
        config.keys = keys.clone();
        config.default_wait = Duration::from_secs(30);
        // Tests poll quickly through one anonymous caller: no rate limit unless a test sets one.
        config.rate_limit = None;
        config.failed_auth_limit = None;
        config.data_secret = Some(data_secret());
        tune(&mut config);
        let app = draas_api::App::connect(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(draas_api::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Ok(ApiNode {
            url,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, task).await;
        }
    }
}

impl Drop for ApiNode {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A running worker (in-process).
pub struct WorkerNode {
    pub data_dir: PathBuf,
    crashed: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), draas_worker::WorkerError>>>,
}

impl WorkerNode {
    pub async fn start(
        redis_url: &str,
        keys: &Keyspace,
        executable: PathBuf,
    ) -> anyhow::Result<Self> {
        Self::start_tuned(redis_url, keys, executable, scratch("worker"), |_| {}).await
    }

    /// Starts a worker on `data_dir` (its node identity lives there) with `tune` applied.
    pub async fn start_tuned(
        redis_url: &str,
        keys: &Keyspace,
        executable: PathBuf,
        data_dir: PathBuf,
        tune: impl FnOnce(&mut draas_worker::WorkerConfig),
    ) -> anyhow::Result<Self> {
        let mut config = draas_worker::WorkerConfig::new(redis_url, Platform::Process, &data_dir);
        config.keys = keys.clone();
        config.stop_instances_on_exit = true;
        config.drain_deadline = Duration::from_secs(20);
        config.process.executable = executable;
        config.process.stop_grace = Duration::from_secs(5);
        // Every test worker serves the data plane on a free loopback port.
        config.data_plane = Some(draas_worker::dataplane::DataPlaneConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            secret: data_secret(),
        });
        tune(&mut config);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(draas_worker::run(
            config,
            async move {
                let _ = rx.await;
            },
            std::future::pending(),
        ));
        Ok(WorkerNode {
            data_dir,
            crashed: false,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The worker vanishes mid-flight, like a SIGKILL: no drain, no deregistration. The
    /// instance processes it started keep running.
    pub fn crash(mut self) {
        self.crashed = true;
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, task).await;
        }
    }
}

impl Drop for WorkerNode {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // A test must not leave instance processes behind; a crashed worker's survive on
        // purpose (the next worker on the node adopts them).
        if !self.crashed {
            if let Some(task) = self.task.take() {
                task.abort();
            }
            kill_instances_under(&self.data_dir);
        }
    }
}

/// SIGKILLs every process started with a config under `dir`.
pub fn kill_instances_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A runtime wrapper that appends one line per launch to `log` (outside every worker), then
/// becomes `draas-runtime` (exec keeps the pid), optionally after `delay_s` seconds.
pub fn counting_runtime(log: &Path, delay_s: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch("counting").join("counting-runtime.sh");
    let script = format!(
        "#!/bin/sh\necho \"$$ $*\" >> {}\nsleep {delay_s}\nexec {} \"$@\"\n",
        log.display(),
        runtime_binary().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Launch-log lines that name `instance`.
pub fn launches(log: &Path, instance: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(instance))
        .count()
}

/// Redis + API + one process worker, with a fresh key prefix.
pub struct System {
    pub redis: RedisServer,
    pub keys: Keyspace,
    pub api: ApiNode,
    pub worker: WorkerNode,
    pub http: reqwest::Client,
}

impl System {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(runtime_binary()).await
    }

    pub async fn start_with(executable: PathBuf) -> anyhow::Result<Self> {
        Self::start_tuned(executable, |_| {}).await
    }

    /// Like `start_with`, with the worker's configuration adjusted by `tune`.
    pub async fn start_tuned(
        executable: PathBuf,
        tune: impl FnOnce(&mut draas_worker::WorkerConfig),
    ) -> anyhow::Result<Self> {
        Self::start_configured(executable, tune, |_| {}).await
    }

    /// Like `start_tuned`, with the API's configuration adjusted by `tune_api` too.
    pub async fn start_configured(
        executable: PathBuf,
        tune: impl FnOnce(&mut draas_worker::WorkerConfig),
        tune_api: impl FnOnce(&mut draas_api::ApiConfig),
    ) -> anyhow::Result<Self> {
        let redis = RedisServer::start()?;
        let keys = fresh_keys("t");
        let worker =
            WorkerNode::start_tuned(&redis.url, &keys, executable, scratch("worker"), tune).await?;
        let api = ApiNode::start_tuned(&redis.url, &keys, tune_api).await?;
        let http = reqwest::Client::new();
        let system = System {
            redis,
            keys,
            api,
            worker,
            http,
        };
        let url = system.api.url.clone();
        let http = system.http.clone();
        wait_until(|| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let v = get_json(&http, &format!("{url}/api/v1/platforms")).await?;
                (v["items"][0]["available"] == true).then_some(())
            }
        })
        .await?;
        Ok(system)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.url)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("request");
        status_json(resp).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    /// Creates an instance from `sensor_config()` under `name`; returns its id.
    pub async fn create(&self, name: &str) -> String {
        let (status, body) = self
            .post_json(
                "/api/v1/instances",
                &json!({"name": name, "platform": "process", "config": sensor_config()}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn instance(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/instances/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the instance is in `state`.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let result = wait_until(|| async move {
            let inst = self.instance(id).await;
            (inst["state"] == state).then_some(inst)
        })
        .await;
        match result {
            Ok(inst) => inst,
            Err(_) => panic!(
                "instance {id} never reached {state}: {}",
                self.instance(id).await
            ),
        }
    }
}

pub async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The walk-through config: an HTTP source, a Cypher query and a log reaction.
pub fn sensor_config() -> Value {
    json!({
        "sources": [{"kind": "http", "id": "readings"}],
        "queries": [{
            "id": "hot",
            "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id, s.temperature AS temperature",
            "sources": [{"sourceId": "readings"}]
        }],
        "reactions": [{"kind": "log", "id": "log", "queries": ["hot"]}]
    })
}

/// Waits until the API at `api` sees `n` live process workers.
pub async fn wait_for_workers(http: &reqwest::Client, api: &str, n: u64) {
    let url = format!("{api}/api/v1/platforms");
    wait_until(|| async {
        let v = get_json(http, &url).await?;
        let process = v["items"]
            .as_array()?
            .iter()
            .find(|p| p["platform"] == "process")?;
        (process["available"] == true && process["workers"].as_u64().unwrap_or(1) >= n)
            .then_some(())
    })
    .await
    .expect("workers become available");
}

/// The URL of a named endpoint in an instance's runtime.
pub fn endpoint(inst: &Value, name: &str) -> String {
    inst["runtime"]["endpoints"]
        .as_array()
        .and_then(|eps| eps.iter().find(|e| e["name"] == name))
        .and_then(|e| e["url"].as_str())
        .unwrap_or_else(|| panic!("no endpoint {name} in {inst}"))
        .to_owned()
}

/// Polls `check` until it yields a value or `DEADLINE` passes.
pub async fn wait_until<T, F, Fut>(mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("condition not met within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait_sync<T>(mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Recovery timings shrunk from seconds-and-minutes to fractions of a second, so the recovery
/// paths run within a test's time.
pub fn fast_recovery(c: &mut draas_worker::WorkerConfig) {
    c.heartbeat_interval = Duration::from_millis(200);
    c.heartbeat_ttl = Duration::from_millis(1500);
    c.lease = Duration::from_secs(1);
    c.claim_idle = Duration::from_secs(1);
    c.sweep_interval = Duration::from_millis(200);
    c.max_deliveries = 3;
}

/// Number of pending entries of the worker group on `stream`.
pub async fn pending_count(conn: &mut impl redis::aio::ConnectionLike, stream: &str) -> usize {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(draas_protocol::keys::WORKER_GROUP)
        .query_async(conn)
        .await
        .unwrap_or(redis::Value::Nil);
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            _ => 0,
        },
        _ => 0,
    }
}

/// GET `url` and parse JSON; `None` on any failure (for use inside `wait_until`).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// SIGKILL a process by pid, as an outside actor would.
pub fn sigkill(pid: i64) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A command envelope for the process platform and its pending operation.
pub fn envelope(
    instance: Option<uuid::Uuid>,
    command: draas_protocol::Command,
) -> (draas_protocol::CommandEnvelope, draas_protocol::Operation) {
    let env = draas_protocol::CommandEnvelope::new(
        Platform::Process,
        instance,
        command,
        draas_bus::clock::now(),
    );
    let op = draas_protocol::Operation::pending(
        env.command_id,
        instance,
        Platform::Process,
        env.command.kind(),
        env.issued_at,
    );
    (env, op)
}

/// Submits `n` Ping commands with no worker running, then reads them as `ghost`, a consumer
/// that dies at once: they are pending. Returns the envelopes in stream order.
pub async fn ghost_pings(
    store: &draas_bus::Store,
    conn: &mut impl redis::aio::ConnectionLike,
    n: usize,
) -> anyhow::Result<Vec<draas_protocol::CommandEnvelope>> {
    let stream = store.keys().commands(Platform::Process);
    draas_bus::streams::ensure_group(conn, &stream).await?;
    let mut envs = Vec::new();
    for _ in 0..n {
        let (env, op) = envelope(None, draas_protocol::Command::Ping);
        store.submit(&stream, &env, &op).await?;
        envs.push(env);
    }
    ghost_read(conn, &stream).await?;
    Ok(envs)
}

pub async fn ghost_read(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> anyhow::Result<()> {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(draas_protocol::keys::WORKER_GROUP)
        .arg("ghost")
        .arg("COUNT")
        .arg(1000)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await?;
    Ok(())
}

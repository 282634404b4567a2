//! Test harness: a private `redis-server` per test, the real API and the real worker running
//! in-process on loopback, and `draas-runtime` as the instance executable. Everything a test
//! starts is stopped by PID when the test's handles drop.

#![allow(dead_code)]

pub mod cluster;
pub mod kmock;
mod nodes;
pub mod observer;
pub mod otlp;
pub mod postgres;
pub mod prometheus;
pub mod records;
pub mod sse;

#[allow(unused_imports)]
pub use nodes::{ApiNode, System, WorkerNode, data_secret};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use draas_protocol::{Keyspace, Platform};
use serde_json::{Value, json};

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
    let op = draas_protocol::Operation::of(&env);
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

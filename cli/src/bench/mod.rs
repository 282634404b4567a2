//! `draas bench`: Ping round trips through the bus alone and through the API, with real
//! worker processes (and a real API process) on one Redis.
//!
//! Latency is one command in flight, from send to awaited reply, as the caller sees it.
//! Throughput is a closed loop of `--in-flight` callers, each awaiting its reply. The JSON it
//! prints fits `shared/bench/peers/peers.py --external` (the API path by default, since that
//! is what a DRaaS client pays; `--path bus` reports the bus alone). `--matrix` runs 1 and 2
//! workers over both paths and adds `redis-cli --latency` from the same run.
//!
//! Each run also measures the physical floor ([`floor`]: two processes bouncing one message
//! through Redis with blocking reads) and states its latency against it.

mod floor;
mod instances;
mod scale;
mod soak;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use draas_api::dispatch::{Dispatcher, Request};
use draas_bus::{Store, connect};
use draas_protocol::{Command, Keyspace, Outcome, Platform};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::process::{Child, Command as Process};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PathKind {
    Api,
    Bus,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Redis URL.
    #[arg(
        long,
        alias = "redis",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Commands in flight in the throughput phase.
    #[arg(long, alias = "concurrency", default_value_t = 64)]
    in_flight: usize,
    /// Commands in the throughput phase.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Sequential commands in the latency phase.
    #[arg(long, default_value_t = 2_000)]
    latency_n: usize,
    /// Untimed commands before the latency phase.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Cap in seconds per phase.
    #[arg(long, default_value_t = 60.0)]
    time_cap: f64,
    /// Which path the peers-format result reports.
    #[arg(long, value_enum, default_value = "api")]
    path: PathKind,
    /// Run 1 and 2 workers over both paths, plus redis-cli --latency, and print a table.
    #[arg(long)]
    matrix: bool,
    /// Record metrics in the API and worker processes (`--metrics-listen 127.0.0.1:0`), to
    /// measure what they cost; spans are exported when the `OTEL_*` variables say so (the
    /// children inherit them).
    #[arg(long)]
    metrics: bool,
    /// Idle time between two commands of the latency phase (and two messages of the floor),
    /// in milliseconds, so each finds the other side idle.
    #[arg(long, default_value_t = 1.0)]
    gap_ms: f64,
    /// Instead of commands: the API's reads over this many instance records (created, not
    /// started), each size in a fresh keyspace, side by side (`--scale 1000,10000`).
    #[arg(long, value_delimiter = ',', value_name = "N,…")]
    scale: Vec<usize>,
    /// Instead of commands: N process instances on one node (one API, one worker): create and
    /// start all (`--in-flight` at once), start-to-ready of one with the others running and
    /// where its time goes, idle RSS and CPU, stop and delete all (`--instances 100`).
    #[arg(long, value_name = "N")]
    instances: Option<usize>,
    /// The source kind of `--instances`' instances: `http` (drasi-source-http waits 500 ms at
    /// start for a bind error, so that bounds start-to-ready) or `mock`.
    #[arg(long, value_parser = ["http", "mock"], default_value = "http")]
    instance_source: String,
    /// Instead of the phases above: N Pings in 10 checkpoints, showing what Redis keeps
    /// (memory, keys by kind, every stream against its cap, operation records' expiry), then
    /// the events and audit streams written past their caps.
    #[arg(long, value_name = "N")]
    soak: Option<usize>,
    /// Internal: be the floor's echo process on these two queues (`Q1,Q2`).
    #[arg(long, hide = true, value_name = "Q1,Q2")]
    echo: Option<String>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(queues) = &args.echo {
        let (q1, q2) = queues
            .split_once(',')
            .context("--echo takes two queue names: Q1,Q2")?;
        return floor::echo(&args.redis_url, q1, q2, Duration::from_secs(3600)).await;
    }
    // Its cost accounting reads one server's INFO and its cleanup SCANs one keyspace.
    if draas_bus::connect::is_cluster(&args.redis_url) {
        anyhow::bail!(
            "draas bench measures a single Redis server; --redis-url names a cluster (several nodes)"
        );
    }
    if !args.scale.is_empty() {
        return scale::run(&args, &args.scale).await;
    }
    if let Some(n) = args.instances {
        return instances::run(&args, n).await;
    }
    if let Some(n) = args.soak {
        return soak::run(&args, n).await;
    }
    if args.matrix {
        return matrix(&args).await;
    }
    let result = measure(&args, args.workers, args.path).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

async fn matrix(args: &BenchArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for workers in [1, 2] {
        for path in [PathKind::Bus, PathKind::Api] {
            let r = measure(args, workers, path).await?;
            eprintln!(
                "{:<4} workers={workers}  p50 {:.3} ms  p99 {:.3} ms  (1 in flight; floor p50 {:.3} ms, {:.1}x)   {:.0} cmds/s  p50 {:.3} ms  p99 {:.3} ms  ({} in flight)",
                if path == PathKind::Api { "api" } else { "bus" },
                r["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
                r["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
                r["floor_ms"]["p50"].as_f64().unwrap_or(0.0),
                r["p50_vs_floor"].as_f64().unwrap_or(0.0),
                r["throughput"]["jobs_per_s"].as_f64().unwrap_or(0.0),
                r["throughput"]["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
                r["throughput"]["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
                args.in_flight,
            );
            rows.push(r);
        }
    }
    let redis_latency = redis_cli_latency(&args.redis_url)
        .await
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    eprintln!("redis-cli --latency: {redis_latency}");
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"runs": rows, "redis_cli_latency": redis_latency}))?
    );
    Ok(())
}

/// One configuration: start workers (and the API), warm up, measure, stop everything.
async fn measure(args: &BenchArgs, workers: usize, path: PathKind) -> anyhow::Result<Value> {
    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let scratch = std::env::temp_dir().join(&prefix);
    let mut children = Vec::new();
    for n in 0..workers {
        let data = scratch.join(format!("worker-{n}"));
        children.push(spawn_self(
            &[
                "worker",
                "--redis-url",
                &args.redis_url,
                "--prefix",
                &prefix,
                "--concurrency",
                "256",
                "--data-dir",
            ],
            Some(&data),
            &scratch,
            &format!("worker-{n}"),
            args.metrics,
        )?);
    }
    let result = async {
        let store = Store::new(connect::shared(&args.redis_url).await?, Keyspace::new(&prefix));
        wait_for_workers(&store, workers).await?;
        let caller = match path {
            PathKind::Bus => {
                let stop = CancellationToken::new();
                let node = format!("bench-{}", std::process::id());
                Caller::Bus(Dispatcher::start(store.clone(), &args.redis_url, &node, Duration::from_secs(10), false, stop).await?)
            }
            PathKind::Api => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                let listen = format!("127.0.0.1:{port}");
                children.push(spawn_self(&["api", "--redis-url", &args.redis_url, "--prefix", &prefix, "--listen", &listen, "--no-rate-limit", "--auth", "none"], None, &scratch, "api", args.metrics)?);
                let url = format!("http://{listen}");
                let http = reqwest::Client::builder().pool_max_idle_per_host(args.in_flight.max(1)).build()?;
                wait_for_api(&http, &url).await?;
                Caller::Api { http, url }
            }
        };
        let caller = Arc::new(caller);
        let cap = Duration::from_secs_f64(args.time_cap);
        for _ in 0..args.warmup {
            caller.ping().await?;
        }
        let gap = Duration::from_secs_f64(args.gap_ms.max(0.0) / 1000.0);
        let latency = sequential(&caller, args.latency_n, cap, gap).await?;
        let floor = measure_floor(args, &prefix, &scratch, gap).await?;
        // The cost of the throughput phase: CPU of the client side (this process, plus the API
        // process on the api path), of the workers and of Redis, and Redis commands per job.
        let worker_pids: Vec<u32> = children.iter().take(workers).filter_map(Child::id).collect();
        let client_pids: Vec<u32> = children.iter().skip(workers).filter_map(Child::id).collect();
        let before = Cost::sample(&store, &worker_pids, &client_pids).await?;
        let throughput = closed_loop(&caller, args.jobs, args.in_flight.max(1), cap).await?;
        let after = Cost::sample(&store, &worker_pids, &client_pids).await?;
        let jobs = throughput["completed"].as_f64().unwrap_or(0.0).max(1.0);
        let per_job = |a: f64, b: f64| (a - b) * 1000.0 / jobs;
        // Inside `throughput`, where shared/bench/peers/peers.py reads them.
        let mut throughput = throughput;
        throughput["cpu_ms_per_job"] = json!({
            "client": per_job(after.client_s, before.client_s),
            "workers": per_job(after.workers_s, before.workers_s),
            "redis": per_job(after.redis_s, before.redis_s),
        });
        throughput["redis_cmds_per_job"] = json!((after.commands - before.commands) as f64 / jobs);
        anyhow::Ok(json!({
            "path": if path == PathKind::Api { "api" } else { "bus" },
            "p50_vs_floor": floor::ratio(&latency, &floor),
            "floor_ms": floor,
            "latency_ms": latency,
            "throughput": throughput,
            "settings": {"workers": workers, "in_flight": args.in_flight, "worker_concurrency": 256, "platform": "process", "gap_ms": args.gap_ms},
            "versions": {"draas": env!("CARGO_PKG_VERSION")},
        }))
    }
    .await;
    for child in &mut children {
        stop(child).await;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(error) = forget_keys(&args.redis_url, &prefix).await {
        eprintln!("could not remove the run's keys ({prefix}:*): {error}");
    }
    result
}

/// Removes every key of a finished run (its own prefix), with a paged SCAN: the benchmark
/// owns that prefix, and leaving 100k operation records behind would bother the next run.
async fn forget_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// CPU seconds and Redis's command count at one instant.
struct Cost {
    client_s: f64,
    workers_s: f64,
    redis_s: f64,
    commands: u64,
}

impl Cost {
    async fn sample(store: &Store, workers: &[u32], clients: &[u32]) -> anyhow::Result<Self> {
        let stats: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut store.conn())
            .await?;
        let cpu: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut store.conn())
            .await?;
        let field = |text: &str, name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let own = process_cpu_s(std::process::id());
        Ok(Cost {
            client_s: own + clients.iter().map(|p| process_cpu_s(*p)).sum::<f64>(),
            workers_s: workers.iter().map(|p| process_cpu_s(*p)).sum(),
            redis_s: field(&cpu, "used_cpu_user") + field(&cpu, "used_cpu_sys"),
            commands: field(&stats, "total_commands_processed") as u64,
        })
    }
}

/// User + system CPU seconds of a process, from /proc (clock ticks are USER_HZ = 100).
fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

enum Caller {
    Bus(Arc<Dispatcher>),
    Api { http: reqwest::Client, url: String },
}

impl Caller {
    async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Caller::Bus(dispatcher) => {
                let stream = dispatcher
                    .route(Platform::Process, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let request = Request::new(
                    stream,
                    Platform::Process,
                    None,
                    Command::Ping,
                    Duration::from_secs(10),
                );
                let mut submitted = dispatcher
                    .submit(request)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                match submitted.wait(Duration::from_secs(10)).await {
                    Some(reply) if matches!(reply.outcome, Outcome::Succeeded { .. }) => Ok(()),
                    Some(reply) => bail!("ping failed: {:?}", reply.outcome),
                    None => bail!("no reply within 10 s"),
                }
            }
            Caller::Api { http, url } => {
                let resp = http
                    .post(format!("{url}/api/v1/platforms/process/ping?wait=10"))
                    .send()
                    .await?;
                let status = resp.status();
                let body: Value = resp.json().await?;
                if status != 200 || body["state"] != "succeeded" {
                    bail!("ping failed: {status} {body}");
                }
                Ok(())
            }
        }
    }
}

async fn sequential(
    caller: &Arc<Caller>,
    n: usize,
    cap: Duration,
    gap: Duration,
) -> anyhow::Result<Value> {
    let mut hist = Histogram::<u64>::new(3)?;
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        caller.ping().await?;
        hist.record(t.elapsed().as_micros() as u64)?;
        if start.elapsed() > cap {
            break;
        }
        floor::idle(gap).await;
    }
    Ok(summary(&hist))
}

/// The floor in the same run, with the latency phase's count and gap: an echo child process
/// and this one bouncing a message through Redis.
async fn measure_floor(
    args: &BenchArgs,
    prefix: &str,
    scratch: &PathBuf,
    gap: Duration,
) -> anyhow::Result<Value> {
    let (q1, q2) = floor::queues(prefix);
    let queues = format!("{q1},{q2}");
    let mut echo = spawn_self(
        &["bench", "--redis-url", &args.redis_url, "--echo", &queues],
        None,
        scratch,
        "floor-echo",
        false,
    )?;
    let measured = floor::measure(
        &args.redis_url,
        (&q1, &q2),
        args.latency_n,
        args.warmup,
        gap,
    )
    .await;
    if tokio::time::timeout(Duration::from_secs(10), echo.wait())
        .await
        .is_err()
    {
        stop(&mut echo).await;
    }
    Ok(summary(&measured?))
}

async fn closed_loop(
    caller: &Arc<Caller>,
    jobs: usize,
    in_flight: usize,
    cap: Duration,
) -> anyhow::Result<Value> {
    let issued = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (caller, issued) = (Arc::clone(caller), Arc::clone(&issued));
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            while issued.fetch_add(1, Ordering::Relaxed) < jobs && start.elapsed() < cap {
                let t = Instant::now();
                caller.ping().await?;
                hist.record(t.elapsed().as_micros() as u64)?;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    for task in tasks {
        hist.add(task.await??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completed = hist.len() as usize;
    Ok(json!({
        "in_flight": in_flight,
        "requested": jobs,
        "completed": completed,
        "capped": completed < jobs,
        "elapsed_s": elapsed,
        "jobs_per_s": completed as f64 / elapsed,
        "latency_ms": summary(&hist),
    }))
}

fn summary(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "n": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
        "mean": h.mean() / 1000.0,
    })
}

fn spawn_self(
    args: &[&str],
    last: Option<&PathBuf>,
    scratch: &PathBuf,
    log: &str,
    metrics: bool,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(scratch)?;
    let log = std::fs::File::create(scratch.join(format!("{log}.log")))?;
    let mut cmd = Process::new(std::env::current_exe()?);
    cmd.args(args);
    if let Some(last) = last {
        cmd.arg(last);
    }
    match metrics {
        true => cmd.env("DRAAS_METRICS_LISTEN", "127.0.0.1:0"),
        false => cmd.env_remove("DRAAS_METRICS_LISTEN"),
    };
    cmd.env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    cmd.spawn().context("spawning a draas child process")
}

async fn wait_for_workers(store: &Store, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.live_worker_count(Platform::Process, 10_000).await? < n as u64 {
        if Instant::now() > deadline {
            bail!("{n} workers did not register within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_for_api(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API at {url} was not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// `redis-cli --latency` for 3 seconds against the same server.
async fn redis_cli_latency(url: &str) -> anyhow::Result<Value> {
    let info = redis::Client::open(url)?.get_connection_info().clone();
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
        other => bail!("redis-cli latency needs a TCP address, not {other:?}"),
    };
    let child = Process::new("redis-cli")
        .args(["-h", &host, "-p", &port.to_string(), "--latency", "--raw"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("running redis-cli")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    let out = child.wait_with_output().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("").trim().to_owned();
    let fields: Vec<&str> = last.split_whitespace().collect();
    Ok(match fields.as_slice() {
        [min, max, avg, samples] => {
            json!({"min_ms": min.parse::<f64>().ok(), "max_ms": max.parse::<f64>().ok(), "avg_ms": avg.parse::<f64>().ok(), "samples": samples.parse::<u64>().ok()})
        }
        _ => json!({"raw": last}),
    })
}

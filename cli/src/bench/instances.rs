//! `draas bench --instances N`: N running process instances on one node (one API, one process
//! worker, a fresh keyspace): create and start all through the API (`--in-flight` at once); the
//! start-to-ready of one instance while N-1 run, split by real timestamps and by a direct launch
//! of draas-runtime (fork/exec, runtime start to `/health`, components running); the worker's
//! and the runtimes' RSS and idle CPU; stop and delete all; no runtime left (checked by PID).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use draas_bus::{Store, clock::now, connect};
use draas_protocol::drasi::DrasiConfig;
use draas_protocol::{EgressPolicy, EventKind, InstanceEnv, InstanceState, Keyspace};
use draas_worker::driver::ready::{self, Readiness};
use draas_worker::driver::{launch, ports::PortAllocator};
use hdrhistogram::Histogram;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::Client;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{BenchArgs, forget_keys, process_cpu_s, spawn_self, stop, summary};
use super::{wait_for_api, wait_for_workers};

/// Stop/start cycles of one instance for its start-to-ready; the idle window for CPU figures.
const CYCLES: usize = 10;
const IDLE: Duration = Duration::from_secs(10);
/// How often the worker asks a starting process instance whether it is ready: its waits
/// between two checks double from the first to the longest (`ProcessDriver::wait_ready`).
const READY_POLL_MS: [u128; 2] = [
    draas_worker::driver::ready::FIRST_PROBE_GAP.as_millis(),
    draas_worker::driver::ready::MAX_PROBE_GAP.as_millis(),
];
const TARGET_P50_MS: f64 = 500.0; // issue 17's target for one start to ready (p50)
/// The start-to-ready figures, in the order `start_one` records them.
const PHASES: &str = "api_ms accept_ms queue_claim_ms driver_start_ms record_ms reply_ms \
                      direct_spawn_ms direct_to_health_ms direct_health_to_ready_ms direct_ready_ms";
/// Where the start-to-ready figures come from (in the JSON).
const METHOD: &str = "api_ms: the client's POST /start?wait until its answer. Split by ms wall clocks of this host: accept = client send to the operation's createdAt (API); queue_claim = createdAt to the worker's `starting` event; driver_start = `starting` to `running` event (spawn, runtime start, readiness probing); record = `running` event to the operation's completedAt; reply = completedAt to the answer at the client. direct_*: draas-runtime launched by the bench as the worker does (rendered config, ports, environment, the worker's own readiness check), probed every 2 ms: spawn = until spawn returned (fork/exec done), to_health = then until /health answered 200, health_to_ready = then until every component runs. The worker's waits between two probes double from ready_poll_gaps_ms.first to .max, so its start notices readiness up to one wait later; driver_start - direct_ready is that wait plus the worker's launch steps.";

/// Runs the mode and prints the JSON (stdout) and a table (stderr).
pub async fn run(args: &BenchArgs, n: usize) -> Result<()> {
    if n == 0 {
        bail!("--instances must be at least 1");
    }
    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let scratch = std::env::temp_dir().join(&prefix);
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let listen = listen.to_string();
    let common = ["--redis-url", &args.redis_url, "--prefix", &prefix];
    let with = |first: &'static str, rest: &'static str| {
        let mut all = vec![first];
        all.extend(common.into_iter().chain(rest.split(' ')));
        all
    };
    let flags = "--concurrency 256 --readiness-timeout 120 --stop-instances-on-exit --data-dir";
    let (worker, data) = (with("worker", flags), scratch.join("worker"));
    let mut worker = spawn_self(&worker, Some(&data), &scratch, "worker", args.metrics)?;
    let mut api = with("api", "--no-rate-limit --auth none --listen");
    api.push(&listen);
    let mut api = spawn_self(&api, None, &scratch, "api", args.metrics)?;
    let worker_pid = worker.id().context("the worker exited at once")?;
    let url = format!("http://{listen}");
    let result = measure(args, n, &prefix, &url, worker_pid).await;
    // Whatever happened: the worker stops its instances on exit (--stop-instances-on-exit);
    // a runtime still alive after that is killed by its PID.
    let left = runtimes_of(worker_pid);
    stop(&mut api).await;
    stop(&mut worker).await;
    let killed = kill_alive(&left);
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(error) = forget_keys(&args.redis_url, &prefix).await {
        eprintln!("could not remove the run's keys ({prefix}:*): {error}");
    }
    let result = result?;
    if !killed.is_empty() {
        bail!("draas-runtime processes outlived their worker and were killed: {killed:?}");
    }
    table(&result);
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

async fn measure(args: &BenchArgs, n: usize, prefix: &str, url: &str, pid: u32) -> Result<Value> {
    let (flight, http) = (args.in_flight.max(1), Client::new());
    let kind: &'static str = if args.instance_source == "mock" {
        "mock"
    } else {
        "http"
    };
    let scratch = std::env::temp_dir().join(prefix);
    let conn = connect::shared(&args.redis_url).await?;
    let store = Store::new(conn, Keyspace::new(prefix));
    wait_for_api(&http, url).await?;
    wait_for_workers(&store, 1).await?;
    let create = bulk(&http, url, n, flight, "create", kind).await?;
    let start_all = bulk(&http, url, n, flight, "start", kind).await?;
    let running = runtimes_of(pid);
    if running.len() != n {
        let found = running.len();
        bail!("{n} instances run but the worker (pid {pid}) has {found} draas-runtime children");
    }
    let one = start_one(&http, url, &store, &name(0), &scratch.join("direct"), kind).await?;
    let idle = idle(pid).await?;
    let stop_all = bulk(&http, url, n, flight, "stop", kind).await?;
    let after_stop = runtimes_of(pid);
    let delete_all = bulk(&http, url, n, flight, "delete", kind).await?;
    let mut left = runtimes_of(pid);
    left.extend(running.iter().chain(&after_stop));
    let killed = kill_alive(&left);
    if !killed.is_empty() {
        bail!("draas-runtime processes left after stop and delete, killed by PID: {killed:?}");
    }
    Ok(json!({
        "instances": n,
        "create": create,
        "start_all": start_all,
        "start_one": one,
        "idle": idle,
        "stop_all": stop_all,
        "runtimes_after_stop_all": after_stop.len(),
        "delete_all": delete_all,
        "settings": {"in_flight": flight, "worker_concurrency": 256, "platform": "process", "source": kind},
        "versions": {"draas": env!("CARGO_PKG_VERSION")},
    }))
}

/// One instance's config: a source of `kind` (`--instance-source`; an HTTP source waits for
/// input), a query and a log reaction, so that a running instance is idle (the worker assigns
/// the API's and the source's ports).
fn config(kind: &str) -> Value {
    json!({
        "sources": [{"id": "readings", "kind": kind}],
        "queries": [{"id": "hot", "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id", "sources": [{"sourceId": "readings"}]}],
        "reactions": [{"id": "out", "kind": "log", "queries": ["hot"]}],
    })
}

/// `what` (create, start, stop or delete) of instance `name`, waiting (up to the API's 300 s)
/// until its operation ends; the answer. Anything but success is an error naming the instance.
async fn request(c: &Client, url: &str, name: &str, what: &str, kind: &str) -> Result<Value> {
    let one = format!("{url}/api/v1/instances/{name}");
    let body = json!({"name": name, "platform": "process", "config": config(kind)});
    let req = match what {
        "create" => c.post(format!("{url}/api/v1/instances")).json(&body),
        "delete" => c.delete(format!("{one}?wait=300")),
        _ => c.post(format!("{one}/{what}?wait=300")),
    };
    let failed = || format!("{what} of instance {name} failed");
    let resp = req.send().await.with_context(failed)?;
    let status = resp.status();
    let body: Value = resp.json().await.with_context(failed)?;
    let ok = match what {
        "create" => status == 201,
        _ => status == 200 && body["state"] == "succeeded",
    };
    if !ok {
        let error = body.get("error").filter(|e| !e.is_null()).unwrap_or(&body);
        let state = &body["state"];
        bail!("{}: HTTP {status}, state {state}: {error}", failed());
    }
    Ok(body)
}

/// `what` on every instance, `in_flight` requests at once: the wall time and latencies. The
/// first error ends it (dropping the JoinSet aborts the other callers).
async fn bulk(
    c: &Client,
    url: &str,
    n: usize,
    flight: usize,
    what: &'static str,
    kind: &'static str,
) -> Result<Value> {
    let next = Arc::new(AtomicUsize::new(0));
    let (started, mut set) = (Instant::now(), JoinSet::new());
    for _ in 0..flight.min(n) {
        let (c, url, next) = (c.clone(), url.to_owned(), next.clone());
        set.spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            while let Some(i) = Some(next.fetch_add(1, Ordering::Relaxed)).filter(|i| *i < n) {
                let t = Instant::now();
                request(&c, &url, &name(i), what, kind).await?;
                hist.record(t.elapsed().as_micros() as u64)?;
            }
            anyhow::Ok(hist)
        });
    }
    let mut hist = Histogram::<u64>::new(3)?;
    while let Some(done) = set.join_next().await {
        hist.add(done??)?;
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(json!({"wall_s": wall, "per_s": n as f64 / wall, "latency_ms": summary(&hist)}))
}

/// The name of instance `i`.
fn name(i: usize) -> String {
    format!("inst-{i:04}")
}

/// [`CYCLES`] times: stop `name`, launch draas-runtime directly (the other N-1 running), then
/// start `name` through the API and split its time by its operation record and events.
async fn start_one(
    c: &Client,
    url: &str,
    store: &Store,
    name: &str,
    dir: &Path,
    kind: &str,
) -> Result<Value> {
    let mut hists = vec![Histogram::<u64>::new(3)?; PHASES.split_whitespace().count()];
    let runtime = crate::default_runtime();
    for cycle in 0..CYCLES {
        request(c, url, name, "stop", kind).await?;
        let [spawn, health, ready] =
            direct(&runtime, &dir.join(cycle.to_string()), c, kind).await?;
        let (sent, t) = (now().millis(), Instant::now());
        let op = request(c, url, name, "start", kind).await?;
        let (api, got) = (t.elapsed().as_micros() as u64, now().millis());
        let id: uuid::Uuid = op["id"].as_str().unwrap_or_default().parse()?;
        let op = store.operation(id).await?;
        let op = op.context("the start's operation record is gone")?;
        let (created, done) = (op.created_at.millis(), op.completed_at.map(|t| t.millis()));
        let done = done.context("the start's operation has no completedAt")?;
        let (starting, running) = transitions(store, id).await?;
        let ms = [sent, created, starting, running, done, got];
        let steps = ms.windows(2).map(|w| w[1].saturating_sub(w[0]) * 1000);
        let direct = [spawn, health, ready.saturating_sub(spawn + health), ready];
        let values = std::iter::once(api).chain(steps).chain(direct);
        for (hist, value) in hists.iter_mut().zip(values) {
            hist.record(value)?;
        }
    }
    let p50 = |i: usize| hists[i].value_at_quantile(0.5) as f64 / 1000.0;
    let mut out = json!({
        "cycles": CYCLES,
        "ready_poll_gaps_ms": {"first": READY_POLL_MS[0], "max": READY_POLL_MS[1]},
        "driver_start_minus_direct_ready_p50_ms": p50(3) - p50(9),
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": p50(0) <= TARGET_P50_MS,
        "method": METHOD,
    });
    for (phase, hist) in PHASES.split_whitespace().zip(&hists) {
        out[phase] = summary(hist);
    }
    Ok(out)
}

/// The ms wall times of the `starting` and `running` events of start operation `op`.
async fn transitions(store: &Store, op: uuid::Uuid) -> Result<(u64, u64)> {
    let events = store.recent_events(200).await?;
    let at = |to: InstanceState| {
        let ours = events.iter().filter(|e| e.event.command_id == Some(op));
        let mut hits = ours
            .filter(|e| matches!(e.event.kind, EventKind::StateChanged { to: t, .. } if t == to));
        hits.next().map(|e| e.event.at.millis())
    };
    let found = at(InstanceState::Starting).zip(at(InstanceState::Running));
    found.with_context(|| format!("the events of start {op} lack its starting or running change"))
}

/// Launches draas-runtime as the worker does (config rendered with allocated ports, the
/// worker's environment for its default egress policy) and probes every 2 ms; microseconds
/// until spawn returned, from then until `/health` answered 200, and in all until ready.
async fn direct(runtime: &Path, dir: &Path, http: &Client, kind: &str) -> Result<[u64; 3]> {
    let (host, ports) = ("127.0.0.1", PortAllocator::default());
    let mut config = DrasiConfig::from_json_value(config(kind))?;
    let endpoints = config.assign_ports(host, &mut || ports.allocate(host))?;
    config.id = Some("bench-direct".into());
    config.clear_plugin_settings();
    let api = endpoints.into_iter().find(|e| e.name == "api");
    let api = api.context("the config has no API endpoint")?.url;
    let proxy = format!("{host}:{}", ports.allocate(host)?);
    let env = launch::environment(&InstanceEnv::new(), &EgressPolicy::default(), Some(&proxy));
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.yaml"), config.to_yaml())?;
    let log = std::fs::File::create(dir.join("runtime.log"))?;
    let mut cmd = tokio::process::Command::new(runtime);
    cmd.args(["--config", "config.yaml"]).current_dir(dir);
    cmd.env_clear().envs(env);
    cmd.envs(std::env::var_os("PATH").map(|p| ("PATH".to_owned(), p)));
    cmd.stdout(log.try_clone()?).stderr(log);
    cmd.stdin(Stdio::null()).process_group(0).kill_on_drop(true);
    let t = Instant::now();
    let spawn = cmd.spawn();
    let mut child = spawn.with_context(|| format!("launching {runtime:?}"))?;
    let spawned = t.elapsed();
    let (deadline, mut healthy) = (t + Duration::from_secs(120), None);
    let log = format!("see {}", dir.join("runtime.log").display());
    let outcome = loop {
        if let Some(status) = child.try_wait()? {
            break Err(anyhow!("draas-runtime exited ({status}) unready; {log}"));
        }
        if healthy.is_none() {
            let health = http.get(format!("{api}/health")).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                healthy = Some(t.elapsed());
            }
        }
        if healthy.is_some() {
            match ready::check(http, &api, &config).await {
                Readiness::Ready => break Ok(t.elapsed()),
                Readiness::Failed(why) => break Err(anyhow!("draas-runtime failed: {why}; {log}")),
                Readiness::Waiting(_) => {}
            }
        }
        if Instant::now() > deadline {
            break Err(anyhow!("draas-runtime was not ready within 120 s; {log}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _ = child
        .id()
        .map(|pid| kill(Pid::from_raw(pid as i32), Signal::SIGINT));
    let ten = Duration::from_secs(10);
    if tokio::time::timeout(ten, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    let (ready, us) = (outcome?, |d: Duration| d.as_micros() as u64);
    let health = healthy.map_or(0, |h| us(h - spawned));
    Ok([us(spawned), health, us(ready)])
}

/// RSS now and CPU over [`IDLE`] of the worker and of its draas-runtime children.
async fn idle(worker: u32) -> Result<Value> {
    let runtimes = runtimes_of(worker);
    let children = || runtimes.iter().map(|p| process_cpu_s(*p)).sum::<f64>();
    let cpu = || (process_cpu_s(worker), children());
    let before = cpu();
    tokio::time::sleep(IDLE).await;
    let after = cpu();
    let pct = |a: f64, b: f64| (a - b) * 100.0 / IDLE.as_secs_f64();
    let rss: Vec<f64> = runtimes.iter().map(|p| rss_mb(*p)).collect::<Result<_>>()?;
    let sum: f64 = rss.iter().sum();
    Ok(json!({
        "window_s": IDLE.as_secs_f64(),
        "worker_rss_mb": rss_mb(worker)?,
        "worker_cpu_pct_of_one_core": pct(after.0, before.0),
        "runtimes_count": runtimes.len(),
        "runtimes_rss_mb_sum": sum,
        "runtimes_rss_mb_mean": sum / rss.len().max(1) as f64,
        "runtimes_cpu_pct_of_one_core_sum": pct(after.1, before.1),
    }))
}

/// VmRSS of a process in MiB, from `/proc/<pid>/status`.
fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
    let kb = kb.and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    Ok(kb.with_context(|| format!("no VmRSS in /proc/{pid}/status"))? / 1024.0)
}

/// The parent PID of `pid` when it is a live (not zombie) draas-runtime, from /proc.
fn runtime_parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let live = !matches!(fields.next()?, "Z" | "X") && head.ends_with(" (draas-runtime");
    live.then_some(fields.next()?.parse().ok()?)
}

/// PIDs of the live draas-runtime processes whose parent is `parent`.
fn runtimes_of(parent: u32) -> Vec<u32> {
    let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    let pids = pids.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|pid| runtime_parent(*pid) == Some(parent))
        .collect()
}

/// SIGKILLs each of `pids` that is still a live draas-runtime; the ones it killed.
fn kill_alive(pids: &[u32]) -> Vec<u32> {
    let mut killed: Vec<u32> = pids.to_vec();
    killed.sort_unstable();
    killed.dedup();
    let sigkill = |pid: u32| kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok();
    killed.retain(|pid| runtime_parent(*pid).is_some() && sigkill(*pid));
    killed
}

/// The table (stderr): one row per figure, latencies as p50 and p99.
fn table(r: &Value) {
    let (n, in_flight) = (&r["instances"], &r["settings"]["in_flight"]);
    eprintln!("{n} process instances on one node, {in_flight} in flight");
    for row in ROWS.lines() {
        let (label, at) = row.split_once('|').unwrap_or((row, ""));
        let v = r.pointer(at).unwrap_or(&Value::Null);
        let f = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
        match v.get("p50") {
            Some(p50) => eprintln!("  {label:<44} p50 {:>8}  p99 {:>8}", f(p50), f(&v["p99"])),
            None if v.is_number() => eprintln!("  {label:<44} {:>12}", f(v)),
            None => eprintln!("  {label:<44} {v:>12}"),
        }
    }
}

/// The table's rows: label|JSON pointer into the result.
const ROWS: &str = "\
start all: wall s|/start_all/wall_s
start all: each start ms|/start_all/latency_ms
start one (N-1 running): API ms|/start_one/api_ms
  accept (API) ms|/start_one/accept_ms
  queue + claim ms|/start_one/queue_claim_ms
  driver start (spawn..ready + probing) ms|/start_one/driver_start_ms
  record ms|/start_one/record_ms
  reply ms|/start_one/reply_ms
  direct: spawn (fork/exec) ms|/start_one/direct_spawn_ms
  direct: runtime start to /health ms|/start_one/direct_to_health_ms
  direct: /health to components running ms|/start_one/direct_health_to_ready_ms
  worker's first probe wait ms|/start_one/ready_poll_gaps_ms/first
  worker's longest probe wait ms|/start_one/ready_poll_gaps_ms/max
  driver start - direct ready (p50) ms|/start_one/driver_start_minus_direct_ready_p50_ms
  target p50 <= 500 ms met|/start_one/meets_target
idle: worker RSS MiB|/idle/worker_rss_mb
idle: worker CPU % of one core|/idle/worker_cpu_pct_of_one_core
idle: runtimes' RSS MiB (sum)|/idle/runtimes_rss_mb_sum
idle: runtimes' CPU % of one core (sum)|/idle/runtimes_cpu_pct_of_one_core_sum
stop all: wall s|/stop_all/wall_s
delete all: wall s|/delete_all/wall_s";

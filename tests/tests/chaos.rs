//! Chaos: 3 worker processes, 2,000 commands over 100 instances, and one worker SIGKILLed and
//! restarted at random moments (every 0.3 to 3 s) throughout, so kills land between any two
//! steps of a start: before the spawn, between the spawn and the runtime's first line, during
//! readiness. Restart policy `never`, so every launch is one a command asked for. At the end:
//! every operation is terminal, each succeeded start launched exactly once (counted by the
//! executable itself, outside every worker), an outside observer sampling the process table
//! never saw two live copies of one instance and sees no instance process left once every
//! instance is stopped, the pending lists are empty and the dead-letter stream holds only the
//! poison this test injected.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::observer::Observer;
use common::{
    ApiNode, RedisServer, counting_runtime, draas_binary, launches, pending_count, scratch,
    status_json,
};
use draas_protocol::{Keyspace, Platform};
use serde_json::{Value, json};

const INSTANCES: usize = 100;
const CYCLES: usize = 10; // start + stop per cycle: 20 commands per instance
const WORKERS: usize = 3;
const POISON: usize = 3;
/// Short, so the commands of killed workers are taken over quickly.
const CHAOS_LEASE: &str = "1";
/// Nothing is killed in the drain test, so nothing waits for a lease to run out. A longer
/// lease keeps a worker starved of CPU (60 debug runtimes starting on 2 cores next to other
/// builds) from losing its commands to the other worker mid-start, which would be a second
/// launch this test rightly counts, but caused by the machine rather than the drain.
const DRAIN_LEASE: &str = "10";

fn spawn_worker(
    redis_url: &str,
    prefix: &str,
    data_dir: &PathBuf,
    runtime: &PathBuf,
    log: &PathBuf,
    lease: &str,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(draas_binary())
        .args([
            "worker",
            "--platform",
            "process",
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--runtime")
        .arg(runtime)
        .args([
            "--heartbeat-interval",
            "0.2",
            "--heartbeat-ttl",
            "5",
            "--lease",
            lease,
            "--claim-idle",
            lease,
        ])
        .args([
            "--sweep-interval",
            "0.2",
            "--max-deliveries",
            "20",
            "--readiness-timeout",
            "30",
            "--stop-grace",
            "5",
        ])
        .env("RUST_LOG", "warn,draas_worker=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn draas worker")
}

/// Redis, worker processes (each with its own node directory) launching the counting runtime,
/// and an in-process API that sees them all.
struct Fleet {
    /// Kills every worker and instance process under the fleet's directory when dropped, so
    /// a failing test leaves nothing running.
    _cleanup: Cleanup,
    /// Everything of the fleet lives under it: worker nodes and their instances.
    root: PathBuf,
    redis: RedisServer,
    prefix: &'static str,
    keys: Keyspace,
    api: ApiNode,
    http: reqwest::Client,
    workers: Vec<Child>,
    dirs: Vec<PathBuf>,
    launch_log: PathBuf,
    runtime: PathBuf,
    worker_log: PathBuf,
}

impl Fleet {
    /// `lease`: the workers' `--lease` and `--claim-idle` in seconds: how long a stalled
    /// worker keeps its commands before another one takes them over.
    async fn start(prefix: &'static str, workers: usize, lease: &str) -> anyhow::Result<Self> {
        let redis = RedisServer::start()?;
        let keys = Keyspace::new(prefix);
        let dir = scratch(prefix);
        let launch_log = dir.join("launches.log");
        let runtime = counting_runtime(&launch_log, 0);
        let worker_log = dir.join("workers.log");
        let dirs: Vec<PathBuf> = (0..workers)
            .map(|n| dir.join(format!("node-{n}")))
            .collect();
        let children = dirs
            .iter()
            .map(|d| spawn_worker(&redis.url, prefix, d, &runtime, &worker_log, lease))
            .collect();
        let api = ApiNode::start(&redis.url, &keys).await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        common::wait_until(|| async {
            let v = common::get_json(&http, &format!("{}/api/v1/platforms", api.url)).await?;
            (v["items"][0]["workers"] == workers).then_some(())
        })
        .await?;
        Ok(Fleet {
            root: dir.clone(),
            _cleanup: Cleanup(dir),
            redis,
            prefix,
            keys,
            api,
            http,
            workers: children,
            dirs,
            launch_log,
            runtime,
            worker_log,
        })
    }
}

/// Kills the processes started under a directory when dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        common::kill_instances_under(&self.0);
    }
}

/// Creates `n` process instances named `<prefix>-<n>` with restart policy `never`.
async fn create_instances(
    http: &reqwest::Client,
    api: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = json!({"name": format!("{prefix}-{i}"), "platform": "process", "config": {}, "restartPolicy": {"mode": "never"}});
        let (status, inst) = status_json(
            http.post(format!("{api}/api/v1/instances"))
                .json(&body)
                .send()
                .await?,
        )
        .await;
        assert_eq!(status, 201, "{inst}");
        ids.push(inst["id"].as_str().unwrap().to_owned());
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_competing_workers_killed_and_restarted() -> anyhow::Result<()> {
    let Fleet {
        _cleanup,
        root,
        redis,
        keys,
        api,
        http,
        mut workers,
        dirs: data_dirs,
        launch_log,
        runtime,
        worker_log,
        prefix,
    } = Fleet::start("chaos", WORKERS, CHAOS_LEASE).await?;
    let ids = create_instances(&http, &api.url, "chaos", INSTANCES).await?;
    // Poison: entries no worker can decode.
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    for n in 0..POISON {
        let _: String = redis::cmd("XADD")
            .arg(keys.commands(Platform::Process))
            .arg("*")
            .arg("m")
            .arg(format!("poison {n}"))
            .query_async(&mut conn)
            .await?;
    }

    // The chaos monkey: SIGKILL one worker every ~2 s, restart it at once on its node.
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let monkey = {
        let (done, kills) = (Arc::clone(&done), Arc::clone(&kills));
        let (url, runtime, dirs, log) = (
            redis.url.clone(),
            runtime.clone(),
            data_dirs.clone(),
            worker_log.clone(),
        );
        std::thread::spawn(move || {
            let mut victim = 0;
            // A fixed-seed xorshift: random-looking kill moments, the same sequence each run.
            let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
            while !done.load(Ordering::SeqCst) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                std::thread::sleep(Duration::from_millis(300 + state % 2700));
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let _ = workers[victim].kill();
                let _ = workers[victim].wait();
                kills.fetch_add(1, Ordering::SeqCst);
                workers[victim] =
                    spawn_worker(&url, prefix, &dirs[victim], &runtime, &log, CHAOS_LEASE);
                victim = (victim + 1) % WORKERS;
            }
            workers
        })
    };

    // The outside observer: the process table, sampled independently of every worker.
    let observer = Observer::start(&root);

    // Clients: each instance's commands in order, instances in parallel (32 at a time).
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut clients = Vec::new();
    for id in ids.clone() {
        let (http, base, gate) = (http.clone(), api.url.clone(), Arc::clone(&gate));
        clients.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.unwrap();
            let mut ops = Vec::new();
            for step in 0..CYCLES * 2 {
                let verb = if step % 2 == 0 { "start" } else { "stop" };
                ops.push(run_to_end(&http, &base, &id, verb, step).await);
            }
            (id, ops)
        }));
    }
    let mut results: HashMap<String, Vec<Value>> = HashMap::new();
    for client in clients {
        let (id, ops) = client.await?;
        results.insert(id, ops);
    }
    let run_time = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let mut workers = monkey.join().unwrap();

    // Drain: the pending lists of every stream empty out.
    let drain_started = Instant::now();
    let nodes: Vec<String> = data_dirs
        .iter()
        .map(|d| {
            std::fs::read_to_string(d.join("node-id"))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    let mut streams = vec![keys.commands(Platform::Process)];
    streams.extend(
        nodes
            .iter()
            .map(|n| keys.node_commands(Platform::Process, n)),
    );
    common::wait_until(|| async {
        let mut c = conn.clone();
        for s in &streams {
            if pending_count(&mut c, s).await != 0 {
                return None;
            }
        }
        Some(())
    })
    .await?;
    let drain_time = drain_started.elapsed();
    // Every instance ended stopped: no runtime process of any may still run.
    let leftovers = observer.live_now();
    let (seen, samples) = observer.finish();
    // Retention: acked entries are deleted, so the command streams end empty, not just acked.
    for stream in &streams {
        let len: usize = redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut conn)
            .await?;
        assert_eq!(len, 0, "{stream} still holds {len} entries");
    }

    // Every operation terminal and succeeded; every start launched exactly once.
    let mut commands = 0;
    let mut failed = Vec::new();
    let mut duplicates = 0;
    let mut losses = 0;
    for (id, ops) in &results {
        commands += ops.len();
        for op in ops {
            assert!(
                matches!(op["state"].as_str(), Some("succeeded" | "failed")),
                "not terminal: {op}"
            );
            if op["state"] == "failed" {
                failed.push(op.clone());
            }
        }
        let started_ok = ops
            .iter()
            .filter(|o| o["command"] == "start" && o["state"] == "succeeded")
            .count();
        let launched = launches(&launch_log, id);
        duplicates += launched.saturating_sub(started_ok);
        losses += started_ok.saturating_sub(launched);
        let observed = seen.get(id).cloned().unwrap_or_default();
        assert!(
            observed.max_live <= 1,
            "instance {id}: {} copies alive at once ({:?}); launches:\n{}\nworker log:\n{}",
            observed.max_live,
            observed.overlap,
            lines_naming(&launch_log, id),
            lines_naming(&worker_log, id),
        );
        assert!(
            observed.pids.len() <= launched,
            "instance {id}: the observer saw {} copies, the launch log {launched}",
            observed.pids.len()
        );
    }
    assert!(
        leftovers.is_empty(),
        "instance processes alive after their stop: {leftovers:?}"
    );
    let retried = results
        .values()
        .flatten()
        .filter(|o| o["attempts"].as_u64().unwrap_or(0) > 1)
        .count();
    let dlq: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(keys.dead_letters(Platform::Process))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    println!(
        "chaos: {commands} commands over {INSTANCES} instances, {WORKERS} workers, {} SIGKILLs in {:.1} s; \
         failed ops {}, duplicate launches {duplicates}, lost launches {losses}, dead letters {} ({POISON} poison), \
         pending drained {:.2} s after the last reply; {retried} operations ran again after their worker died; \
         observer: {samples} samples, {} distinct instance processes, at most {} alive at once per instance",
        kills.load(Ordering::SeqCst),
        run_time.as_secs_f64(),
        failed.len(),
        dlq.len(),
        drain_time.as_secs_f64(),
        seen.values().map(|s| s.pids.len()).sum::<usize>(),
        seen.values().map(|s| s.max_live).max().unwrap_or(0),
    );
    assert_eq!(commands, INSTANCES * CYCLES * 2);
    assert!(
        kills.load(Ordering::SeqCst) >= 3,
        "the monkey must have struck during the run"
    );
    assert!(failed.is_empty(), "failed operations: {failed:#?}");
    assert_eq!(duplicates, 0, "a command's side effect happened twice");
    assert_eq!(losses, 0, "a succeeded start launched nothing");
    assert_eq!(
        dlq.len(),
        POISON,
        "the dead-letter stream holds only the poison"
    );

    for worker in &mut workers {
        common::terminate(worker);
    }
    Ok(())
}

/// The lines of a log file that name `needle`.
fn lines_naming(log: &PathBuf, needle: &str) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends one lifecycle request and follows its operation until it is terminal. Transient
/// refusals (a node briefly without a live worker) are retried with the same Idempotency-Key.
async fn run_to_end(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    verb: &str,
    step: usize,
) -> Value {
    let key = format!("{id}-{step}");
    let deadline = Instant::now() + Duration::from_secs(600);
    let op = loop {
        assert!(Instant::now() < deadline, "{verb} {id} was never accepted");
        let sent = http
            .post(format!("{base}/api/v1/instances/{id}/{verb}?wait=60"))
            .header("Idempotency-Key", &key)
            .send()
            .await;
        let Ok(resp) = sent else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (status, body) = status_json(resp).await;
        match status {
            200 | 202 => break body,
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => panic!("{verb} {id} step {step}: {status} {body}"),
        }
    };
    let op_id = op["id"].as_str().unwrap().to_owned();
    let mut op = op;
    while !matches!(op["state"].as_str(), Some("succeeded" | "failed")) {
        assert!(
            Instant::now() < deadline,
            "operation {op_id} never finished: {op}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let resp = http
            .get(format!("{base}/api/v1/operations/{op_id}"))
            .send()
            .await;
        if let Ok(resp) = resp {
            op = status_json(resp).await.1;
        }
    }
    op
}

/// A SIGTERM during load: the worker stops reading, finishes and acks what it holds, and
/// exits 0; nothing is lost and nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_nothing_and_doubles_nothing() -> anyhow::Result<()> {
    const STARTS: usize = 60;
    let Fleet {
        _cleanup,
        redis,
        keys,
        api,
        http,
        mut workers,
        launch_log,
        ..
    } = Fleet::start("drain", 2, DRAIN_LEASE).await?;
    let ids = create_instances(&http, &api.url, "drain", STARTS).await?;
    let mut clients = Vec::new();
    for id in ids.clone() {
        let (http, base) = (http.clone(), api.url.clone());
        clients.push(tokio::spawn(async move {
            (id.clone(), run_to_end(&http, &base, &id, "start", 0).await)
        }));
    }
    // Mid-load, the first worker gets SIGTERM.
    common::wait_until(|| async {
        let n = std::fs::read_to_string(&launch_log)
            .unwrap_or_default()
            .lines()
            .count();
        (n >= STARTS / 4).then_some(())
    })
    .await?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workers[0].id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let exit = tokio::task::spawn_blocking(move || {
        let status = workers[0].wait();
        (status, workers)
    });
    let mut ops = Vec::new();
    for client in clients {
        ops.push(client.await?);
    }
    let (status, mut workers) = exit.await?;
    assert!(status?.success(), "a drained worker exits 0");
    for (id, op) in &ops {
        assert_eq!(op["state"], "succeeded", "{op}");
        assert_eq!(
            launches(&launch_log, id),
            1,
            "instance {id} launched more or less than once: {op}\n{}",
            std::fs::read_to_string(&launch_log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(id.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    assert_eq!(
        pending_count(&mut conn, &keys.commands(Platform::Process)).await,
        0
    );
    // Clean up every instance process by the pids the launch log recorded.
    for line in std::fs::read_to_string(&launch_log)?.lines() {
        if let Some(pid) = line
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    common::terminate(&mut workers[1]);
    Ok(())
}

/// The observer this file relies on counts copies, not processes: a copy's own forks (which
/// show its command line until they exec) are part of it, even once the copy's first process
/// died and they were re-parented; two copies launched apart are two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_counts_copies_by_their_process_group() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let root = scratch("observer");
    let config = root.join("node-1/instances/copy-a/config.yaml");
    std::fs::create_dir_all(config.parent().expect("a parent"))?;
    // A copy as the process driver launches one: a group of its own. Its subshell is a fork
    // that keeps the command line naming the config; it leaves `marker` once it runs.
    let launch = |marker: PathBuf| -> anyhow::Result<Child> {
        let child = Command::new("sh")
            .arg("-c")
            .arg("(touch \"$1\"; while :; do sleep 1; done) & wait")
            .arg("sh")
            .arg(&marker)
            .arg(&config)
            .process_group(0)
            .spawn()?;
        Ok(child)
    };
    let forked = |marker: PathBuf| async move {
        common::wait_until(|| {
            let marker = marker.clone();
            async move { marker.exists().then_some(()) }
        })
        .await
    };
    let copies = |n: usize| {
        let root = root.clone();
        async move {
            common::wait_until(|| {
                let root = root.clone();
                async move {
                    let live = common::observer::live_instances(&root);
                    let seen = live.get("copy-a").map_or(0, Vec::len);
                    (seen == n).then_some(())
                }
            })
            .await
        }
    };
    let (marker_a, marker_b) = (root.join("a.forked"), root.join("b.forked"));
    let mut first = launch(marker_a.clone())?;
    forked(marker_a).await?;
    copies(1).await?;
    let mut second = launch(marker_b.clone())?;
    forked(marker_b).await?;
    copies(2).await?;
    // Each copy's shell dies; its subshell, re-parented, is still that copy.
    for shell in [&mut first, &mut second] {
        shell.kill()?;
        shell.wait()?;
    }
    copies(2).await?;
    let groups = [first.id(), second.id()];
    for (left, group) in [1, 0].into_iter().zip(groups) {
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group as i32),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        copies(left).await?;
    }
    Ok(())
}

//! `draas bench --soak N`: what Redis holds after N Ping commands, and what stays bounded.
//!
//! N Pings (closed loop, `--in-flight`) through the bus or the API, with `--workers` real
//! worker processes on a fresh prefix, in [`CHECKPOINTS`] steps. After each step: `used_memory`,
//! the prefix's keys by kind (one paged SCAN), every stream's XLEN and `MEMORY USAGE` against
//! its documented cap (commands hold only unacked work; replies `REPLIES_MAXLEN`; events
//! `EVENTS_MAXLEN`; audit the API's `audit_maxlen`; dead letters `DLQ_MAXLEN`), and the expiry
//! of the oldest and newest operation record (and of a sample: none may lack a TTL).
//! Operation records grow with N until they expire `OPERATION_RETENTION_SECS` after they
//! finish, so the bound printed is bytes per command × rate × retention.
//!
//! Pings write no instance events, and only the API path audits; so afterwards the events
//! stream (`Store::append_event`, `--in-flight` calls pipelined on one connection) and the
//! audit stream (`Store::append_audit`, batches of 100) are written max(N, 3 × cap) times,
//! with XLEN and memory per step. The run's keys are removed at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use draas_api::dispatch::Dispatcher;
use draas_bus::connect::Conn as Redis;
use draas_bus::store::{AuditEntry, EVENTS_MAXLEN, OPERATION_RETENTION_SECS};
use draas_bus::streams::{DLQ_MAXLEN, REPLIES_MAXLEN};
use draas_bus::{Store, clock, connect};
use draas_protocol::{Event, EventKind, InstanceState, Keyspace, Platform, Timestamp};
use futures::{StreamExt, TryStreamExt};
use redis::{AsyncCommands, ScanOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{BenchArgs, Caller, PathKind, closed_loop, forget_keys, spawn_self, stop};

/// Steps of the soak and of each stream fill.
const CHECKPOINTS: usize = 10;
/// Operation records whose TTL is read at each checkpoint.
const TTL_SAMPLE: usize = 1000;
/// Audit entries per `append_audit` call (the API's writer batches the same way).
const AUDIT_BATCH: usize = 100;

/// Runs the soak and prints the JSON (stdout) and the tables (stderr).
pub async fn run(args: &BenchArgs, n: usize) -> anyhow::Result<()> {
    if n < CHECKPOINTS {
        bail!("--soak takes at least {CHECKPOINTS} commands, got {n}");
    }
    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let scratch = std::env::temp_dir().join(&prefix);
    let mut children = Vec::new();
    let common = format!("--redis-url {} --prefix {prefix}", args.redis_url);
    for i in 0..args.workers {
        let line = format!("worker {common} --concurrency 256 --data-dir");
        let (log, w) = (format!("worker-{i}"), line.split(' ').collect::<Vec<_>>());
        let data = scratch.join(&log);
        children.push(spawn_self(&w, Some(&data), &scratch, &log, args.metrics)?);
    }
    let halt = CancellationToken::new();
    let result = soak(args, n, &prefix, &mut children, halt.clone()).await;
    halt.cancel();
    for child in &mut children {
        stop(child).await;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(error) = forget_keys(&args.redis_url, &prefix).await {
        eprintln!("could not remove the run's keys ({prefix}:*): {error}");
    }
    let report = result?;
    print_tables(&report);
    let report = json!({ "soak": report });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The soak in the run's keyspace: the checkpoints, the bound, the two fills.
async fn soak(
    args: &BenchArgs,
    n: usize,
    prefix: &str,
    children: &mut Vec<tokio::process::Child>,
    halt: CancellationToken,
) -> anyhow::Result<Value> {
    let keys = Keyspace::new(prefix);
    let store = Store::new(connect::shared(&args.redis_url).await?, keys.clone());
    super::wait_for_workers(&store, args.workers).await?;
    let in_flight = args.in_flight.max(1);
    let caller = Arc::new(match args.path {
        PathKind::Bus => {
            let node = format!("bench-{}", std::process::id());
            let ttl = Duration::from_secs(10);
            let d = Dispatcher::start(store.clone(), &args.redis_url, &node, ttl, false, halt);
            Caller::Bus(d.await?)
        }
        PathKind::Api => {
            let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let common = format!("--redis-url {} --prefix {prefix}", args.redis_url);
            let line = format!("api {common} --listen {listen} --no-rate-limit --auth none");
            let scratch = std::env::temp_dir().join(prefix);
            let w: Vec<&str> = line.split(' ').collect();
            children.push(spawn_self(&w, None, &scratch, "api", args.metrics)?);
            let (url, http) = (format!("http://{listen}"), reqwest::Client::builder());
            let http = http.pool_max_idle_per_host(in_flight).build()?;
            super::wait_for_api(&http, &url).await?;
            Caller::Api { http, url }
        }
    });
    let mut redis = store.conn();
    let mut config = redis::cmd("CONFIG");
    config.arg(&["GET", "stream-node-max-entries"][..]);
    let node: Option<(String, String)> = config.query_async(&mut redis).await.unwrap_or(None);
    let node = node.and_then(|(_, v)| v.parse().ok()).unwrap_or(100);
    let audit_cap = draas_api::ApiConfig::new(args.redis_url.as_str()).audit_maxlen as u64;
    let caps = (in_flight as u64, audit_cap, node);
    let base = used_memory(&mut redis).await?;
    let (mut done, mut busy_s, mut oldest) = (0, 0.0, None);
    let (mut steps, mut memory) = (Vec::new(), vec![(0, base)]);
    let cap = Duration::from_secs_f64(args.time_cap);
    for step in 1..=CHECKPOINTS {
        let jobs = n * step / CHECKPOINTS - n * (step - 1) / CHECKPOINTS;
        let t = closed_loop(&caller, jobs, in_flight, cap).await?;
        done += t["completed"].as_u64().unwrap_or(0);
        busy_s += t["elapsed_s"].as_f64().unwrap_or(0.0);
        let mut row = snapshot(&mut redis, &keys, caps, &mut oldest).await?;
        (row["commands"], row["per_s"]) = (json!(done), t["jobs_per_s"].clone());
        row["p99_ms"] = t["latency_ms"]["p99"].clone();
        memory.push((done, row["used_memory"].as_u64().unwrap_or(0)));
        steps.push(row);
    }
    // Bytes per command over the whole run, and over the second half (the reply stream is at
    // its cap by then, so only the records grow).
    let per = |(n0, m0): (u64, u64), (n1, m1): (u64, u64)| {
        m1.saturating_sub(m0) as f64 / n1.saturating_sub(n0).max(1) as f64
    };
    let (per_command, last) = (per(memory[0], memory[CHECKPOINTS]), &steps[CHECKPOINTS - 1]);
    let rate = done as f64 / busy_s.max(1e-9);
    let bound_gb = |r: f64| per_command * r * OPERATION_RETENTION_SECS as f64 / 1e9;
    let each = &last["newest_op"]["memory_bytes"];
    let half = per(memory[CHECKPOINTS / 2], memory[CHECKPOINTS]);
    let bound = bound_gb(rate);
    let oldest = &last["oldest_op"];
    let (at, after) = (&oldest["expires_at"], &oldest["expires_after_completion_s"]);
    let (b10, b100, retention) = (bound_gb(10.0), bound_gb(100.0), OPERATION_RETENTION_SECS);
    let summary = format!(
        "operation records: {each} B each (MEMORY USAGE); per command {per_command:.0} B (used_memory delta / N), {half:.0} B over the second half; they expire {retention} s after they finish (the oldest at {at}, {after} s after it finished); at the measured {rate:.0} cmds/s for the retention: at most {bound:.0} GB; at 10/s {b10:.1} GB, at 100/s {b100:.1} GB"
    );
    let operations = json!({
        "summary": summary, "retention_s": retention, "record_bytes": each, "rate_per_s": rate,
        "used_memory_before": base, "used_memory_delta_bytes": memory[CHECKPOINTS].1.saturating_sub(base),
        "bytes_per_command": per_command, "bytes_per_command_second_half": half,
        "bound_gb_at_measured_rate": bound,
        "bound_gb_at": {"1/s": bound_gb(1.0), "10/s": b10, "100/s": b100, "1000/s": bound_gb(1e3)},
    });
    let total = |cap: u64| n.max(3 * cap as usize);
    let events = fill(&store, None, total(EVENTS_MAXLEN as u64), in_flight).await?;
    let audit = fill(&store, Some(audit_cap), total(audit_cap), in_flight).await?;
    Ok(json!({
        "path": if args.path == PathKind::Api { "api" } else { "bus" },
        "settings": {"commands": n, "workers": args.workers, "in_flight": in_flight, "checkpoints": CHECKPOINTS, "stream_node_max_entries": node},
        "caps": {"commands": "unacked work only (<= in_flight)", "replies": REPLIES_MAXLEN, "events": EVENTS_MAXLEN, "audit": audit_cap, "dlq": DLQ_MAXLEN},
        "checkpoints": steps,
        "operations": operations,
        "events_fill": events,
        "audit_fill": audit,
    }))
}

/// The cap of a stream of `kind`, `None` for keys that are not streams: the commands in
/// flight for command streams, else the documented `MAXLEN ~` plus one macro node
/// (`stream-node-max-entries`), since `~` trims whole nodes.
fn cap(kind: &str, (in_flight, audit, node): (u64, u64, u64)) -> Option<u64> {
    match kind {
        "commands" => Some(in_flight),
        "replies" => Some(REPLIES_MAXLEN as u64 + node),
        "events" => Some(EVENTS_MAXLEN as u64 + node),
        "audit" => Some(audit + node),
        "dlq" => Some(DLQ_MAXLEN as u64 + node),
        _ => None,
    }
}

/// The kind of a key after the prefix: `op`, `commands`, `worker`, …
fn kind(rest: &str) -> &str {
    match rest.split_once(':') {
        Some(("{acl-probe}", _)) => "acl-probe",
        Some((tag, tail)) if tag.starts_with('{') => match tail.split_once(':') {
            Some(("worker", _)) => "worker",
            _ => tail.rsplit(':').next().unwrap_or(tail),
        },
        Some((head, _)) => head,
        None => rest,
    }
}

/// One checkpoint: memory, keys by kind, streams against their caps, operation expiry.
async fn snapshot(
    redis: &mut Redis,
    keys: &Keyspace,
    caps: (u64, u64, u64),
    oldest: &mut Option<String>,
) -> anyhow::Result<Value> {
    let prefix = format!("{}:", keys.prefix());
    let (mut counts, mut ops) = (BTreeMap::<String, u64>::new(), Vec::new());
    let dlq = keys.dead_letters(Platform::Process);
    let mut streams = vec![keys.events(), keys.audit(), dlq];
    let scan = ScanOptions::default().with_pattern(format!("{prefix}*"));
    let scan = scan.with_count(10_000);
    let all: Vec<String> = redis.scan_options(scan).await?.try_collect().await?;
    for key in all {
        let k = kind(&key[prefix.len()..]).to_owned();
        if k == "op" {
            ops.push(key);
        } else if cap(&k, caps).is_some() && !streams.contains(&key) {
            streams.push(key);
        }
        *counts.entry(k).or_default() += 1;
    }
    // Per kind: streams, their XLEN and memory summed, the longest, the cap.
    let mut kinds = BTreeMap::<String, [u64; 5]>::new();
    for key in streams {
        let kind = kind(&key[prefix.len()..]).to_owned();
        let max = cap(&kind, caps).context("a stream key")?;
        let (xlen, bytes) = stream(redis, &key).await?;
        let row = kinds.entry(kind).or_insert([0, 0, 0, 0, max]);
        (row[0], row[1], row[2]) = (row[0] + 1, row[1] + xlen, row[2] + bytes.unwrap_or(0));
        row[3] = row[3].max(xlen);
    }
    let mut listed = serde_json::Map::new();
    for (kind, [n, xlen, bytes, longest, cap]) in kinds {
        let row = json!({"streams": n, "xlen": xlen, "memory_bytes": bytes, "longest": longest, "cap": cap, "within_cap": longest <= cap});
        listed.insert(kind, row);
    }
    ops.sort_unstable();
    if oldest.is_none() {
        oldest.clone_from(&ops.first().cloned());
    }
    let mut pipe = redis::pipe();
    for key in ops.iter().step_by((ops.len() / TTL_SAMPLE).max(1)) {
        pipe.cmd("TTL").arg(key);
    }
    let ttls: Vec<i64> = match ops.is_empty() {
        true => Vec::new(),
        false => pipe.query_async(redis).await?,
    };
    let count = |f: &dyn Fn(i64) -> bool| ttls.iter().filter(|t| f(**t)).count();
    let retention = OPERATION_RETENTION_SECS as i64;
    Ok(json!({
        "used_memory": used_memory(redis).await?, "keys": counts, "streams": listed,
        "oldest_op": match oldest { Some(key) => expiry(redis, key).await?, None => Value::Null },
        "newest_op": match ops.last() { Some(key) => expiry(redis, key).await?, None => Value::Null },
        "ttl_sample": {
            "sampled": ttls.len(), "without_ttl": count(&|t| t == -1), "gone": count(&|t| t == -2),
            "over_retention": count(&|t| t > retention), "max_s": ttls.iter().max(),
        },
    }))
}

/// An operation record's expiry: its TTL, when it expires (`PEXPIRETIME`), and how long after
/// it finished, which must be the retention.
async fn expiry(redis: &mut Redis, key: &str) -> anyhow::Result<Value> {
    let mut pipe = redis::pipe();
    pipe.cmd("PTTL").arg(key).cmd("PEXPIRETIME").arg(key);
    pipe.cmd("GET").arg(key);
    pipe.cmd("MEMORY").arg(&["USAGE", key, "SAMPLES", "0"][..]);
    type Reply = (i64, i64, Option<String>, Option<u64>);
    let (pttl, at, record, bytes): Reply = pipe.query_async(redis).await?;
    let mut fields = match record {
        Some(record) => draas_protocol::Operation::record_fields(&record)
            .map_err(|e| anyhow::anyhow!("{key}: {e}"))?,
        None => Default::default(),
    };
    let state = fields.remove("state");
    let completed = fields.get("completed").and_then(|c| c.parse::<i64>().ok());
    let after = completed.filter(|_| at > 0).map(|c| (at - c) as f64 / 1e3);
    let expires_at = (at > 0).then(|| Timestamp(at as u64).rfc3339());
    Ok(json!({
        "key": key, "state": state, "ttl_s": pttl as f64 / 1e3, "memory_bytes": bytes,
        "expires_at": expires_at, "expires_after_completion_s": after,
    }))
}

/// A stream's XLEN and `MEMORY USAGE` (every node counted; `None` when it does not exist).
async fn stream(redis: &mut Redis, key: &str) -> anyhow::Result<(u64, Option<u64>)> {
    let mut pipe = redis::pipe();
    pipe.cmd("XLEN").arg(key);
    pipe.cmd("MEMORY").arg(&["USAGE", key, "SAMPLES", "0"][..]);
    Ok(pipe.query_async(redis).await?)
}

/// Writes `total` entries to the events stream (`audit` `None`) or the audit stream (capped at
/// `audit`) through the store's own appends, with `in_flight` writers, in [`CHECKPOINTS`]
/// steps; XLEN and memory after each.
async fn fill(
    store: &Store,
    audit: Option<u64>,
    total: usize,
    in_flight: usize,
) -> anyhow::Result<Value> {
    let (key, cap) = match audit {
        None => (store.keys().events(), EVENTS_MAXLEN as u64),
        Some(cap) => (store.keys().audit(), cap),
    };
    let per_call = if audit.is_some() { AUDIT_BATCH } else { 1 };
    let (instance, mut redis) = (uuid::Uuid::now_v7(), store.conn());
    let (mut steps, mut written) = (Vec::new(), 0);
    for step in 1..=CHECKPOINTS {
        let calls = (total * step / CHECKPOINTS - written).div_ceil(per_call);
        let started = Instant::now();
        let append = |_| async move {
            match audit {
                None => store.append_event(&event(instance)).await,
                Some(cap) => store.append_audit(&audit_entries(), cap as usize).await,
            }
        };
        let appends = futures::stream::iter(0..calls).map(append);
        appends
            .buffer_unordered(in_flight)
            .try_collect::<()>()
            .await?;
        written += calls * per_call;
        let per_s = (calls * per_call) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let (xlen, bytes) = stream(&mut redis, &key).await?;
        let step = json!({"written": written, "xlen": xlen, "memory_bytes": bytes, "per_s": per_s});
        steps.push(step);
    }
    let max_xlen = steps.iter().filter_map(|s| s["xlen"].as_u64()).max();
    Ok(json!({"key": key, "cap": cap, "written": written, "max_xlen": max_xlen, "steps": steps}))
}

/// A state change as a worker writes it (tenant filled in, so no record is read).
fn event(instance: uuid::Uuid) -> Event {
    let (from, to) = (InstanceState::Starting, InstanceState::Running);
    let reason = "ready".to_owned();
    Event {
        v: draas_protocol::SCHEMA_VERSION,
        instance_id: instance,
        platform: Platform::Process,
        at: clock::now(),
        command_id: Some(uuid::Uuid::now_v7()),
        source: "bench-soak".to_owned(),
        actor: Some("anonymous".to_owned()),
        tenant: Some("default".to_owned()),
        kind: EventKind::StateChanged { from, to, reason },
    }
}

/// [`AUDIT_BATCH`] audited pings as the API writes them.
fn audit_entries() -> Vec<AuditEntry> {
    let entry = || AuditEntry {
        id: String::new(),
        at: clock::now().millis(),
        actor: "anonymous".to_owned(),
        tenant: Some("default".to_owned()),
        method: "POST".to_owned(),
        route: Some("/api/v1/platforms/{platform}/ping".to_owned()),
        path: "/api/v1/platforms/process/ping".to_owned(),
        status: 200,
        operation: Some(uuid::Uuid::now_v7().to_string()),
    };
    (0..AUDIT_BATCH).map(|_| entry()).collect()
}

/// Redis's `used_memory`.
async fn used_memory(redis: &mut Redis) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO memory has no used_memory")
}

/// The checkpoints, the fills and the bound, for people (stderr).
fn print_tables(r: &Value) {
    let mb = |v: &Value| v.as_f64().unwrap_or(0.0) / 1e6;
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let path = r["path"].as_str().unwrap_or("?");
    eprintln!(
        "soak, {path} path: commands | cmds/s | p99 ms | used_memory MB | op records | per stream kind: XLEN (MB) ok|OVER its cap | TTL of the oldest / newest op (s) | sampled records without TTL"
    );
    for row in r["checkpoints"].as_array().into_iter().flatten() {
        let (c, p, p99) = (f(&row["commands"]), f(&row["per_s"]), f(&row["p99_ms"]));
        let (m, ops) = (
            mb(&row["used_memory"]),
            row["keys"]["op"].as_u64().unwrap_or(0),
        );
        let mut line = format!("{c:>9} | {p:>6.0} | {p99:>6.1} | {m:>7.1} | {ops:>8}");
        for (kind, s) in row["streams"].as_object().into_iter().flatten() {
            let ok = ["OVER", "ok"][usize::from(s["within_cap"] == true)];
            let (xlen, m) = (&s["xlen"], mb(&s["memory_bytes"]));
            line += &format!(" | {kind} {xlen} ({m:.1}) {ok}");
        }
        let (old, new) = (f(&row["oldest_op"]["ttl_s"]), f(&row["newest_op"]["ttl_s"]));
        let t = &row["ttl_sample"];
        let (without, sampled) = (&t["without_ttl"], &t["sampled"]);
        eprintln!("{line} | {old:.0} / {new:.0} | {without} of {sampled}");
    }
    for name in ["events_fill", "audit_fill"] {
        let mut line = format!("{name}, cap ~{} (written→XLEN):", r[name]["cap"]);
        for s in r[name]["steps"].as_array().into_iter().flatten() {
            let (w, x, m) = (&s["written"], &s["xlen"], mb(&s["memory_bytes"]));
            line += &format!(" {w}→{x} ({m:.1} MB)");
        }
        eprintln!("{line}");
    }
    eprintln!("{}", r["operations"]["summary"].as_str().unwrap_or(""));
}

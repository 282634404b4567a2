//! Liveness by the heartbeat TTL each worker registered: a worker records its TTL; `ops`
//! (library, CLI, REST) judges owners by it rather than by a TTL of its own, and every entry
//! left alone because its owner looks live is reported with count and reason.

use std::time::{Duration, Instant};

use draas_bus::admin::{Admin, NoProgress, Selection, SkipReason, StreamRef};
use draas_bus::store::TtlSource;
use draas_bus::{Store, connect};
use draas_protocol::{OperationState, Platform};
use serde_json::{Value, json};

use super::common::{
    self, ApiNode, RedisServer, WorkerNode, fresh_keys, pending_count, scratch, status_json,
    wait_until,
};
use super::{ghost_pings, ops_cli, terminal};

/// The TTL the fake "ghost" worker registers: shorter than ops' 10 s fallback.
const GHOST_TTL_MS: u64 = 4000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_judged_by_their_registered_ttl_and_skips_are_reported() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("ttl");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.commands(Platform::Process);
    let envs = ghost_pings(&store, &mut conn, 2).await?;
    let admin = Admin::new(store.clone(), Duration::from_secs(10));

    // A real worker records the TTL it runs with. Its sweeper would wait a minute, so only an
    // operator action moves the ghost's entries.
    let worker = WorkerNode::start_tuned(
        &redis.url,
        &keys,
        common::runtime_binary(),
        scratch("w"),
        |c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.heartbeat_ttl = Duration::from_secs(3);
            c.lease = Duration::from_secs(60);
            c.claim_idle = Duration::from_secs(60);
        },
    )
    .await?;
    let live = wait_until(|| async {
        let regs = admin.registrations(Platform::Process).await.ok()?;
        regs.into_iter().find(|r| r.live)
    })
    .await?;
    assert_eq!(
        (live.ttl_ms, live.ttl_source),
        (Some(3000), TtlSource::Registered),
        "{live:?}"
    );
    let w = live.consumer.clone();

    // The ghost registers like a worker with a short TTL. Each check below beats first, so the
    // ghost is live for it however slow the machine is.
    let beat = || async {
        store
            .heartbeat(
                Platform::Process,
                "ghost",
                "ghost-node",
                draas_bus::clock::now(),
                GHOST_TTL_MS,
                &Default::default(),
            )
            .await
    };

    // --json: nothing changed, both entries skipped, with the reason.
    beat().await?;
    let (ok, out, err) = ops_cli(&redis, &keys, &["--json", "retry", "--all"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out)?;
    assert_eq!(
        (report["changed"].clone(), report["skipped"].clone()),
        (json!(0), json!(2)),
        "{report}"
    );
    let reasons = report["skipReasons"].as_array().expect("skipReasons");
    assert_eq!(reasons.len(), 1, "{report}");
    assert_eq!(
        (
            reasons[0]["reason"].clone(),
            reasons[0]["consumer"].clone(),
            reasons[0]["count"].clone()
        ),
        (json!("ownerLive"), json!("ghost"), json!(2)),
        "{report}"
    );
    let message = reasons[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("registered heartbeat TTL of 4000 ms"),
        "{message}"
    );
    assert_eq!(pending_count(&mut conn, &stream).await, 2);

    // The table says it too.
    beat().await?;
    let (ok, table, err) = ops_cli(&redis, &keys, &["retry", "--all", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("0 changed, 2 skipped") && table.contains("skipped 2: owner ghost is live"),
        "{table}"
    );

    // REST returns the same report; claim skips a live owner's entries as retry does.
    beat().await?;
    let api = ApiNode::start(&redis.url, &keys).await?;
    beat().await?;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/admin/claim", api.url))
        .json(&json!({"platform": "process", "all": true, "to": w}))
        .send()
        .await?;
    let (status, report) = status_json(resp).await;
    assert_eq!(
        (status, report["changed"].clone(), report["skipped"].clone()),
        (200, json!(0), json!(2)),
        "{report}"
    );
    assert_eq!(report["skipReasons"][0]["reason"], "ownerLive", "{report}");
    let lib = admin
        .retry(
            &Selection {
                target: Some(StreamRef::platform(Platform::Process)),
                all: true,
                ..Selection::default()
            },
            false,
            true,
            &NoProgress,
        )
        .await?;
    assert_eq!(lib.skipped, 2, "{lib:?}");
    assert_eq!(lib.skip_reasons[0].reason, SkipReason::OwnerLive);

    // The ghost stops beating. Once its own 4 s TTL has passed it is dead, although ops' 10 s
    // fallback would still call it live: retry takes its entries.
    let last_beat = Instant::now();
    beat().await?;
    wait_until(|| async {
        let live = admin.live_consumers(Platform::Process).await.ok()?;
        (!live.iter().any(|c| c == "ghost")).then_some(())
    })
    .await?;
    let (ok, out, err) = ops_cli(
        &redis,
        &keys,
        &[
            "--worker-ttl",
            "10s",
            "--json",
            "retry",
            "--all",
            "--dry-run",
        ],
    );
    assert!(ok, "{err}");
    let judged_by_override: Value = serde_json::from_str(&out)?;
    let (ok, out, err) = ops_cli(&redis, &keys, &["--json", "retry", "--all"]);
    assert!(ok, "{err}");
    let elapsed = last_beat.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "the check must run within ops' fallback TTL to mean anything: {elapsed:?}"
    );
    assert_eq!(
        judged_by_override["skipped"], 2,
        "an explicit --worker-ttl judges everyone by it: {judged_by_override}"
    );
    let report: Value = serde_json::from_str(&out)?;
    assert_eq!(
        (report["changed"].clone(), report["skipped"].clone()),
        (json!(2), json!(0)),
        "{report}"
    );
    // The live worker runs each once.
    for env in &envs {
        let op = terminal(&store, env.command_id).await?;
        assert_eq!(
            (op.state, op.attempts, op.worker.as_deref()),
            (OperationState::Succeeded, 1, Some(w.as_str())),
            "{op:?}"
        );
    }

    // The real worker dies: dead by its own 3 s TTL, well before a 10 s one.
    let killed = Instant::now();
    worker.crash();
    let dead = wait_until(|| async {
        let regs = admin.registrations(Platform::Process).await.ok()?;
        regs.into_iter().find(|r| r.consumer == w && !r.live)
    })
    .await?;
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "{dead:?} after {:?}",
        killed.elapsed()
    );
    assert!(
        dead.explain().contains("expired") || dead.explain().contains("past"),
        "{dead:?}"
    );
    api.shutdown().await;
    Ok(())
}

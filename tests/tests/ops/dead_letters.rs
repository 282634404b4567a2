//! Dead letters replayed with each effect happening exactly once, purge with a dry run first,
//! and trimming that never touches pending or undelivered entries.

use std::time::Duration;

use draas_bus::admin::{
    Admin, DlqSelection, NoProgress, Payload, PendingQuery, StreamRef, TrimTarget,
};
use draas_bus::{Store, connect};
use draas_protocol::keys::WORKER_GROUP;
use draas_protocol::{Command, Keyspace, OperationState, Platform};
use serde_json::{Value, json};

use super::common::{
    RedisServer, System, counting_runtime, launches, pending_count, scratch, wait_until,
};
use super::{dead_letter, envelope, ghost_pings, ops_cli, terminal, xlen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_once_and_purge_after_a_dry_run() -> anyhow::Result<()> {
    let log = scratch("launches").join("launches.log");
    let sys = System::start_tuned(counting_runtime(&log, 0), |c| {
        c.claim_idle = Duration::from_secs(60);
        c.lease = Duration::from_secs(60);
    })
    .await?;
    let store = Store::new(connect::shared(&sys.redis.url).await?, sys.keys.clone());
    let admin = Admin::new(store.clone(), Duration::from_secs(10));
    let mut conn = sys
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await?;
    let dlq = sys.keys.dead_letters(Platform::Process);
    let id = sys.create("replayed").await;
    let instance: uuid::Uuid = id.parse()?;

    // A start whose record is pending, a ping whose record expired, and a ping that already ran.
    let (start, start_op) = envelope(Some(instance), Command::Start);
    let mut pipe = redis::pipe();
    store.put_operation_in(&mut pipe, &start_op);
    pipe.exec_async(&mut conn).await?;
    let (expired, _) = envelope(None, Command::Ping);
    let (ran, ran_op) = envelope(None, Command::Ping);
    store
        .submit(&sys.keys.commands(Platform::Process), &ran, &ran_op)
        .await?;
    assert_eq!(terminal(&store, ran.command_id).await?.attempts, 1);
    for env in [&start, &expired, &ran] {
        dead_letter(&store, env).await?;
    }
    let page = admin.dlq_list(Platform::Process, None, 10).await?;
    assert_eq!(page.length, 3);
    assert!(
        matches!(page.letters[0].payload, Payload::Command { ref kind, .. } if kind == "start")
    );
    let letter_ids: Vec<String> = page.letters.iter().map(|l| l.id.clone()).collect();
    let shown = admin.dlq_show(Platform::Process, &letter_ids[0]).await?;
    assert_eq!(
        shown.envelope.as_ref().unwrap()["commandId"],
        start.command_id.to_string()
    );

    // Dry run: nothing is enqueued, nothing launched.
    let all = DlqSelection {
        platform: Platform::Process,
        ids: Vec::new(),
        all: true,
    };
    let plan = admin.dlq_replay(&all, true, &NoProgress).await?;
    assert_eq!((plan.matched, plan.changed), (3, 0), "{plan:?}");
    assert_eq!(xlen(&mut conn, &dlq).await, 3);
    assert_eq!(launches(&log, &id), 0);

    // Through REST: each effect happens exactly once.
    let (status, report) = sys
        .post_json(
            "/api/v1/admin/dlq/replay",
            &json!({"platform": "process", "all": true}),
        )
        .await;
    assert_eq!(
        (status, report["changed"].clone()),
        (200, json!(3)),
        "{report}"
    );
    sys.wait_state(&id, "running").await;
    for env in [&start, &expired, &ran] {
        let op = terminal(&store, env.command_id).await?;
        assert_eq!(
            (op.state, op.attempts),
            (OperationState::Succeeded, 1),
            "{op:?}"
        );
    }
    assert_eq!(launches(&log, &id), 1, "the instance launched once");
    assert_eq!(xlen(&mut conn, &dlq).await, 0);

    // The same start dead-lettered again and replayed: answered from its record, not re-run.
    dead_letter(&store, &start).await?;
    let again = admin.dlq_replay(&all, false, &NoProgress).await?;
    assert_eq!(again.changed, 1, "{again:?}");
    assert!(again.items[0].detail.contains("not run again"), "{again:?}");
    let stream = sys.keys.commands(Platform::Process);
    wait_until(|| async { (xlen(&mut conn.clone(), &stream).await == 0).then_some(()) }).await?;
    assert_eq!(
        store.operation(start.command_id).await?.unwrap().attempts,
        1
    );
    assert_eq!(launches(&log, &id), 1, "still launched once");

    // Purge: a dry run first (nothing removed), a refusal without --yes, then for real.
    for _ in 0..3 {
        dead_letter(&store, &envelope(None, Command::Ping).0).await?;
    }
    let (ok, out, err) = ops_cli(
        &sys.redis,
        &sys.keys,
        &["--json", "dlq", "purge", "--all", "--dry-run"],
    );
    assert!(ok, "{err}");
    let plan: Value = serde_json::from_str(&out)?;
    assert_eq!(
        (plan[0]["matched"].clone(), plan[0]["changed"].clone()),
        (json!(3), json!(0)),
        "{plan}"
    );
    assert_eq!(xlen(&mut conn, &dlq).await, 3, "a dry run removes nothing");
    let (ok, _, err) = ops_cli(&sys.redis, &sys.keys, &["dlq", "purge", "--all"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert_eq!(xlen(&mut conn, &dlq).await, 3);
    let (ok, table, err) = ops_cli(&sys.redis, &sys.keys, &["dlq", "list"]);
    assert!(ok && table.contains("out of deliveries"), "{table}{err}");
    let (ok, out, err) = ops_cli(
        &sys.redis,
        &sys.keys,
        &["--json", "dlq", "purge", "--all", "--yes"],
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out)?["changed"], 3, "{out}");
    assert_eq!(xlen(&mut conn, &dlq).await, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_never_touches_pending_or_undelivered_entries() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("trim");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let admin = Admin::new(store.clone(), Duration::from_secs(10));
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.commands(Platform::Process);
    // Two pending entries; one acked but never deleted (a crash between XACK and XDEL).
    let envs = ghost_pings(&store, &mut conn, 3).await?;
    let pending = admin
        .pending(&PendingQuery {
            target: StreamRef::platform(Platform::Process),
            consumer: None,
            min_idle_ms: 0,
            count: 10,
            after: None,
        })
        .await?;
    let acked = pending.rows[1].id.clone();
    let _: u64 = redis::cmd("XACK")
        .arg(&stream)
        .arg(WORKER_GROUP)
        .arg(&acked)
        .query_async(&mut conn)
        .await?;
    // One entry nobody has read yet.
    let (undelivered, op) = envelope(None, Command::Ping);
    store.submit(&stream, &undelivered, &op).await?;
    assert_eq!(envs.len(), 3);

    let plan = admin
        .trim(Platform::Process, &TrimTarget::Commands, true, &NoProgress)
        .await?;
    assert_eq!(plan[0].matched, 1, "{plan:?}");
    assert_eq!(xlen(&mut conn, &stream).await, 4);
    let done = admin
        .trim(Platform::Process, &TrimTarget::Commands, false, &NoProgress)
        .await?;
    assert_eq!(
        (done[0].changed, done[0].items[0].id.clone()),
        (1, acked),
        "{done:?}"
    );
    assert_eq!(
        xlen(&mut conn, &stream).await,
        3,
        "two pending and one undelivered remain"
    );
    assert_eq!(pending_count(&mut conn, &stream).await, 2);

    // The DLQ by length: the oldest letters go.
    for _ in 0..5 {
        dead_letter(&store, &envelope(None, Command::Ping).0).await?;
    }
    let dlq = keys.dead_letters(Platform::Process);
    let target = TrimTarget::Dlq {
        maxlen: Some(2),
        older_than_ms: None,
    };
    let done = admin
        .trim(Platform::Process, &target, false, &NoProgress)
        .await?;
    assert_eq!(done[0].changed, 3);
    assert_eq!(xlen(&mut conn, &dlq).await, 2);
    // Prune keeps the ghost: it still holds pending entries.
    let kept = admin.prune(Platform::Process, 0, false).await?;
    assert!(
        kept.iter()
            .flat_map(|r| &r.items)
            .all(|i| i.outcome == "kept"),
        "{kept:?}"
    );
    assert!(
        admin
            .consumers(Platform::Process)
            .await?
            .iter()
            .any(|c| c.consumer == "ghost")
    );
    Ok(())
}

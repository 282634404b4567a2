//! Operator tooling on real Redis: pending entries made by a consumer that died ("ghost"),
//! inspected decoded, claimed to a live worker or retried so they run exactly once; dead
//! letters replayed with each effect happening once; purge dry-run first; prune and trim that
//! never lose pending work. Through the library, the REST admin endpoints and `draas ops`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{
    ApiNode, RedisServer, System, WorkerNode, counting_runtime, launches, pending_count, scratch,
    status_json, wait_until,
};
use draas_bus::admin::{
    Admin, DlqSelection, NoProgress, Payload, PendingQuery, Selection, StreamRef, TrimTarget,
};
use draas_bus::{Store, connect};
use draas_protocol::keys::WORKER_GROUP;
use draas_protocol::{
    Command, CommandEnvelope, Keyspace, Operation, OperationState, Platform, codec,
};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamId;
use serde_json::{Value, json};

/// The `draas` binary built next to the test binaries (`cargo build --workspace` builds it).
fn draas_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("draas");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

/// Runs `draas ops --redis-url … --prefix … <args>` with stdin closed (not a terminal).
fn ops_cli(redis: &RedisServer, keys: &Keyspace, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(draas_binary())
        .args(["ops", "--redis-url", &redis.url, "--prefix", keys.prefix()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run draas");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn envelope(instance: Option<uuid::Uuid>, command: Command) -> (CommandEnvelope, Operation) {
    let env = CommandEnvelope::new(
        Platform::Process,
        instance,
        command,
        draas_bus::clock::now(),
    );
    let op = Operation::pending(
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
async fn ghost_pings(
    store: &Store,
    conn: &mut MultiplexedConnection,
    n: usize,
) -> anyhow::Result<Vec<CommandEnvelope>> {
    let stream = store.keys().commands(Platform::Process);
    draas_bus::streams::ensure_group(conn, &stream).await?;
    let mut envs = Vec::new();
    for _ in 0..n {
        let (env, op) = envelope(None, Command::Ping);
        store.submit(&stream, &env, &op).await?;
        envs.push(env);
    }
    ghost_read(conn, &stream).await?;
    Ok(envs)
}

async fn ghost_read(conn: &mut MultiplexedConnection, stream: &str) -> anyhow::Result<()> {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(WORKER_GROUP)
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

/// Puts `env` in the platform's dead-letter stream the way the sweeper does.
async fn dead_letter(store: &Store, env: &CommandEnvelope) -> anyhow::Result<()> {
    let entry = StreamId {
        id: "0-1".into(),
        map: HashMap::from([("m".to_owned(), redis::Value::BulkString(codec::encode(env)))]),
        ..StreamId::default()
    };
    let stream = store.keys().commands(Platform::Process);
    store
        .dead_letter(
            Platform::Process,
            &stream,
            &entry,
            "test: out of deliveries",
            4,
        )
        .await?;
    Ok(())
}

async fn terminal(store: &Store, id: uuid::Uuid) -> anyhow::Result<Operation> {
    wait_until(|| async {
        let op = store.operation(id).await.ok()??;
        op.state.is_terminal().then_some(op)
    })
    .await
}

async fn xlen(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_are_inspected_then_claimed_to_a_live_worker() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("claim");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.commands(Platform::Process);
    let envs = ghost_pings(&store, &mut conn, 3).await?;
    // Bytes no version of DRaaS wrote, pending too.
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("m")
        .arg("not msgpack")
        .query_async(&mut conn)
        .await?;
    ghost_read(&mut conn, &stream).await?;
    let api = ApiNode::start(&redis.url, &keys).await?;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, url) = (http.clone(), api.url.clone());
        async move { status_json(http.get(format!("{url}{path}")).send().await.unwrap()).await }
    };
    let post = |path: &'static str, body: Value| {
        let (http, url) = (http.clone(), api.url.clone());
        async move {
            status_json(
                http.post(format!("{url}{path}"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };

    // The overview shows them, O(1) per stream.
    let (status, overview) = get("/api/v1/admin/streams?platform=process".into()).await;
    assert_eq!(status, 200, "{overview}");
    let platform_stream = &overview["platforms"][0]["streams"][0];
    assert_eq!(platform_stream["group"]["pending"], 4, "{overview}");
    assert_eq!(platform_stream["oldestPending"]["consumer"], "ghost");

    // Paged and decoded: two pages of two, every row once, the garbage shown as such.
    let (status, first) = get("/api/v1/admin/pending?platform=process&count=2".into()).await;
    assert_eq!(status, 200, "{first}");
    let after = first["next"].as_str().expect("a second page").to_owned();
    let (_, second) = get(format!(
        "/api/v1/admin/pending?platform=process&count=2&after={after}"
    ))
    .await;
    let rows: Vec<&Value> = first["rows"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["rows"].as_array().unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{first} {second}");
    for (row, env) in rows.iter().zip(&envs) {
        assert_eq!(row["consumer"], "ghost");
        assert_eq!(row["consumerLive"], false);
        assert_eq!(row["deliveries"], 1);
        assert_eq!(row["payload"]["status"], "command");
        assert_eq!(row["payload"]["kind"], "ping");
        assert_eq!(
            row["payload"]["correlationId"],
            env.correlation_id.to_string()
        );
        assert_eq!(row["operation"], "pending");
    }
    assert_eq!(rows[3]["payload"]["status"], "undecodable", "{}", rows[3]);

    // Bad requests name the field.
    let (status, body) = get("/api/v1/admin/pending?platform=process&count=x".into()).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (400, json!("count"))
    );
    let (status, body) = post(
        "/api/v1/admin/claim",
        json!({"platform": "process", "all": true}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (400, json!("to"))
    );
    let (status, body) = post(
        "/api/v1/admin/claim",
        json!({"platform": "process", "all": true, "to": "x", "bogus": 1}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (400, json!("bogus")),
        "{body}"
    );
    // A consumer that is not live is refused: nobody would ever run what it is given.
    let (status, body) = post(
        "/api/v1/admin/claim",
        json!({"platform": "process", "all": true, "to": "ghost"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("refused")),
        "{body}"
    );

    // A live worker whose sweeper only reclaims entries idle for 5 s.
    let worker = WorkerNode::start_tuned(
        &redis.url,
        &keys,
        common::runtime_binary(),
        scratch("w"),
        |c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.lease = Duration::from_secs(1);
            c.claim_idle = Duration::from_secs(5);
            c.sweep_interval = Duration::from_millis(200);
        },
    )
    .await?;
    let admin = Admin::new(store.clone(), Duration::from_secs(10));
    let live = wait_until(|| async {
        let live = admin.live_consumers(Platform::Process).await.ok()?;
        live.into_iter().next()
    })
    .await?;

    // Dry run first: nothing moves.
    let ghost_ids = json!(
        rows[..3]
            .iter()
            .map(|r| r["id"].clone())
            .collect::<Vec<_>>()
    );
    let (status, plan) = post(
        "/api/v1/admin/claim",
        json!({"platform": "process", "ids": ghost_ids, "to": live, "dryRun": true}),
    )
    .await;
    assert_eq!(
        (status, plan["matched"].clone(), plan["changed"].clone()),
        (200, json!(3), json!(0)),
        "{plan}"
    );
    let (status, done) = post(
        "/api/v1/admin/claim",
        json!({"platform": "process", "ids": ghost_ids, "to": live}),
    )
    .await;
    assert_eq!((status, done["changed"].clone()), (200, json!(3)), "{done}");
    let page = admin
        .pending(&PendingQuery {
            target: StreamRef::platform(Platform::Process),
            consumer: Some(live.clone()),
            min_idle_ms: 0,
            count: 10,
            after: None,
        })
        .await?;
    assert_eq!(
        page.rows.len(),
        3,
        "the live worker owns them now: {page:?}"
    );

    // The live worker runs each exactly once.
    for env in &envs {
        let op = terminal(&store, env.command_id).await?;
        assert_eq!(
            (op.state, op.attempts),
            (OperationState::Succeeded, 1),
            "{op:?}"
        );
    }
    // Only the garbage entry is left with the ghost; the claimed ones are acked and gone.
    wait_until(|| async { (pending_count(&mut conn.clone(), &stream).await <= 1).then_some(()) })
        .await?;
    worker.shutdown().await;
    api.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_stuck_entries_now_and_never_twice() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("retry");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.commands(Platform::Process);
    let envs = ghost_pings(&store, &mut conn, 5).await?;

    // The CLI shows them decoded.
    let (ok, out, err) = ops_cli(&redis, &keys, &["--json", "pending", "--consumer", "ghost"]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out)?;
    assert_eq!(page["rows"].as_array().unwrap().len(), 5, "{page}");
    let (ok, table, err) = ops_cli(&redis, &keys, &["pending"]);
    assert!(
        ok && table.contains("ghost") && table.contains("ping"),
        "{table}{err}"
    );

    // A worker whose sweeper would wait a minute: only the retry can make them run now.
    let worker = WorkerNode::start_tuned(
        &redis.url,
        &keys,
        common::runtime_binary(),
        scratch("w"),
        |c| {
            c.lease = Duration::from_secs(60);
            c.claim_idle = Duration::from_secs(60);
        },
    )
    .await?;
    let admin = Admin::new(store.clone(), Duration::from_secs(10));
    wait_until(|| async {
        (!admin
            .live_consumers(Platform::Process)
            .await
            .ok()?
            .is_empty())
        .then_some(())
    })
    .await?;
    let ghost = Selection {
        target: Some(StreamRef::platform(Platform::Process)),
        consumer: Some("ghost".into()),
        ..Selection::default()
    };
    let plan = admin.retry(&ghost, false, true, &NoProgress).await?;
    assert_eq!((plan.matched, plan.changed), (5, 0), "{plan:?}");
    assert_eq!(
        pending_count(&mut conn, &stream).await,
        5,
        "a dry run changes nothing"
    );

    // One of them already ran elsewhere (its record is terminal): the retry must not re-run it.
    let first = envs[0].command_id;
    let claim = store
        .claim_operation(
            &Operation::pending(
                first,
                None,
                Platform::Process,
                envs[0].command.kind(),
                envs[0].issued_at,
            ),
            "elsewhere",
            draas_bus::clock::now(),
        )
        .await?;
    assert!(matches!(
        claim,
        draas_bus::store::Claim::Claimed { attempts: 1 }
    ));
    let outcome = draas_protocol::Outcome::Succeeded {
        result: json!({"pong": "elsewhere"}),
    };
    assert!(store.finish_operation(first, "elsewhere", &outcome).await?);

    let done = admin.retry(&ghost, false, false, &NoProgress).await?;
    assert_eq!(done.changed, 5, "{done:?}");
    for env in &envs {
        let op = terminal(&store, env.command_id).await?;
        assert_eq!(
            (op.state, op.attempts),
            (OperationState::Succeeded, 1),
            "{op:?}"
        );
    }
    let op = store.operation(first).await?.unwrap();
    assert_eq!(
        op.worker.as_deref(),
        Some("elsewhere"),
        "answered from the record: {op:?}"
    );
    wait_until(|| async {
        let mut c = conn.clone();
        (pending_count(&mut c, &stream).await == 0 && xlen(&mut c, &stream).await == 0)
            .then_some(())
    })
    .await?;

    // The ghost holds nothing now, so prune may delete it; the live worker is kept.
    let plan = admin.prune(Platform::Process, 0, true).await?;
    let items: Vec<_> = plan.iter().flat_map(|r| &r.items).collect();
    assert!(
        items
            .iter()
            .any(|i| i.id == "ghost" && i.outcome == "would delete"),
        "{items:?}"
    );
    assert!(items.iter().all(|i| i.outcome != "deleted"));
    let (ok, out, err) = ops_cli(&redis, &keys, &["--json", "prune"]);
    assert!(
        !ok && err.contains("--yes"),
        "no confirmation without a terminal: {out}{err}"
    );
    let (ok, out, err) = ops_cli(&redis, &keys, &["prune", "--yes"]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted"), "{out}");
    let consumers = admin.consumers(Platform::Process).await?;
    assert!(
        consumers.iter().all(|c| c.consumer != "ghost"),
        "{consumers:?}"
    );
    assert!(consumers.iter().any(|c| c.live), "{consumers:?}");
    worker.shutdown().await;
    Ok(())
}

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

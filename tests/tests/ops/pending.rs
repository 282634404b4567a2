//! Pending entries left by a consumer that died: inspected (overview, paged and decoded
//! rows), claimed to a live worker, retried so they run now, and never run twice; then prune.

use std::time::Duration;

use draas_bus::admin::{Admin, NoProgress, PendingQuery, Selection, StreamRef};
use draas_bus::{Store, connect};
use draas_protocol::{Keyspace, Operation, OperationState, Platform};
use serde_json::{Value, json};

use super::common::{
    self, ApiNode, RedisServer, WorkerNode, pending_count, scratch, status_json, wait_until,
};
use super::{ghost_pings, ghost_read, ops_cli, terminal, xlen};

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

    // Dry runs first: nothing moves.
    let first_id = rows[0]["id"].as_str().unwrap();
    let (ok, out, err) = ops_cli(
        &redis,
        &keys,
        &["claim", first_id, "--to", &live, "--dry-run"],
    );
    assert!(
        ok && out.contains("would claim") && out.contains("from ghost"),
        "{out}{err}"
    );
    let (ok, out, err) = ops_cli(
        &redis,
        &keys,
        &["claim", "--consumer", "ghost", "--to", "ghost"],
    );
    assert!(!ok && err.contains("not a live"), "{out}{err}");
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
    // For real, through the CLI.
    let ids: Vec<&str> = rows[..3]
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut args = vec!["--json", "claim", "--to", &live];
    args.extend(ids);
    let (ok, out, err) = ops_cli(&redis, &keys, &args);
    assert!(ok, "{err}");
    let done: Value = serde_json::from_str(&out)?;
    assert_eq!(done["changed"], 3, "{done}");
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
    assert!(
        store
            .finish_operation(first, "elsewhere", &outcome, draas_bus::clock::now())
            .await?
    );

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

//! Effectively-once under crashes and competition (real Redis, real processes): reclaiming a
//! dead consumer's entries, never re-running a live owner's, dead letters, NOGROUP and Redis
//! restarts, graceful drain, adoption after a worker restart, dead nodes, restart policy.

mod common;

use common::{
    ApiNode, RedisServer, System, WorkerNode, counting_runtime, fast_recovery, launches,
    pending_count, scratch, sensor_config, wait_until,
};
use draas_bus::{Store, connect};
use draas_protocol::keys::WORKER_GROUP;
use draas_protocol::{Command, CommandEnvelope, Operation, Platform, codec};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_live_owner_is_never_doubled() -> anyhow::Result<()> {
    let log = scratch("launches").join("launches.log");
    let runtime = counting_runtime(&log, 3);
    let sys = System::start_tuned(runtime.clone(), fast_recovery).await?;
    // A second, competing worker on another node with the same eager sweeper.
    let rival = WorkerNode::start_tuned(
        &sys.redis.url,
        &sys.keys,
        runtime,
        scratch("rival"),
        fast_recovery,
    )
    .await?;
    let id = sys.create("slow").await;
    // The start takes 3 s; the sweepers reclaim anything idle for 1 s, every 200 ms.
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    assert_eq!(op["attempts"], 1, "the live owner kept its command: {op}");
    assert_eq!(launches(&log, &id), 1, "launched exactly once");
    rival.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_command_is_reclaimed_and_runs_once() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = draas_protocol::Keyspace::new("reclaim");
    let api = ApiNode::start(&redis.url, &keys).await?;
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    // An instance record, made through the API.
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/v1/instances", api.url))
        .json(&json!({"name": "orphaned", "platform": "process", "config": sensor_config()}))
        .send()
        .await?
        .json()
        .await?;
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse()?;

    // A worker read the start command and died before doing anything with it.
    let stream = keys.commands(Platform::Process);
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    draas_bus::streams::ensure_group(&mut conn, &stream).await?;
    let env = CommandEnvelope::new(
        Platform::Process,
        Some(id),
        Command::Start,
        draas_bus::clock::now(),
    );
    let op = Operation::pending(
        env.command_id,
        Some(id),
        Platform::Process,
        env.command.kind(),
        env.issued_at,
    );
    store.submit(&stream, &env, &op).await?;
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(WORKER_GROUP)
        .arg("ghost")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|_| Value::Null)?;
    assert_eq!(pending_count(&mut conn, &stream).await, 1);

    // A live worker's sweeper takes it over and runs it, once.
    let worker = WorkerNode::start_tuned(
        &redis.url,
        &keys,
        common::runtime_binary(),
        scratch("w"),
        fast_recovery,
    )
    .await?;
    let done = wait_until(|| async {
        let op = store.operation(env.command_id).await.ok()??;
        op.state.is_terminal().then_some(op)
    })
    .await?;
    assert_eq!(
        done.state,
        draas_protocol::OperationState::Succeeded,
        "{done:?}"
    );
    assert_eq!(done.attempts, 1);
    wait_until(|| async { (pending_count(&mut conn.clone(), &stream).await == 0).then_some(()) })
        .await?;
    worker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_stream() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = draas_protocol::Keyspace::new("poison");
    let stream = keys.commands(Platform::Process);
    let dlq = keys.dead_letters(Platform::Process);
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    draas_bus::streams::ensure_group(&mut conn, &stream).await?;

    // Bytes no version of DRaaS wrote.
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("m")
        .arg("not msgpack")
        .query_async(&mut conn)
        .await?;
    // A well-formed command that has already been delivered (to consumers that died) more
    // often than allowed.
    let env = CommandEnvelope::new(
        Platform::Process,
        None,
        Command::Ping,
        draas_bus::clock::now(),
    );
    let op = Operation::pending(
        env.command_id,
        None,
        Platform::Process,
        env.command.kind(),
        env.issued_at,
    );
    store.submit(&stream, &env, &op).await?;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(WORKER_GROUP)
        .arg("ghost")
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await?;
    let entry_id: String = {
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(&mut conn)
            .await?;
        pending.ids.last().unwrap().id.clone()
    };
    for _ in 0..4 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .arg("ghost")
            .arg(0)
            .arg(&entry_id)
            .query_async(&mut conn)
            .await?;
    }

    let worker = WorkerNode::start_tuned(
        &redis.url,
        &keys,
        common::runtime_binary(),
        scratch("w"),
        fast_recovery,
    )
    .await?;
    let letters = wait_until(|| async {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&dlq)
            .arg("-")
            .arg("+")
            .query_async(&mut conn.clone())
            .await
            .ok()?;
        (entries.ids.len() == 2).then_some(entries)
    })
    .await?;
    let reasons: Vec<String> = letters
        .ids
        .iter()
        .map(|e| redis::from_redis_value(e.map["reason"].clone()).unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("undecodable")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("delivered 6 times")),
        "{reasons:?}"
    );
    let letter = letters
        .ids
        .iter()
        .find(|e| {
            e.map.contains_key("deliveries")
                && e.map["entry"] == redis::Value::BulkString(entry_id.clone().into_bytes())
        })
        .unwrap();
    let original: Vec<u8> = redis::from_redis_value(letter.map["orig.m"].clone())?;
    let back: CommandEnvelope = codec::decode(&original)?;
    assert_eq!(
        back.command_id, env.command_id,
        "the dead letter keeps the original fields"
    );
    // The letter and the ack are one MULTI, so nothing is pending once both letters exist;
    // the wait only absorbs a slow machine.
    wait_until(|| async { (pending_count(&mut conn.clone(), &stream).await == 0).then_some(()) })
        .await?;
    // The poisoned ping never ran; its operation ends as dead-lettered (after the MULTI).
    let ended = wait_until(|| async {
        let op = store.operation(env.command_id).await.ok()??;
        op.state.is_terminal().then_some(op)
    })
    .await?;
    assert_eq!(
        (
            ended.state,
            ended.attempts,
            ended.error.as_ref().map(|e| e.code.as_str())
        ),
        (
            draas_protocol::OperationState::Failed,
            0,
            Some(draas_bus::streams::DEAD_LETTERED)
        ),
        "{ended:?}"
    );
    worker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_group_and_redis_restart_are_recovered() -> anyhow::Result<()> {
    let mut sys = System::start_tuned(common::runtime_binary(), fast_recovery).await?;
    let ping = |sys: &System| {
        let url = sys.url("/api/v1/platforms/process/ping?wait=20");
        let http = sys.http.clone();
        async move { common::status_json(http.post(url).send().await.unwrap()).await }
    };
    assert_eq!(ping(&sys).await.1["state"], "succeeded");

    // The group vanishes (a failover to a replica that never had it): NOGROUP, recreated from 0.
    let stream = sys.keys.commands(Platform::Process);
    let mut conn = sys
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await?;
    let _: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&stream)
        .arg(WORKER_GROUP)
        .query_async(&mut conn)
        .await?;
    let (status, op) = ping(&sys).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );

    // Redis restarts (AOF on): every connection drops and comes back.
    sys.redis.restart()?;
    let op = wait_until(|| async {
        let (status, op) = ping(&sys).await;
        (status == 200 && op["state"] == "succeeded").then_some(op)
    })
    .await?;
    assert_eq!(op["command"], "ping");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_finishes_in_flight_work() -> anyhow::Result<()> {
    let log = scratch("launches").join("launches.log");
    let mut sys = System::start_tuned(counting_runtime(&log, 2), |c| {
        c.stop_instances_on_exit = false
    })
    .await?;
    let id = sys.create("draining").await;
    let (status, op) = sys
        .post(&format!("/api/v1/instances/{id}/start?wait=0"))
        .await;
    assert_eq!(status, 202, "{op}");
    let op_id = op["id"].as_str().unwrap().to_owned();
    wait_until(|| async {
        (sys.get(&format!("/api/v1/operations/{op_id}")).await.1["state"] == "running")
            .then_some(())
    })
    .await?;

    // First signal: stop reading, finish the start, ack it, deregister.
    let worker = std::mem::replace(
        &mut sys.worker,
        WorkerNode::start(
            &sys.redis.url,
            &draas_protocol::Keyspace::new("elsewhere"),
            common::runtime_binary(),
        )
        .await?,
    );
    worker.shutdown().await;
    let (_, op) = sys.get(&format!("/api/v1/operations/{op_id}")).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let mut conn = sys
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await?;
    assert_eq!(
        pending_count(&mut conn, &sys.keys.commands(Platform::Process)).await,
        0
    );
    let (_, workers) = sys.get("/api/v1/workers").await;
    assert_eq!(workers["items"], json!([]), "a drained worker deregisters");
    assert_eq!(launches(&log, &id), 1);
    let pid = sys.instance(&id).await["runtime"]["pid"].as_i64().unwrap();
    common::sigkill(pid);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_adopts_its_instances() -> anyhow::Result<()> {
    let log = scratch("launches").join("launches.log");
    let runtime = counting_runtime(&log, 0);
    let mut sys =
        System::start_tuned(runtime.clone(), |c| c.stop_instances_on_exit = false).await?;
    let id = sys.create("adoptee").await;
    assert_eq!(
        sys.post(&format!("/api/v1/instances/{id}/start")).await.0,
        200
    );
    let before = sys.instance(&id).await;
    let pid = before["runtime"]["pid"].as_u64().unwrap();

    // The worker goes away (and its process-local state with it); the instance keeps running.
    let data_dir = sys.worker.data_dir.clone();
    let old = std::mem::replace(
        &mut sys.worker,
        WorkerNode::start(
            &sys.redis.url,
            &draas_protocol::Keyspace::new("elsewhere"),
            common::runtime_binary(),
        )
        .await?,
    );
    old.crash();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // A new worker on the same node adopts it: no second launch, not reported lost or failed.
    let replacement = WorkerNode::start_tuned(&sys.redis.url, &sys.keys, runtime, data_dir, |c| {
        c.stop_instances_on_exit = false
    })
    .await?;
    let _ = std::mem::replace(&mut sys.worker, replacement);
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    assert_eq!(
        op["result"]["exitCode"],
        Value::Null,
        "an adopted process's exit code cannot be known"
    );
    // The process is gone once its exit has been reaped; wait for that rather than read once.
    wait_until(|| async {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await
    .map_err(|e| e.context("the adopted process was stopped"))?;
    assert_eq!(launches(&log, &id), 1);
    let states: Vec<String> = events(&sys, &id).await;
    assert!(
        !states
            .iter()
            .any(|s| s.ends_with(">lost") || s.ends_with(">failed")),
        "{states:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_a_dead_node_are_lost_then_rescheduled() -> anyhow::Result<()> {
    let mut sys = System::start_tuned(common::runtime_binary(), |c| {
        fast_recovery(c);
        c.stop_instances_on_exit = false;
    })
    .await?;
    let (status, inst) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "nomad", "platform": "process", "config": sensor_config(), "restartPolicy": {"mode": "always"}}),
        )
        .await;
    assert_eq!(status, 201, "{inst}");
    let id = inst["id"].as_str().unwrap().to_owned();
    assert_eq!(
        sys.post(&format!("/api/v1/instances/{id}/start")).await.0,
        200
    );
    let first = sys.instance(&id).await;
    let first_node = first["runtime"]["node"].clone();
    let orphan = first["runtime"]["pid"].as_i64().unwrap();

    // A second node joins, then the first dies without a word.
    let survivor = WorkerNode::start_tuned(
        &sys.redis.url,
        &sys.keys,
        common::runtime_binary(),
        scratch("b"),
        fast_recovery,
    )
    .await?;
    let dead = std::mem::replace(&mut sys.worker, survivor);
    dead.crash();

    let moved = wait_until(|| async {
        let inst = sys.instance(&id).await;
        (inst["state"] == "running" && inst["runtime"]["node"] != first_node).then_some(inst)
    })
    .await?;
    assert_eq!(moved["runtime"]["restarts"], 1, "{moved}");
    let states = events(&sys, &id).await;
    assert!(states.contains(&"running>lost".to_owned()), "{states:?}");
    assert!(states.contains(&"lost>starting".to_owned()), "{states:?}");
    common::sigkill(orphan);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_restarts_a_crashed_instance() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let body = json!({"name": "phoenix", "platform": "process", "config": sensor_config(),
        "restartPolicy": {"mode": "on-failure", "maxAttempts": 2, "initialBackoffMs": 50}});
    let (status, inst) = sys.post_json("/api/v1/instances", &body).await;
    assert_eq!(status, 201, "{inst}");
    let id = inst["id"].as_str().unwrap().to_owned();
    assert_eq!(
        sys.post(&format!("/api/v1/instances/{id}/start")).await.0,
        200
    );
    let pid = sys.instance(&id).await["runtime"]["pid"].as_i64().unwrap();
    common::sigkill(pid);
    let back = wait_until(|| async {
        let inst = sys.instance(&id).await;
        (inst["state"] == "running" && inst["runtime"]["pid"].as_i64() != Some(pid)).then_some(inst)
    })
    .await?;
    assert_eq!(back["runtime"]["restarts"], 1, "{back}");
    let states = events(&sys, &id).await;
    assert!(states.contains(&"running>failed".to_owned()), "{states:?}");
    assert!(
        states.contains(&"restartScheduled".to_owned()),
        "every attempt is an event: {states:?}"
    );
    Ok(())
}

/// The instance's events as `from>to` (state changes) or their type (others), oldest first.
async fn events(sys: &System, id: &str) -> Vec<String> {
    let store = Store::new(
        connect::shared(&sys.redis.url).await.unwrap(),
        sys.keys.clone(),
    );
    store
        .recent_events(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.instance_id.to_string() == id)
        .map(|e| match e.event.kind {
            draas_protocol::EventKind::StateChanged { from, to, .. } => format!("{from}>{to}"),
            draas_protocol::EventKind::RestartScheduled { .. } => "restartScheduled".to_owned(),
            draas_protocol::EventKind::Note { .. } => "note".to_owned(),
            draas_protocol::EventKind::Drift { .. } => "drift".to_owned(),
        })
        .collect()
}

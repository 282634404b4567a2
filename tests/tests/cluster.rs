//! The control plane on a local six-node Redis Cluster (three masters, three replicas): the
//! API and a process worker reach it through a comma-separated node list, and the whole
//! lifecycle runs with its keys spread over several masters. Hash tags keep the keys each
//! command or script uses together in one slot; this test is where a cross-slot mistake shows.

mod common;

use anyhow::Context;
use common::cluster::RedisCluster;
use common::{ApiNode, WorkerNode, get_json, runtime_binary, status_json, wait_until};
use serde_json::{Value, json};

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String) -> (u16, Value) {
    status_json(http.request(method, url).send().await.expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_runs_on_a_six_node_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    let keys = common::fresh_keys("c");
    let worker = WorkerNode::start(&cluster.url, &keys, runtime_binary()).await?;
    let api = ApiNode::start(&cluster.url, &keys).await?;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", api.url);
    wait_until(|| async {
        let v = get_json(&http, &url("/api/v1/platforms")).await?;
        (v["items"][0]["available"] == true).then_some(())
    })
    .await
    .context("the process platform never became available")?;

    // Create (with an idempotency key), start, read, stop, restart, delete.
    let body = json!({"name": "on-cluster", "platform": "process", "config": common::sensor_config(),
        "labels": {"tier": "gold"}});
    let created = http
        .post(url("/api/v1/instances"))
        .json(&body)
        .send()
        .await?;
    let (status, inst) = status_json(created).await;
    assert_eq!(status, 201, "{inst}");
    let id = inst["id"].as_str().unwrap().to_owned();
    let start = || {
        http.post(url(&format!("/api/v1/instances/{id}/start")))
            .header("Idempotency-Key", format!("start-{id}"))
            .send()
    };
    let (status, first) = status_json(start().await?).await;
    assert_eq!(
        (status, first["state"].clone()),
        (200, json!("succeeded")),
        "{first}"
    );
    let (_, again) = status_json(start().await?).await;
    assert_eq!(
        again["id"], first["id"],
        "a retried start is the same operation"
    );
    let (_, inst) = call(
        &http,
        reqwest::Method::GET,
        url(&format!("/api/v1/instances/{id}")),
    )
    .await;
    assert_eq!(inst["state"], "running", "{inst}");
    let health = format!("{}/health", common::endpoint(&inst, "api"));
    assert!(http.get(&health).send().await?.status().is_success());

    for action in ["stop", "start", "restart"] {
        let (status, op) = call(
            &http,
            reqwest::Method::POST,
            url(&format!("/api/v1/instances/{id}/{action}")),
        )
        .await;
        assert_eq!(
            (status, op["state"].clone()),
            (200, json!("succeeded")),
            "{action}: {op}"
        );
    }
    // Listing, operator views and events read across slots.
    let (_, list) = call(&http, reqwest::Method::GET, url("/api/v1/instances")).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    // The label index (its own hash tag) is built, kept by a label change and read.
    let built = format!("{}:{{labels}}:built", keys.prefix());
    wait_until(|| async {
        cluster
            .masters()
            .into_iter()
            .any(|p| !cluster.cli(p, &["--scan", "--pattern", &built]).is_empty())
            .then_some(())
    })
    .await
    .context("the label index was never marked built")?;
    let (_, gold) = call(
        &http,
        reqwest::Method::GET,
        url("/api/v1/instances?label=tier=gold"),
    )
    .await;
    assert_eq!(gold["items"][0]["id"], json!(id), "{gold}");
    let (status, changed) = status_json(
        http.patch(url(&format!("/api/v1/instances/{id}")))
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"labels":{"tier":"silver"}}"#)
            .send()
            .await?,
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    for (filter, expected) in [("tier=gold", 0), ("tier=silver", 1)] {
        let (_, page) = call(
            &http,
            reqwest::Method::GET,
            url(&format!("/api/v1/instances?label={filter}")),
        )
        .await;
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(expected),
            "{filter}: {page}"
        );
    }
    let (status, streams) = call(&http, reqwest::Method::GET, url("/api/v1/admin/streams")).await;
    assert_eq!(status, 200, "{streams}");

    let (status, op) = call(
        &http,
        reqwest::Method::DELETE,
        url(&format!("/api/v1/instances/{id}")),
    )
    .await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        url(&format!("/api/v1/instances/{id}")),
    )
    .await;
    assert_eq!(status, 404);
    let (_, silver) = call(
        &http,
        reqwest::Method::GET,
        url("/api/v1/instances?label=tier=silver"),
    )
    .await;
    assert_eq!(silver["items"], json!([]), "{silver}");

    // The work really was spread: more than one master holds this deployment's keys.
    let pattern = format!("{}:*", keys.prefix());
    let holding = cluster
        .masters()
        .into_iter()
        .filter(|p| {
            !cluster
                .cli(*p, &["--scan", "--pattern", &pattern])
                .is_empty()
        })
        .count();
    assert!(holding >= 2, "keys on {holding} master(s) only");

    worker.shutdown().await;
    api.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_commands_are_reclaimed_on_a_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    let keys = common::fresh_keys("c");
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&cluster.url).await?,
        keys.clone(),
    );
    let mut conn = store.conn();
    // Three commands read by a consumer that dies at once: they sit pending.
    let envs = common::ghost_pings(&store, &mut conn, 3).await?;
    let stream = keys.commands(draas_protocol::Platform::Process);
    assert_eq!(common::pending_count(&mut conn, &stream).await, 3);

    // A live worker's sweeper (XAUTOCLAIM) takes them over and runs each once.
    let worker = WorkerNode::start_tuned(
        &cluster.url,
        &keys,
        runtime_binary(),
        common::scratch("cluster-worker"),
        common::fast_recovery,
    )
    .await?;
    for env in &envs {
        let op = wait_until(|| async {
            let op = store.operation(env.command_id).await.ok()??;
            (op.state == draas_protocol::OperationState::Succeeded).then_some(op)
        })
        .await?;
        assert_eq!(op.attempts, 1, "{op:?}");
    }
    wait_until(|| async {
        let mut conn = store.conn();
        (common::pending_count(&mut conn, &stream).await == 0).then_some(())
    })
    .await?;
    worker.shutdown().await;
    Ok(())
}

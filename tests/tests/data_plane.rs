//! The data plane through the API on the process platform, with real Redis, the real API and
//! workers (their data-plane listeners), real `draas-runtime` instances and real HTTP:
//! errors that name what is missing, change feeds that resume with `Last-Event-ID`, two
//! nodes each reached for its own instances (also after the owner's worker restarts, with a
//! feed broken by the worker's death ending in an `error` event), the worker's listener
//! refusing anyone without the secret and instances that are not its own, and fifty feeds
//! opened and closed leaving no connection open anywhere.

mod common;

use common::sse::{Feed, held_connections};
use common::{
    ApiNode, RedisServer, System, WorkerNode, fresh_keys, runtime_binary, scratch, wait_until,
};
use serde_json::{Value, json};

fn sensor(id: &str, temperature: i64) -> Value {
    json!({"operation": "insert", "element": {"type": "node", "id": id, "labels": ["Sensor"], "properties": {"id": id, "temperature": temperature}}})
}

/// Creates and starts a sensor instance through `api`; returns its id.
async fn started(http: &reqwest::Client, api: &str, name: &str) -> String {
    let created = http
        .post(format!("{api}/api/v1/instances"))
        .json(&json!({"name": name, "platform": "process", "config": common::sensor_config()}))
        .send()
        .await
        .expect("create");
    let (status, body) = common::status_json(created).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let start = http
        .post(format!("{api}/api/v1/instances/{id}/start"))
        .send()
        .await
        .expect("start");
    let (status, op) = common::status_json(start).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    id
}

async fn post_event(http: &reqwest::Client, api: &str, id: &str, event: &Value) -> (u16, Value) {
    let response = http
        .post(format!(
            "{api}/api/v1/instances/{id}/sources/readings/events"
        ))
        .json(event)
        .send()
        .await
        .expect("post event");
    common::status_json(response).await
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    common::status_json(http.get(url).send().await.expect("get")).await
}

/// Rows in id order (a result set has none of its own).
fn by_id(rows: &Value) -> Vec<Value> {
    let mut rows = rows.as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_owned());
    rows
}

/// Waits until the query's results through `api` are `expected` (in any order).
async fn results_become(http: &reqwest::Client, api: &str, id: &str, expected: Value) {
    let url = format!("{api}/api/v1/instances/{id}/queries/hot/results");
    let seen = wait_until(|| {
        let (url, expected) = (url.clone(), expected.clone());
        async move {
            let (status, body) = get(http, &url).await;
            (status == 200 && by_id(&body["items"]) == by_id(&expected)).then_some(())
        }
    })
    .await;
    if seen.is_err() {
        panic!(
            "results never became {expected}: {:?}",
            get(http, &url).await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_what_is_missing_and_feeds_resume() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let created = sys.create("idle").await;
    let (status, body) = sys
        .get(&format!("/api/v1/instances/{created}/queries/hot/results"))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "instance_not_running");
    assert_eq!(body["error"]["details"]["state"], "created");

    let id = started(&sys.http, &sys.api.url, "sensors").await;
    let unknown = uuid::Uuid::now_v7();
    let (status, body) = sys
        .get(&format!("/api/v1/instances/{unknown}/queries"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );
    let (status, body) = sys
        .get(&format!("/api/v1/instances/{id}/queries/cold/results"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "query_not_found");
    assert_eq!(body["error"]["details"]["query"], "cold");
    let (status, body) = sys
        .post_json(
            &format!("/api/v1/instances/{id}/sources/nope/events"),
            &sensor("s1", 1),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "source_not_found");
    assert_eq!(body["error"]["details"]["source"], "nope");
    let (status, body) = sys
        .get(&format!(
            "/api/v1/instances/{id}/queries/hot/changes?snapshot=maybe"
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "snapshot");
    // The instance's own refusal passes through with its status and message.
    let (status, body) = sys
        .post_json(
            &format!("/api/v1/instances/{id}/sources/readings/events"),
            &json!({"operation": "explode"}),
        )
        .await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["error"]["code"], "upstream_error", "{body}");
    assert_eq!(body["error"]["details"]["status"], status, "{body}");

    // A feed without a snapshot starts with the first change; its id resumes the feed.
    let changes = sys.url(&format!("/api/v1/instances/{id}/queries/hot/changes"));
    let mut feed = Feed::open(&sys.http, &format!("{changes}?snapshot=false"), &[]).await?;
    assert_eq!(feed.status, 200);
    post_event(&sys.http, &sys.api.url, &id, &sensor("s1", 80)).await;
    let first = feed.next().await?;
    assert_eq!(first.event, "change", "{first:?}");
    assert_eq!(
        first.data["added"],
        json!([{"id": "s1", "temperature": 80}])
    );
    let last_id = first.id.clone().expect("events carry ids");
    drop(feed);
    for (n, t) in [("s2", 81), ("s3", 82)] {
        let (status, body) = post_event(&sys.http, &sys.api.url, &id, &sensor(n, t)).await;
        assert_eq!(status, 200, "{body}");
    }
    results_become(
        &sys.http,
        &sys.api.url,
        &id,
        json!([{"id": "s1", "temperature": 80}, {"id": "s2", "temperature": 81}, {"id": "s3", "temperature": 82}]),
    )
    .await;
    let mut resumed = Feed::open(&sys.http, &changes, &[("last-event-id", &last_id)]).await?;
    let mut added = Vec::new();
    while added.len() < 2 {
        let event = resumed.next().await?;
        assert_eq!(
            event.event, "change",
            "a resumed feed sends only what was missed: {event:?}"
        );
        for row in event.data["added"].as_array().into_iter().flatten() {
            added.push(row["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(added, ["s2", "s3"]);

    // An id the instance cannot resume from: the feed says so, then sends a fresh snapshot.
    let mut reset = Feed::open(&sys.http, &changes, &[("last-event-id", "another-run:7")]).await?;
    let said = reset.next().await?;
    assert_eq!(said.event, "reset", "{said:?}");
    assert!(
        said.data["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{said:?}"
    );
    let snapshot = reset.next().await?;
    assert_eq!(snapshot.event, "snapshot", "{snapshot:?}");
    assert_eq!(
        snapshot.data["results"].as_array().map(Vec::len),
        Some(3),
        "{snapshot:?}"
    );
    Ok(())
}

/// A store on the test's Redis, to read what workers registered.
async fn store(url: &str, keys: &draas_protocol::Keyspace) -> anyhow::Result<draas_bus::Store> {
    let target = draas_bus::connect::RedisTarget::from(url);
    Ok(draas_bus::Store::new(
        draas_bus::connect::shared(&target).await?,
        keys.clone(),
    ))
}

/// The data-plane URL a worker of `node` advertised.
async fn data_url(store: &draas_bus::Store, node: &str) -> String {
    wait_until(|| async {
        let planes = store
            .data_planes(draas_protocol::Platform::Process, Some(node))
            .await
            .ok()?;
        planes.first().map(|p| p.url.clone())
    })
    .await
    .expect("the worker advertises its data plane")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_each_serve_their_own_and_recover_after_a_worker_restart() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("dp");
    let store = store(&redis.url, &keys).await?;
    let http = reqwest::Client::new();
    let api = ApiNode::start(&redis.url, &keys).await?;
    let (dir_a, dir_b) = (scratch("node-a"), scratch("node-b"));
    let keep = |c: &mut draas_worker::WorkerConfig| c.stop_instances_on_exit = false;

    // Node A alone takes the first instance, node B alone the second.
    let a =
        WorkerNode::start_tuned(&redis.url, &keys, runtime_binary(), dir_a.clone(), keep).await?;
    common::wait_for_workers(&http, &api.url, 1).await;
    let on_a = started(&http, &api.url, "on-a").await;
    a.crash();
    let b =
        WorkerNode::start_tuned(&redis.url, &keys, runtime_binary(), dir_b.clone(), keep).await?;
    let on_b = wait_until(|| async {
        // Until node A's registration lapses, a start may be routed to it; retry.
        let response = http
            .post(format!("{}/api/v1/instances", api.url))
            .json(&json!({"name": format!("on-b-{}", uuid::Uuid::new_v4().simple()), "platform": "process", "config": common::sensor_config()}))
            .send()
            .await
            .ok()?;
        let (_, body) = common::status_json(response).await;
        let id = body["id"].as_str()?.to_owned();
        let start = http.post(format!("{}/api/v1/instances/{id}/start", api.url)).send().await.ok()?;
        let (status, op) = common::status_json(start).await;
        (status == 200 && op["state"] == "succeeded").then_some(id)
    })
    .await?;
    let a =
        WorkerNode::start_tuned(&redis.url, &keys, runtime_binary(), dir_a.clone(), keep).await?;

    let node_of = |inst: Value| inst["runtime"]["node"].as_str().unwrap().to_owned();
    let node_a = node_of(
        get(&http, &format!("{}/api/v1/instances/{on_a}", api.url))
            .await
            .1,
    );
    let node_b = node_of(
        get(&http, &format!("{}/api/v1/instances/{on_b}", api.url))
            .await
            .1,
    );
    assert_ne!(node_a, node_b, "the two instances run on two nodes");

    // Each instance's data reaches its own node (a worker refuses another node's instance).
    for (id, t) in [(&on_a, 80), (&on_b, 90)] {
        let (status, body) = wait_until(|| async {
            let (status, body) = post_event(&http, &api.url, id, &sensor("s1", t)).await;
            (status == 200).then_some((status, body))
        })
        .await
        .unwrap_or_default();
        assert_eq!(status, 200, "{body}");
        results_become(&http, &api.url, id, json!([{"id": "s1", "temperature": t}])).await;
    }
    let url_b = data_url(&store, &node_b).await;
    let secret = common::data_secret().bearer();
    let foreign = http
        .get(format!("{url_b}/data/v1/instances/{on_a}/queries"))
        .header("authorization", &secret)
        .send()
        .await?;
    let (status, body) = common::status_json(foreign).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "foreign_instance", "{body}");

    // A feed of node A's instance; node A's worker dies mid-stream: the feed ends with an
    // error event, and the data plane is unreachable (502) until a worker of node A is back.
    let changes = format!("{}/api/v1/instances/{on_a}/queries/hot/changes", api.url);
    let mut feed = Feed::open(&http, &changes, &[]).await?;
    let snapshot = feed.next().await?;
    assert_eq!(snapshot.event, "snapshot");
    let resume_from = snapshot.id.clone().expect("id");
    a.crash();
    let broken = feed.next().await?;
    assert_eq!(broken.event, "error", "{broken:?}");
    assert_eq!(
        broken.data["error"]["code"], "instance_unreachable",
        "{broken:?}"
    );
    let (status, body) = get(
        &http,
        &format!("{}/api/v1/instances/{on_a}/queries/hot/results", api.url),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "instance_unreachable", "{body}");
    assert!(
        body["error"]["details"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    // Node B's instance is not affected.
    results_become(
        &http,
        &api.url,
        &on_b,
        json!([{"id": "s1", "temperature": 90}]),
    )
    .await;

    // The restarted worker of node A adopts its instance; the same URLs work again, and the
    // feed resumes where it broke, with nothing missed.
    let a =
        WorkerNode::start_tuned(&redis.url, &keys, runtime_binary(), dir_a.clone(), keep).await?;
    wait_until(|| async {
        let (status, _) = post_event(&http, &api.url, &on_a, &sensor("s2", 85)).await;
        (status == 200).then_some(())
    })
    .await?;
    let mut resumed = Feed::open(&http, &changes, &[("last-event-id", &resume_from)]).await?;
    let change = resumed.next().await?;
    assert_eq!(change.event, "change", "{change:?}");
    assert_eq!(
        change.data["added"],
        json!([{"id": "s2", "temperature": 85}]),
        "{change:?}"
    );
    drop(resumed);
    drop(feed);

    drop(a);
    drop(b);
    // The instances were left running by design (crashes); stop them by their data dirs.
    common::kill_instances_under(&dir_a);
    common::kill_instances_under(&dir_b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_data_plane_serves_api_nodes_and_its_own_instances_only() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = started(&sys.http, &sys.api.url, "mine").await;
    let store = store(&sys.redis.url, &sys.keys).await?;
    let node = sys.instance(&id).await["runtime"]["node"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = data_url(&store, &node).await;
    let path = format!("{url}/data/v1/instances/{id}/queries/hot/results");

    for authorization in [
        None,
        Some("Bearer wrong-secret-wrong-secret-wrong-secret"),
        Some("Basic eA=="),
    ] {
        let mut request = sys.http.get(&path);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let (status, body) = common::status_json(request.send().await?).await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let secret = common::data_secret().bearer();
    let (status, body) = common::status_json(
        sys.http
            .get(&path)
            .header("authorization", &secret)
            .send()
            .await?,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queryId"], "hot");

    // An instance of another platform is not this worker's to serve.
    let (status, docker) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "elsewhere", "platform": "docker", "config": common::sensor_config()}),
        )
        .await;
    assert_eq!(status, 201, "{docker}");
    let other = docker["id"].as_str().unwrap();
    let refused = sys
        .http
        .get(format!("{url}/data/v1/instances/{other}/queries"))
        .header("authorization", &secret)
        .send()
        .await?;
    let (status, body) = common::status_json(refused).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "foreign_instance");
    assert_eq!(body["error"]["details"]["platform"], "docker");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_feeds_opened_and_closed_leave_no_connection_open() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = started(&sys.http, &sys.api.url, "watched").await;
    let inst = sys.instance(&id).await;
    let runtime_port: u16 = common::endpoint(&inst, "api")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()?;
    let store = store(&sys.redis.url, &sys.keys).await?;
    let data = data_url(&store, inst["runtime"]["node"].as_str().unwrap()).await;
    let data_port: u16 = data.rsplit(':').next().unwrap().parse()?;
    let health = format!("{}/health", common::endpoint(&inst, "api"));

    // Connections at the instance before: keep-alive ones of completed requests (health checks).
    common::get_json(&sys.http, &health).await;
    let before = held_connections(runtime_port);
    let changes = sys.url(&format!("/api/v1/instances/{id}/queries/hot/changes"));
    let mut feeds = Vec::new();
    for _ in 0..50 {
        // Each on its own connection, as fifty clients would be.
        let client = reqwest::Client::new();
        let mut feed = Feed::open(&client, &changes, &[]).await?;
        assert_eq!(feed.next().await?.event, "snapshot");
        feeds.push((client, feed));
    }
    // Each connection is seen from both ends (both are on this machine).
    assert!(
        held_connections(data_port) >= 100,
        "fifty feeds cross the API→worker hop"
    );
    assert!(
        held_connections(runtime_port) >= before + 100,
        "and the worker→instance hop"
    );
    let open = common::get_json(&sys.http, &health)
        .await
        .unwrap_or_default();
    assert_eq!(open["changeStreams"], 50, "{open}");
    drop(feeds);

    // Closed at once at every hop: API→worker, worker→instance, and the instance's streams.
    wait_until(|| async {
        let open = common::get_json(&sys.http, &health).await?;
        let closed = held_connections(data_port) == 0 && held_connections(runtime_port) <= before;
        (closed && open["changeStreams"] == 0).then_some(())
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: {} connections at the data plane, {} at the instance",
            held_connections(data_port),
            held_connections(runtime_port)
        )
    })?;
    Ok(())
}

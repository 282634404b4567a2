//! `PUT /api/v1/instances/{name}`: create, update and move toward `desiredState`, with
//! `If-Match` and `ETag`; names in every instance route; documents refused naming the field.

use std::time::Duration;

use serde_json::{Value, json};

use super::common::{self, System, sensor_config, status_json};
use super::{doc, error_field, header, hotter_config, put};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_creates_updates_and_moves_toward_the_desired_state() -> anyhow::Result<()> {
    // No controller here: what moves the instance is the PUT alone (and the test's own start
    // and stop by name, which a controller would answer for a desired-stopped instance).
    let sys = System::start_tuned(common::runtime_binary(), |c| {
        c.converge_interval = Duration::ZERO;
    })
    .await?;

    // Created and started (desired running), with Location, ETag and Operation-Location.
    let (status, headers, body) =
        put(&sys, "web", &doc("web", "running", sensor_config()), None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["result"], "created", "{body}");
    let id = body["instance"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        header(&headers, "location"),
        format!("/api/v1/instances/{id}")
    );
    assert_eq!(header(&headers, "etag"), "\"1\"");
    assert_eq!(body["operation"]["command"], "start", "{body}");
    assert_eq!(body["operation"]["state"], "succeeded", "{body}");
    let op = body["operation"]["id"].as_str().unwrap();
    assert_eq!(
        header(&headers, "operation-location"),
        format!("/api/v1/operations/{op}")
    );
    assert_eq!(body["instance"]["state"], "running", "{body}");
    assert_eq!(body["instance"]["desiredState"], "running", "{body}");
    assert_eq!(body["instance"]["labels"]["team"], "a", "{body}");

    // The same document again: nothing to do, nothing written.
    let (status, headers, body) =
        put(&sys, "web", &doc("web", "running", sensor_config()), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "unchanged", "{body}");
    assert_eq!(body["instance"]["generation"], 1, "{body}");
    assert_eq!(body["operation"], Value::Null, "{body}");
    assert_eq!(header(&headers, "etag"), "\"1\"");
    assert!(headers.get("operation-location").is_none());

    // GET by name, with the ETag a later If-Match names.
    let resp = sys
        .http
        .get(sys.url("/api/v1/instances/web"))
        .send()
        .await?;
    assert_eq!(header(resp.headers(), "etag"), "\"1\"");
    let (status, got) = status_json(resp).await;
    assert_eq!((status, got["id"].as_str()), (200, Some(&id[..])), "{got}");

    // A changed config on the running instance: stored and applied (ApplyConfig).
    let (status, headers, body) = put(
        &sys,
        "web",
        &doc("web", "running", hotter_config()),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "updated", "{body}");
    assert_eq!(body["operation"]["command"], "applyConfig", "{body}");
    assert_eq!(body["operation"]["state"], "succeeded", "{body}");
    assert_eq!(body["instance"]["state"], "running", "{body}");
    assert_eq!(body["instance"]["generation"], 2, "{body}");
    assert_eq!(header(&headers, "etag"), "\"2\"");
    assert!(
        body["instance"]["config"]["queries"][0]["query"]
            .as_str()
            .unwrap()
            .contains("> 80"),
        "{body}"
    );

    // A stale If-Match: 412 with the current generation, and nothing changes.
    let (status, _, body) = put(
        &sys,
        "web",
        &doc("web", "stopped", hotter_config()),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["error"]["code"], "precondition_failed", "{body}");
    assert_eq!(body["error"]["details"]["generation"], 2, "{body}");
    assert_eq!(sys.instance(&id).await["state"], "running");

    // Desired stopped (If-Match unquoted): stopped.
    let (status, headers, body) = put(
        &sys,
        "web",
        &doc("web", "stopped", hotter_config()),
        Some("2"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "updated", "{body}");
    assert_eq!(body["operation"]["command"], "stop", "{body}");
    assert_eq!(body["instance"]["state"], "stopped", "{body}");
    assert_eq!(body["instance"]["desiredState"], "stopped", "{body}");
    assert_eq!(body["instance"]["generation"], 3, "{body}");
    assert_eq!(header(&headers, "etag"), "\"3\"");

    // If-Match on a name nobody has: 412, and nothing is created.
    let (status, _, body) = put(
        &sys,
        "ghost",
        &doc("ghost", "running", sensor_config()),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["error"]["code"], "precondition_failed", "{body}");
    let (status, body) = sys.get("/api/v1/instances/ghost").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );

    // Names work wherever an instance is named.
    let (status, op) = sys.post("/api/v1/instances/web/start").await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let (status, logs) = sys.get("/api/v1/instances/web/logs?tail=5").await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["instanceId"], id.as_str(), "{logs}");
    let feed = sys
        .http
        .get(sys.url("/api/v1/instances/web/events"))
        .send()
        .await?;
    assert_eq!(feed.status(), 200);
    assert!(header(feed.headers(), "content-type").starts_with("text/event-stream"));
    drop(feed);
    let (status, op) = sys.post("/api/v1/instances/web/stop").await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    let (status, body) = sys.post("/api/v1/instances/nobody/start").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );

    // A document without env keeps the stored one (a document read back has none).
    let mut without_env = doc("web", "stopped", hotter_config());
    without_env["spec"].as_object_mut().unwrap().remove("env");
    let (status, _, body) = put(&sys, "web", &without_env, None).await;
    assert_eq!(
        (status, body["result"].clone()),
        (200, json!("unchanged")),
        "{body}"
    );
    assert_eq!(body["instance"]["env"]["GREETING"], "hello", "{body}");

    // PATCH may change desiredState too.
    let resp = sys
        .http
        .patch(sys.url("/api/v1/instances/web"))
        .header("Content-Type", "application/merge-patch+json")
        .body(r#"{"desiredState":"running"}"#)
        .send()
        .await?;
    assert_eq!(header(resp.headers(), "etag"), "\"4\"");
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["desiredState"], "running", "{body}");

    // Not waiting for the start: 202 with the pending operation, still a creation.
    let (status, headers, body) = put(
        &sys,
        "quick?wait=0",
        &doc("quick", "running", sensor_config()),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["result"], "created", "{body}");
    assert_ne!(body["operation"]["state"], "succeeded", "{body}");
    let quick = body["instance"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        header(&headers, "location"),
        format!("/api/v1/instances/{quick}")
    );
    let op = body["operation"]["id"].as_str().unwrap();
    assert_eq!(
        header(&headers, "operation-location"),
        format!("/api/v1/operations/{op}")
    );
    sys.wait_state(&quick, "running").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_are_refused_naming_the_field() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let good = doc("bad", "stopped", sensor_config());
    let refused = |mutate: fn(&mut Value)| {
        let mut body = good.clone();
        mutate(&mut body);
        body
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            refused(|d| d["apiVersion"] = json!("draas.io/v2")),
            400,
            "apiVersion",
        ),
        (refused(|d| d["kind"] = json!("Pod")), 400, "kind"),
        (
            refused(|d| d["metadata"]["name"] = json!("other")),
            400,
            "metadata.name",
        ),
        (
            refused(|d| d["spec"]["configFile"] = json!("web.yaml")),
            400,
            "spec.configFile",
        ),
        (
            refused(|d| d["spec"]["replicas"] = json!(2)),
            400,
            "spec.replicas",
        ),
        (
            refused(|d| d["spec"]["desiredState"] = json!("paused")),
            400,
            "spec.desiredState",
        ),
        (
            refused(|d| {
                d["spec"].as_object_mut().unwrap().remove("config");
            }),
            400,
            "spec.config",
        ),
        (
            refused(|d| {
                d["spec"]["config"]["queries"][0]["sources"] = json!([{"sourceId": "nope"}])
            }),
            422,
            "spec.config",
        ),
        (
            refused(|d| d["metadata"]["labels"][""] = json!("x")),
            422,
            "metadata.labels.",
        ),
    ];
    for (body, status, field) in cases {
        let (got, _, answer) = put(&sys, "bad", &body, None).await;
        assert_eq!(got, status, "{field}: {answer}");
        assert!(error_field(&answer).starts_with(field), "{field}: {answer}");
    }
    // None of them created anything.
    assert_eq!(sys.get("/api/v1/instances/bad").await.0, 404);

    let (status, _, body) = put(&sys, "bad", &good, Some("soon")).await;
    assert_eq!((status, error_field(&body)), (400, "If-Match"), "{body}");
    let (status, _, body) = put(
        &sys,
        "Bad_Name",
        &doc("Bad_Name", "stopped", sensor_config()),
        None,
    )
    .await;
    assert_eq!(
        (status, error_field(&body)),
        (400, "metadata.name"),
        "{body}"
    );
    let resp = sys
        .http
        .put(sys.url("/api/v1/instances/bad"))
        .body(good.to_string())
        .send()
        .await?;
    assert_eq!(resp.status(), 415);
    // A UUID-shaped path is an id, which a PUT only updates.
    let missing = uuid::Uuid::now_v7();
    let (status, _, body) = put(&sys, &missing.to_string(), &good, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );
    // Text that is neither an id nor a name.
    let (status, body) = sys.get("/api/v1/instances/NOT_A_NAME").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_id")),
        "{body}"
    );

    // An existing instance keeps its platform.
    let (status, _, body) = put(&sys, "bad", &good, None).await;
    assert_eq!(
        (status, body["result"].clone()),
        (201, json!("created")),
        "{body}"
    );
    assert_eq!(
        body["instance"]["state"], "created",
        "desired stopped: not started"
    );
    let mut docker = good.clone();
    docker["spec"]["platform"] = json!("docker");
    let (status, _, body) = put(&sys, "bad", &docker, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "platform_immutable", "{body}");
    assert_eq!(error_field(&body), "spec.platform", "{body}");
    Ok(())
}

//! Every bad-input case of the API contract returns a 4xx JSON error naming the problem, and
//! writes nothing.

mod common;

use common::{System, sensor_config};
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rejects_bad_bodies_and_writes_nothing() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let url = sys.url("/api/v1/instances");

    // Malformed JSON.
    let resp = sys
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_error(status, &body, 400, "malformed_json");

    // Not JSON at all.
    let resp = sys
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_error(status, &body, 415, "unsupported_media_type");

    // Unknown top-level field.
    let (status, body) = sys
        .post_json("/api/v1/instances", &json!({"name": "a", "platform": "process", "config": sensor_config(), "colour": "red"}))
        .await;
    assert_error(status, &body, 400, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "colour");

    // Unknown platform.
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "a", "platform": "mainframe", "config": sensor_config()}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "platform");

    // Missing required field.
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "a", "config": sensor_config()}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("platform"),
        "{body}"
    );

    // Unknown key inside the Drasi config, with its path.
    let mut config = sensor_config();
    config["queries"][0]["colour"] = json!("red");
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "a", "platform": "process", "config": config}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_config");
    let field = body["error"]["details"]["field"].as_str().unwrap();
    assert!(
        field.starts_with("config.queries[0]") && field.contains("colour"),
        "{body}"
    );

    // A query naming a source that does not exist.
    let mut config = sensor_config();
    config["queries"][0]["sources"][0]["sourceId"] = json!("nowhere");
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "a", "platform": "process", "config": config}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_config");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{body}"
    );

    // A reaction naming a query that does not exist.
    let mut config = sensor_config();
    config["reactions"][0]["queries"] = json!(["ghost"]);
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "a", "platform": "process", "config": config}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_config");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("ghost"),
        "{body}"
    );

    // An unsupported component kind names the kind.
    let mut config = sensor_config();
    config["sources"][0]["kind"] = json!("kafka");
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "a", "platform": "process", "config": config}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_config");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("kafka"),
        "{body}"
    );

    // Host and port belong to the platform: a port the config sets is no error (it is
    // replaced, and a warning says so), but one that is no port is.
    let mut config = sensor_config();
    config["port"] = json!(0);
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "a", "platform": "process", "config": config}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_config");
    assert_eq!(body["error"]["details"]["field"], "config.port");

    // A name that cannot become a container or pod name.
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "Bad Name!", "platform": "process", "config": sensor_config()}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_name");
    assert_eq!(body["error"]["details"]["field"], "name");

    // Nothing was written by any of the above.
    let (status, list) = sys.get("/api/v1/instances").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]), "{list}");

    // A duplicate name is a 409 naming the field.
    sys.create("dup").await;
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "dup", "platform": "process", "config": sensor_config()}),
        )
        .await;
    assert_error(status, &body, 409, "name_taken");
    assert_eq!(body["error"]["details"]["field"], "name");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_illegal_transitions_and_bad_parameters() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let missing = uuid::Uuid::now_v7();

    let (status, body) = sys.get(&format!("/api/v1/instances/{missing}")).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = sys
        .post(&format!("/api/v1/instances/{missing}/start"))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = sys.get(&format!("/api/v1/operations/{missing}")).await;
    assert_error(status, &body, 404, "not_found");
    // Neither an id nor a name (an unknown name is a 404, as an unknown id).
    let (status, body) = sys.get("/api/v1/instances/Not_A_Uuid").await;
    assert_error(status, &body, 400, "invalid_id");
    let (status, body) = sys.get("/api/v1/nothing-here").await;
    assert_error(status, &body, 404, "not_found");

    let id = sys.create("fsm").await;
    // Stop a created instance: illegal, and the current state is named.
    let (status, body) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_error(status, &body, 409, "illegal_transition");
    assert_eq!(body["error"]["details"]["state"], "created");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("created"),
        "{body}"
    );

    assert_eq!(
        sys.post(&format!("/api/v1/instances/{id}/start")).await.0,
        200
    );
    let (status, body) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_error(status, &body, 409, "illegal_transition");
    assert_eq!(body["error"]["details"]["state"], "running");

    let (status, body) = sys
        .post(&format!("/api/v1/instances/{id}/stop?wait=soon"))
        .await;
    assert_error(status, &body, 400, "invalid_query");
    assert_eq!(body["error"]["details"]["field"], "wait");

    let (status, body) = sys.get("/api/v1/instances?limit=0").await;
    assert_error(status, &body, 400, "invalid_query");
    let (status, body) = sys.get("/api/v1/instances?state=asleep").await;
    assert_error(status, &body, 400, "invalid_query");
    let (status, body) = sys.get("/api/v1/instances?platform=vax").await;
    assert_error(status, &body, 400, "invalid_query");

    // PATCH: wrong media type, unknown field, failing JSON Patch test, platform is not patchable.
    let path = sys.url(&format!("/api/v1/instances/{id}"));
    let resp = sys
        .http
        .patch(&path)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_error(status, &body, 415, "unsupported_media_type");
    let resp = sys
        .http
        .patch(&path)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"colour":"red"}"#)
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_error(status, &body, 400, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "colour");
    let resp = sys
        .http
        .patch(&path)
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"test","path":"/name","value":"other"}]"#)
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_error(status, &body, 422, "patch_failed");
    let resp = sys
        .http
        .patch(&path)
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"add","path":"/platform","value":"docker"}]"#)
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_error(status, &body, 400, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "platform");
    assert_eq!(
        sys.instance(&id).await["generation"],
        1,
        "rejected patches must not write"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_live_worker_fails_fast_with_503() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("lonely").await;
    // Docker has no worker at all: creating is fine, starting is a clear 503 at once.
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "boxed", "platform": "docker", "config": sensor_config()}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let boxed = body["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let (status, body) = sys.post(&format!("/api/v1/instances/{boxed}/start")).await;
    assert_error(status, &body, 503, "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("docker"),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "503 must not wait out the timeout"
    );
    assert_eq!(sys.instance(&id).await["state"], "created");
    Ok(())
}

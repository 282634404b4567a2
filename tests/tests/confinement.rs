//! What a tenant cannot reach through its instance's spec, through the real API: file paths
//! outside the instance's directory (also when a variable holds them) and container images the
//! operator did not allow, on create and on patch.

mod common;

use common::{ApiNode, RedisServer, fresh_keys, sensor_config, status_json};
use draas_protocol::image::ImagePolicy;
use serde_json::{Value, json};

async fn post(http: &reqwest::Client, api: &ApiNode, body: &Value) -> (u16, Value) {
    let reply = http
        .post(format!("{}/api/v1/instances", api.url))
        .json(body)
        .send()
        .await
        .expect("request");
    status_json(reply).await
}

fn refused(reply: &(u16, Value), code: &str, field: &str) {
    let (status, body) = reply;
    assert_eq!(*status, 422, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["details"]["field"], field, "{body}");
}

#[tokio::test]
async fn file_paths_stay_inside_the_instance_directory() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("paths");
    let api = ApiNode::start(&redis.url, &keys).await?;
    let http = reqwest::Client::new();
    let with_store = |name: &str, path: &str| {
        let mut config = sensor_config();
        config["stateStore"] = json!({"kind": "redb", "path": path});
        json!({"name": name, "platform": "process", "config": config})
    };

    for (path, name) in [
        ("/var/lib/other/state.redb", "abs"),
        ("../other/state.redb", "dots"),
    ] {
        let reply = post(&http, &api, &with_store(name, path)).await;
        refused(&reply, "invalid_config", "config.stateStore.path");
    }
    let mut nested = sensor_config();
    nested = json!({"instances": [{
        "id": "a",
        "stateStore": {"kind": "redb", "path": "a/../../x"},
        "sources": nested["sources"], "queries": nested["queries"], "reactions": nested["reactions"]
    }]});
    let reply = post(
        &http,
        &api,
        &json!({"name": "nested", "platform": "process", "config": nested}),
    )
    .await;
    refused(
        &reply,
        "invalid_config",
        "config.instances[0].stateStore.path",
    );

    // A variable that holds an absolute path is judged as the workload would read it.
    let mut body = with_store("viavar", "${STATE}");
    body["env"] = json!({"STATE": "/etc/state.redb"});
    refused(
        &post(&http, &api, &body).await,
        "invalid_config",
        "config.stateStore.path",
    );

    let (status, body) = post(&http, &api, &with_store("fine", "state/db.redb")).await;
    assert_eq!(status, 201, "{body}");
    Ok(())
}

#[tokio::test]
async fn tenants_name_only_images_the_operator_allows() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let http = reqwest::Client::new();
    let docker = |name: &str, image: &str| json!({"name": name, "platform": "docker", "image": image, "config": sensor_config()});

    // By default tenants cannot choose at all.
    let closed = ApiNode::start(&redis.url, &fresh_keys("img")).await?;
    let reply = post(&http, &closed, &docker("mine", "ghcr.io/acme/runtime:1")).await;
    refused(&reply, "image_not_allowed", "image");
    let plain = json!({"name": "plain", "platform": "docker", "config": sensor_config()});
    let (status, body) = post(&http, &closed, &plain).await;
    assert_eq!(status, 201, "{body}");

    let open = ApiNode::start_tuned(&redis.url, &fresh_keys("img"), |c| {
        c.allowed_images = ImagePolicy::new(["ghcr.io/acme/*"]);
    })
    .await?;
    let (status, body) = post(&http, &open, &docker("mine", "ghcr.io/acme/runtime:1")).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    refused(
        &post(&http, &open, &docker("evil", "ghcr.io/evil/x:1")).await,
        "image_not_allowed",
        "image",
    );

    // A patch cannot swap the image for one outside the list either.
    let reply = http
        .patch(format!("{}/api/v1/instances/{id}", open.url))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"image": "ghcr.io/acme-evil/x:1"}).to_string())
        .send()
        .await?;
    refused(&status_json(reply).await, "image_not_allowed", "image");
    Ok(())
}

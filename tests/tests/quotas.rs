//! Tenant quotas end to end (real Redis, API, worker and draas-runtime; limits set with
//! `draas tenants`): 50 concurrent creates against max-instances 10 leave exactly 10, the
//! other 40 are 409s naming the limit, and a delete frees a unit; max-running is checked at
//! start; max-config-bytes at create and patch, with nothing written on a refusal.

mod common;

use common::{System, draas_cli, sensor_config, wait_until};
use serde_json::{Value, json};

fn set_quota(sys: &System, args: &[&str]) -> Value {
    let mut all = vec!["--json", "set", "default"];
    all.extend_from_slice(args);
    let (ok, out) = draas_cli("tenants", &sys.redis.url, &sys.keys, &all);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn tenant(sys: &System) -> Value {
    let (ok, out) = draas_cli(
        "tenants",
        &sys.redis.url,
        &sys.keys,
        &["--json", "get", "default"],
    );
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn count_instances(sys: &System) -> usize {
    let (status, body) = sys.get("/api/v1/instances?limit=500").await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().len()
}

fn assert_quota_error(status: u16, body: &Value, limit: &str, maximum: u64, current: u64) {
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    let details = &body["error"]["details"];
    assert_eq!(details["limit"], limit, "{body}");
    assert_eq!(details["maximum"], maximum, "{body}");
    assert_eq!(details["current"], current, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_against_ten_leave_exactly_ten() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let shown = set_quota(&sys, &["--max-instances", "10"]);
    assert_eq!(shown["quota"]["maxInstances"], 10, "{shown}");
    assert!(shown["quota"]["maxRunning"].is_null(), "{shown}");

    let url = sys.url("/api/v1/instances");
    let creates = (0..50).map(|n| {
        let (http, url) = (sys.http.clone(), url.clone());
        async move {
            let body =
                json!({"name": format!("q-{n}"), "platform": "process", "config": sensor_config()});
            let resp = http.post(&url).json(&body).send().await.expect("request");
            common::status_json(resp).await
        }
    });
    let results = futures::future::join_all(creates).await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 10, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_quota_error(*status, body, "max-instances", 10, 10);
    }
    assert_eq!(count_instances(&sys).await, 10);
    assert_eq!(tenant(&sys)["usage"]["instances"], 10);

    // A refused create wrote nothing, not even its name.
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "q-extra", "platform": "process", "config": sensor_config()}),
        )
        .await;
    assert_quota_error(status, &body, "max-instances", 10, 10);
    assert_eq!(tenant(&sys)["usage"]["instances"], 10);

    // Deleting one frees its unit (the worker drops the record and gives the unit back).
    let victim = created[0]["id"].as_str().unwrap();
    let (status, body) = sys
        .delete(&format!("/api/v1/instances/{victim}?wait=30"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "succeeded", "{body}");
    wait_until(|| async { (tenant(&sys)["usage"]["instances"] == 9).then_some(()) }).await?;
    // The refused create did not keep its name either: it is free now.
    sys.create("q-extra").await;
    assert_eq!(count_instances(&sys).await, 10);

    let (ok, out) = draas_cli("tenants", &sys.redis.url, &sys.keys, &["list"]);
    assert!(ok && out.contains("default: instances 10/10"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_running_at_start_and_max_config_bytes_at_create_and_patch() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let a = sys.create("run-a").await;
    let b = sys.create("run-b").await;
    set_quota(&sys, &["--max-running", "1"]);

    let (status, body) = sys
        .post(&format!("/api/v1/instances/{a}/start?wait=60"))
        .await;
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("succeeded")),
        "{body}"
    );
    let (status, body) = sys
        .post(&format!("/api/v1/instances/{b}/start?wait=60"))
        .await;
    assert_quota_error(status, &body, "max-running", 1, 1);
    assert_eq!(sys.instance(&b).await["state"], "created");
    assert_eq!(tenant(&sys)["usage"]["running"], 1);

    let (status, body) = sys
        .post(&format!("/api/v1/instances/{a}/stop?wait=60"))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_until(|| async { (tenant(&sys)["usage"]["running"] == 0).then_some(()) }).await?;
    let (status, body) = sys
        .post(&format!("/api/v1/instances/{b}/start?wait=60"))
        .await;
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("succeeded")),
        "{body}"
    );
    let (status, body) = sys
        .post(&format!("/api/v1/instances/{b}/stop?wait=60"))
        .await;
    assert_eq!(status, 200, "{body}");

    // max-config-bytes: the stored config JSON's size.
    let size = serde_json::to_vec(&sensor_config())?.len() as u64;
    let before = count_instances(&sys).await;
    set_quota(&sys, &["--max-config-bytes", "64"]);
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "too-big", "platform": "process", "config": sensor_config()}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["details"]["limit"], "max-config-bytes",
        "{body}"
    );
    assert_eq!(body["error"]["details"]["maximum"], 64, "{body}");
    assert!(
        body["error"]["details"]["current"].as_u64().unwrap() > 64,
        "{body}"
    );
    assert_eq!(count_instances(&sys).await, before);

    // A patch that grows the config past the limit is refused and changes nothing.
    set_quota(&sys, &["--max-config-bytes", &(size + 40).to_string()]);
    let mut bigger = sensor_config();
    bigger["reactions"][0]["id"] = json!("a-much-longer-reaction-name-than-before-0123456789");
    let resp = sys
        .http
        .patch(sys.url(&format!("/api/v1/instances/{a}")))
        .header("content-type", "application/merge-patch+json")
        .json(&json!({"config": bigger}))
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["details"]["limit"], "max-config-bytes",
        "{body}"
    );
    assert_eq!(
        sys.instance(&a).await["config"]["reactions"][0]["id"],
        "log"
    );
    // Removing the limit lets it through.
    set_quota(&sys, &["--max-config-bytes", "none"]);
    let resp = sys
        .http
        .patch(sys.url(&format!("/api/v1/instances/{a}")))
        .header("content-type", "application/merge-patch+json")
        .json(&json!({"config": bigger}))
        .send()
        .await?;
    let (status, body) = common::status_json(resp).await;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_never_overshoot_max_running() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(sys.create(&format!("race-{n}")).await);
    }
    set_quota(&sys, &["--max-running", "3"]);
    let starts = ids.iter().map(|id| {
        let url = sys.url(&format!("/api/v1/instances/{id}/start?wait=60"));
        let http = sys.http.clone();
        async move { common::status_json(http.post(&url).send().await.expect("request")).await }
    });
    let results = futures::future::join_all(starts).await;
    let started = results.iter().filter(|(status, _)| *status == 200).count();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == 409)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(started, 3, "exactly max-running starts pass: {results:?}");
    assert_eq!(refused.len(), 9, "{results:?}");
    for body in refused {
        assert_eq!(body["error"]["details"]["limit"], "max-running", "{body}");
    }
    assert_eq!(tenant(&sys)["usage"]["running"], 3);
    for id in &ids {
        if sys.instance(id).await["state"] == "running" {
            let (status, body) = sys
                .post(&format!("/api/v1/instances/{id}/stop?wait=60"))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_restart_is_held_to_max_running_too() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let body = json!({"name": "phoenix", "platform": "process", "config": sensor_config(),
        "restartPolicy": {"mode": "on-failure", "maxAttempts": 1, "initialBackoffMs": 1500}});
    let (status, inst) = sys.post_json("/api/v1/instances", &body).await;
    assert_eq!(status, 201, "{inst}");
    let phoenix = inst["id"].as_str().unwrap().to_owned();
    let other = sys.create("other").await;
    set_quota(&sys, &["--max-running", "1"]);
    let (status, op) = sys
        .post(&format!("/api/v1/instances/{phoenix}/start?wait=60"))
        .await;
    assert_eq!(status, 200, "{op}");
    let pid = sys.instance(&phoenix).await["runtime"]["pid"]
        .as_i64()
        .unwrap();
    common::sigkill(pid);
    sys.wait_state(&phoenix, "failed").await;
    // While phoenix waits for its restart, another instance takes the only slot.
    let (status, op) = sys
        .post(&format!("/api/v1/instances/{other}/start?wait=60"))
        .await;
    assert_eq!((status, &op["state"]), (200, &json!("succeeded")), "{op}");
    // The restart the policy schedules is refused by the quota, and says so on the instance.
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&sys.redis.url).await?,
        sys.keys.clone(),
    );
    let note = wait_until(|| async {
        store
            .recent_events(1000)
            .await
            .ok()?
            .into_iter()
            .find_map(|e| {
                let mine = e.event.instance_id.to_string() == phoenix;
                match e.event.kind {
                    draas_protocol::EventKind::Note { message }
                        if mine && message.contains("max-running") =>
                    {
                        Some(message)
                    }
                    _ => None,
                }
            })
    })
    .await?;
    assert!(note.contains("start refused"), "{note}");
    assert_eq!(sys.instance(&phoenix).await["state"], "failed");
    assert_eq!(tenant(&sys)["usage"]["running"], 1);
    let (status, op) = sys
        .post(&format!("/api/v1/instances/{other}/stop?wait=60"))
        .await;
    assert_eq!(status, 200, "{op}");
    Ok(())
}

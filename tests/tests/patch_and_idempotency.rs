//! PATCH (merge and JSON Patch, with ApplyConfig on a running instance), Idempotency-Key
//! semantics, and list filters with cursor pagination.

mod common;

use std::collections::HashSet;

use common::{System, endpoint, sensor_config};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_update_the_spec_and_reconfigure_running_instances() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("patched").await;
    let path = sys.url(&format!("/api/v1/instances/{id}"));

    let resp = sys
        .http
        .patch(&path)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"labels":{"tier":"gold"},"description":"hot sensors"}"#)
        .send()
        .await?;
    let (status, inst) = common::status_json(resp).await;
    assert_eq!(status, 200, "{inst}");
    assert_eq!(inst["labels"], json!({"tier": "gold"}));
    assert_eq!(inst["description"], "hot sensors");
    assert_eq!(inst["generation"], 2);

    assert_eq!(
        sys.post(&format!("/api/v1/instances/{id}/start")).await.0,
        200
    );
    let before = sys.instance(&id).await["runtime"]["pid"].clone();
    let add_query = json!([{"op": "add", "path": "/config/queries/-", "value": {
        "id": "all", "query": "MATCH (s:Sensor) RETURN s.id AS id", "sources": [{"sourceId": "readings"}]
    }}]);
    let resp = sys
        .http
        .patch(&path)
        .header("content-type", "application/json-patch+json")
        .body(add_query.to_string())
        .send()
        .await?;
    let op_location = resp
        .headers()
        .get("operation-location")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, inst) = common::status_json(resp).await;
    assert_eq!(status, 200, "{inst}");
    assert_eq!(inst["generation"], 3);
    assert_eq!(inst["state"], "running", "{inst}");
    assert_ne!(
        inst["runtime"]["pid"], before,
        "ApplyConfig restarts the process"
    );
    let (_, op) = sys
        .get(&op_location.expect("operation-location header"))
        .await;
    assert_eq!(
        (op["command"].clone(), op["state"].clone()),
        (json!("applyConfig"), json!("succeeded")),
        "{op}"
    );

    let queries: Value = sys
        .http
        .get(format!("{}/api/v1/queries", endpoint(&inst, "api")))
        .send()
        .await?
        .json()
        .await?;
    let ids: HashSet<&str> = queries["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["id"].as_str())
        .collect();
    assert_eq!(ids, HashSet::from(["hot", "all"]), "{queries}");

    // A patch that breaks a reference is refused, and nothing changes.
    let resp = sys
        .http
        .patch(&path)
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"replace","path":"/config/queries/0/sources/0/sourceId","value":"gone"}]"#)
        .send()
        .await?;
    assert_eq!(resp.status(), 422);
    assert_eq!(sys.instance(&id).await["generation"], 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_original_operation() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("once").await;
    let start = sys.url(&format!("/api/v1/instances/{id}/start"));
    let send = |url: String, key: &'static str| {
        let http = sys.http.clone();
        async move {
            common::status_json(
                http.post(url)
                    .header("Idempotency-Key", key)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, first) = send(start.clone(), "k-1").await;
    assert_eq!(
        (status, first["state"].clone()),
        (200, json!("succeeded")),
        "{first}"
    );
    let pid = sys.instance(&id).await["runtime"]["pid"].clone();

    let (status, again) = send(start.clone(), "k-1").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["id"], first["id"],
        "a retry returns the original operation"
    );
    assert_eq!(
        sys.instance(&id).await["runtime"]["pid"],
        pid,
        "and runs nothing"
    );

    let (status, body) = send(sys.url(&format!("/api/v1/instances/{id}/stop")), "k-1").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");

    // A refused request does not pin its key: after the refusal the same key works.
    let (status, _) = send(start.clone(), "k-2").await;
    assert_eq!(status, 409, "already running");
    let (status, body) = send(sys.url(&format!("/api/v1/instances/{id}/stop")), "k-2").await;
    assert_eq!(
        (status, body["state"].clone()),
        (200, json!("succeeded")),
        "{body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pages_with_a_cursor() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let mut all = HashSet::new();
    let mut golds = Vec::new();
    for n in 0..7 {
        let tier = if n % 2 == 0 { "gold" } else { "silver" };
        let body = json!({"name": format!("i{n}"), "platform": "process", "config": sensor_config(), "labels": {"tier": tier}});
        let (status, inst) = sys.post_json("/api/v1/instances", &body).await;
        assert_eq!(status, 201, "{inst}");
        all.insert(inst["id"].as_str().unwrap().to_owned());
        if tier == "gold" {
            golds.push(inst["id"].as_str().unwrap().to_owned());
        }
    }
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("/api/v1/instances?limit=3&cursor={c}"),
            None => "/api/v1/instances?limit=3".to_owned(),
        };
        let (status, page) = sys.get(&url).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "duplicate across pages"
            );
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, all);
    let (_, gold) = sys.get("/api/v1/instances?label=tier=gold").await;
    assert_eq!(gold["items"].as_array().unwrap().len(), 4, "{gold}");
    // A label filter pages with the cursor like the whole list: oldest first, each once.
    let labelled = |filter: &'static str| {
        let sys = &sys;
        async move {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..10 {
                let url = match &cursor {
                    Some(c) => format!("/api/v1/instances?{filter}&limit=1&cursor={c}"),
                    None => format!("/api/v1/instances?{filter}&limit=1"),
                };
                let (status, page) = sys.get(&url).await;
                assert_eq!(status, 200, "{page}");
                for item in page["items"].as_array().unwrap() {
                    seen.push(item["id"].as_str().unwrap().to_owned());
                }
                match page["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return seen,
                }
            }
            panic!("pagination of {filter} does not end")
        }
    };
    assert_eq!(labelled("label=tier=gold").await, golds);
    assert_eq!(
        labelled("label=tier=gold&state=created&platform=process").await,
        golds
    );
    assert_eq!(
        labelled("label=tier=gold&state=running").await,
        Vec::<String>::new()
    );
    assert_eq!(labelled("label=tier=bronze").await, Vec::<String>::new());
    // A label changed by PATCH moves the instance between filters at once.
    let resp = sys
        .http
        .patch(sys.url(&format!("/api/v1/instances/{}", golds[0])))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"labels":{"tier":"silver","zone":"eu"}}"#)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(labelled("label=tier=gold").await, golds[1..]);
    assert_eq!(labelled("label=zone=eu").await, golds[..1]);
    assert_eq!(labelled("label=tier=silver").await.len(), 4);
    // Repeated, every label must match.
    assert_eq!(
        labelled("label=tier=silver&label=zone=eu").await,
        golds[..1]
    );
    assert_eq!(
        labelled("label=tier=gold&label=zone=eu").await,
        Vec::<String>::new()
    );
    let (status, err) = sys
        .get("/api/v1/instances?label=tier=silver&label=zone")
        .await;
    assert_eq!(
        (status, &err["error"]["details"]["field"]),
        (400, &json!("label")),
        "{err}"
    );
    let many: Vec<String> = (0..17).map(|n| format!("label=k{n}=v")).collect();
    let (status, err) = sys
        .get(&format!("/api/v1/instances?{}", many.join("&")))
        .await;
    assert_eq!(
        (status, &err["error"]["details"]["field"]),
        (400, &json!("label")),
        "{err}"
    );
    let (_, running) = sys
        .get("/api/v1/instances?state=running&platform=process")
        .await;
    assert_eq!(running["items"], json!([]));
    let (_, platforms) = sys.get("/api/v1/platforms").await;
    assert_eq!(
        platforms["items"][0],
        json!({"platform": "process", "available": true, "workers": 1, "instances": 7})
    );
    let (_, workers) = sys.get("/api/v1/workers").await;
    assert_eq!(workers["items"].as_array().unwrap().len(), 1, "{workers}");
    // A deleted instance leaves the label filter.
    let (status, op) = sys.delete(&format!("/api/v1/instances/{}", golds[1])).await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );
    assert_eq!(labelled("label=tier=gold").await, golds[2..]);
    Ok(())
}

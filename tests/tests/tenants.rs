//! Tenant isolation end to end: two tenants create instances with the same names; each sees
//! only its own in get, list (every page), operations and the SSE event feeds, and another
//! tenant's ids answer exactly as unknown ids do. A cluster administrator sees both. Real
//! Redis, API with token authentication, a process worker and draas-runtime instances.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{ApiNode, RedisServer, WorkerNode, fresh_keys, runtime_binary, wait_until};
use draas_api::auth::AuthMode;
use draas_bus::{Store, connect};
use draas_protocol::auth::{Scope, Scopes};
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// Every instance name this client lists, one item per page.
    async fn list_all(&self) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/instances?limit=1&cursor={c}"),
                None => "/api/v1/instances?limit=1".to_owned(),
            };
            let (status, page) = self.get(&path).await;
            assert_eq!(status, 200, "{page}");
            for item in page["items"].as_array().unwrap() {
                seen.push((
                    item["tenant"].as_str().unwrap().to_owned(),
                    item["name"].as_str().unwrap().to_owned(),
                ));
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return seen,
            }
        }
    }

    /// The instance ids of the event feed's entries received until instance `until` is seen
    /// reaching `running` (or `window` passes).
    async fn events_seen(&self, path: &str, until: &str, window: Duration) -> BTreeSet<String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut resp = resp;
        let mut text = String::new();
        let _ = tokio::time::timeout(window, async {
            while let Ok(Some(chunk)) = resp.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                // An event of `until` reaching `running`: one that happens only after the
                // start below.
                let reached = text
                    .lines()
                    .any(|l| l.contains(until) && l.contains(r#""to":"running""#));
                if reached {
                    break;
                }
            }
        })
        .await;
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .filter_map(|e| e["instanceId"].as_str().map(str::to_owned))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("tenants");
    let _worker = WorkerNode::start(&redis.url, &keys, runtime_binary()).await?;
    let api = ApiNode::start_tuned(&redis.url, &keys, |c| c.auth = AuthMode::Tokens).await?;
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let tenant_scopes: Scopes = [
        Scope::InstancesRead,
        Scope::InstancesWrite,
        Scope::InstancesOperate,
    ]
    .into_iter()
    .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let client = |token: String| Client {
        http: http.clone(),
        base: api.url.clone(),
        token,
    };
    let acme = client(
        store
            .create_token("acme", tenant_scopes.clone(), None, None)
            .await?
            .secret,
    );
    let globex = client(
        store
            .create_token("globex", tenant_scopes, None, None)
            .await?
            .secret,
    );
    let admin = client(
        store
            .create_token("ops", [Scope::All].into_iter().collect(), None, None)
            .await?
            .secret,
    );
    wait_until(|| async {
        let (_, v) = admin.get("/api/v1/platforms").await;
        (v["items"][0]["available"] == true).then_some(())
    })
    .await?;

    // Same names in both tenants.
    let mut ids = Vec::new();
    for (who, tenant) in [(&acme, "acme"), (&globex, "globex")] {
        for name in ["alpha", "beta", "gamma"] {
            let (status, inst) = who
                .post(
                    "/api/v1/instances",
                    Some(json!({"name": name, "platform": "process", "config": {},
                        "labels": {"team": "core", "greek": name}})),
                )
                .await;
            assert_eq!(status, 201, "{tenant}/{name}: {inst}");
            assert_eq!(inst["tenant"], tenant);
            ids.push((tenant, inst["id"].as_str().unwrap().to_owned()));
        }
    }
    let (status, dup) = acme
        .post(
            "/api/v1/instances",
            Some(json!({"name": "alpha", "platform": "process", "config": {}})),
        )
        .await;
    assert_eq!(status, 409, "names are unique within a tenant: {dup}");

    // Lists, every page: only one's own.
    for (who, tenant) in [(&acme, "acme"), (&globex, "globex")] {
        let listed = who.list_all().await;
        let expected: Vec<(String, String)> = ["alpha", "beta", "gamma"]
            .iter()
            .map(|n| (tenant.to_owned(), (*n).to_owned()))
            .collect();
        assert_eq!(listed, expected, "{tenant} lists");
    }
    assert_eq!(admin.list_all().await.len(), 6, "a cluster admin lists all");
    // Label filters read each tenant's own label index; an administrator's, every tenant's.
    for (who, tenant) in [(&acme, "acme"), (&globex, "globex")] {
        let (status, page) = who.get("/api/v1/instances?label=team=core").await;
        assert_eq!(status, 200, "{page}");
        let listed: Vec<(&str, &str)> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["tenant"].as_str().unwrap(), i["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            listed,
            [(tenant, "alpha"), (tenant, "beta"), (tenant, "gamma")],
            "{tenant} filters its own"
        );
        let (_, beta) = who.get("/api/v1/instances?label=greek=beta").await;
        assert_eq!(beta["items"].as_array().map(Vec::len), Some(1), "{beta}");
        assert_eq!(beta["items"][0]["tenant"], tenant);
    }
    let (_, every) = admin.get("/api/v1/instances?label=greek=beta").await;
    let tenants: BTreeSet<&str> = every["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, BTreeSet::from(["acme", "globex"]), "{every}");

    // Operations and events of globex's first instance, made while acme's feeds are open.
    let acme_id = ids[0].1.clone();
    let globex_id = ids[3].1.clone();
    // acme's own start comes after globex's: once acme's event is in, a leaked globex event
    // would have arrived before it.
    let until = acme_id.clone();
    let all_feed = {
        let acme = Client {
            http: http.clone(),
            base: api.url.clone(),
            token: acme.token.clone(),
        };
        tokio::spawn(async move {
            acme.events_seen("/api/v1/events", &until, Duration::from_secs(60))
                .await
        })
    };
    let (status, op) = globex
        .post(&format!("/api/v1/instances/{globex_id}/start"), None)
        .await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );
    let op_id = op["id"].as_str().unwrap().to_owned();
    let (status, own) = acme
        .post(&format!("/api/v1/instances/{acme_id}/start"), None)
        .await;
    assert_eq!(status, 200, "{own}");
    let acme_events = all_feed.await?;
    assert!(
        acme_events.contains(&acme_id),
        "acme sees its own events: {acme_events:?}"
    );
    assert!(
        !acme_events.contains(&globex_id),
        "acme's feed carried globex's events: {acme_events:?}"
    );

    // Another tenant's ids answer exactly as unknown ids do.
    let unknown = uuid::Uuid::now_v7().to_string();
    for (path, method) in [
        (
            format!("/api/v1/instances/{globex_id}"),
            reqwest::Method::GET,
        ),
        (
            format!("/api/v1/instances/{globex_id}/stop"),
            reqwest::Method::POST,
        ),
        (
            format!("/api/v1/instances/{globex_id}/logs"),
            reqwest::Method::GET,
        ),
        (
            format!("/api/v1/instances/{globex_id}/events"),
            reqwest::Method::GET,
        ),
        (
            format!("/api/v1/instances/{globex_id}"),
            reqwest::Method::DELETE,
        ),
        (format!("/api/v1/operations/{op_id}"), reqwest::Method::GET),
    ] {
        let (status, body) = acme.send(method.clone(), &path, None).await;
        let unknown_path = path.replace(&globex_id, &unknown).replace(&op_id, &unknown);
        let (u_status, u_body) = acme.send(method.clone(), &unknown_path, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], u_body["error"]["code"], "{path}");
        assert_eq!(
            body["error"]["message"]
                .as_str()
                .map(|m| m.replace(&globex_id, "X").replace(&op_id, "X")),
            u_body["error"]["message"]
                .as_str()
                .map(|m| m.replace(&unknown, "X")),
            "{path}: the answer must not tell an existing id from an unknown one"
        );
        assert_eq!(u_status, 404);
    }
    // globex's instance is untouched by acme's attempts, and globex still sees it.
    let (status, inst) = globex.get(&format!("/api/v1/instances/{globex_id}")).await;
    assert_eq!(
        (status, inst["state"].as_str()),
        (200, Some("running")),
        "{inst}"
    );
    let (status, _) = globex.get(&format!("/api/v1/operations/{op_id}")).await;
    assert_eq!(status, 200);
    // Stop what runs.
    for (who, id) in [(&globex, &globex_id), (&acme, &acme_id)] {
        let (status, op) = who
            .post(&format!("/api/v1/instances/{id}/stop"), None)
            .await;
        assert_eq!(status, 200, "{op}");
    }
    // A deleted instance's last operation stays its tenant's to read, and only its tenant's:
    // the worker wrote the record (the API writes none for an id only the request knows) and
    // took the tenant from the command.
    let (status, deleted) = globex
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/instances/{globex_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    let delete_op = deleted["id"].as_str().unwrap_or_default().to_owned();
    let (status, gone) = globex.get(&format!("/api/v1/instances/{globex_id}")).await;
    assert_eq!(status, 404, "{gone}");
    let (status, op) = globex.get(&format!("/api/v1/operations/{delete_op}")).await;
    assert_eq!(
        (status, op["state"].as_str(), op["tenant"].as_str()),
        (200, Some("succeeded"), Some("globex")),
        "{op}"
    );
    let (status, _) = acme.get(&format!("/api/v1/operations/{delete_op}")).await;
    assert_eq!(
        status, 404,
        "another tenant reads a deleted instance's operation"
    );
    Ok(())
}

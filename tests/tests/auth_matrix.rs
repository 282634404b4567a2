//! The authorisation matrix, generated from the router's own route table: every route ×
//! {no token, garbage, expired, revoked, other tenant, missing scope, right scope}; and a
//! revoked token refused by a second API node within a second.

mod common;

use std::time::{Duration, Instant};

use common::{ApiNode, RedisServer, fresh_keys, sensor_config};
use draas_api::auth::AuthMode;
use draas_api::auth::policy::{Access, policy_for};
use draas_bus::{Store, connect};
use draas_protocol::Timestamp;
use draas_protocol::auth::{Scope, Scopes};
use serde_json::{Value, json};

async fn token(
    store: &Store,
    tenant: &str,
    scopes: &[Scope],
    expires: Option<Timestamp>,
) -> String {
    let scopes: Scopes = scopes.iter().copied().collect();
    store
        .create_token(tenant, scopes, None, expires)
        .await
        .unwrap()
        .secret
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &reqwest::Method,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = http.request(method.clone(), format!("{base}{path}"));
    if let Some(b) = bearer {
        req = req.header("Authorization", format!("Bearer {b}"));
    }
    req = match method.as_str() {
        "POST" => req.header("Content-Type", "application/json").body("{}"),
        "PATCH" => req
            .header("Content-Type", "application/merge-patch+json")
            .body("{}"),
        _ => req,
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = if path.ends_with("events") && status == 200 {
        Value::Null
    } else {
        resp.json().await.unwrap_or(Value::Null)
    };
    (status, www, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_has_a_policy_and_the_matrix_holds() {
    let redis = RedisServer::start().unwrap();
    let keys = fresh_keys("authm");
    let api = ApiNode::start_tuned(&redis.url, &keys, |c| c.auth = AuthMode::Tokens)
        .await
        .unwrap();
    let store = Store::new(connect::shared(&redis.url).await.unwrap(), keys.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // An instance of tenant `acme`, made by a writer of acme.
    let writer = token(&store, "acme", &[Scope::InstancesWrite], None).await;
    let resp = http
        .post(format!("{}/api/v1/instances", api.url))
        .bearer_auth(&writer)
        .json(&json!({"name": "one", "platform": "process", "config": sensor_config()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let inst: Value = resp.json().await.unwrap();
    assert_eq!(inst["tenant"], "acme");
    let id = inst["id"].as_str().unwrap().to_owned();

    let garbage = "draas_not-a-real-token";
    let expired = token(&store, "acme", &[Scope::All], Some(Timestamp(1))).await;
    let revoked_made = store
        .create_token("acme", [Scope::All].into_iter().collect(), None, None)
        .await
        .unwrap();
    store.revoke_token(&revoked_made.record.id).await.unwrap();
    let unknown = draas_bus::store::tokens::generate_secret().unwrap();

    let table = draas_api::routes::table();
    assert!(table.len() >= 30, "the table lists every route");
    for (method, template) in table {
        let access = policy_for(&method, template)
            .unwrap_or_else(|| panic!("{method} {template} has no policy"));
        let path = template
            .replace("{platform}", "process")
            .replace("/admin/dlq/{id}", "/admin/dlq/0-1")
            .replace("/tokens/{id}", "/tokens/nope")
            // The instance's own query and source (sensor_config), so the data routes pass
            // their checks up to the instance's state.
            .replace("{query}", "hot")
            .replace("{source}", "readings")
            .replace("{id}", &id);
        let what = format!("{method} {template}");
        let scope = match access {
            Access::Open => {
                let (status, _, _) = call(&http, &api.url, &method, &path, None).await;
                assert!(status != 401 && status != 403, "{what}: open, got {status}");
                continue;
            }
            Access::Scope(scope) => scope,
        };
        for bearer in [
            None,
            Some(garbage),
            Some(&expired[..]),
            Some(&revoked_made.secret[..]),
            Some(&unknown[..]),
        ] {
            let (status, www, body) = call(&http, &api.url, &method, &path, bearer).await;
            assert_eq!(status, 401, "{what} with {bearer:?}: {body}");
            assert_eq!(www.as_deref(), Some("Bearer"), "{what}");
            assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        }
        // Missing scope: a token holding every other non-`*` scope.
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| *s != scope && *s != Scope::All)
            .collect();
        let lacking = token(&store, "acme", &others, None).await;
        let (status, _, body) = call(&http, &api.url, &method, &path, Some(&lacking)).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert_eq!(body["error"]["code"], "insufficient_scope", "{what}");
        assert_eq!(body["error"]["details"]["scope"], scope.as_str(), "{what}");
        // Another tenant with the right scope: instance routes answer 404 as for unknown ids.
        let stranger = token(&store, "other", &[scope], None).await;
        let (status, _, body) = call(&http, &api.url, &method, &path, Some(&stranger)).await;
        assert!(status != 401 && status != 403, "{what}: {status} {body}");
        if template.starts_with("/api/v1/instances/{id}") {
            assert_eq!(status, 404, "{what}: {body}");
            assert_eq!(body["error"]["code"], "not_found", "{what}");
        }
        // The right scope in the right tenant passes authorisation.
        let right = token(&store, "acme", &[scope], None).await;
        let (status, _, body) = call(&http, &api.url, &method, &path, Some(&right)).await;
        assert!(status != 401 && status != 403, "{what}: {status} {body}");
        if template.starts_with("/api/v1/instances/{id}") && method == reqwest::Method::GET {
            assert_ne!(status, 404, "{what}: {body}");
        }
    }
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_seen_by_a_second_api_node_within_a_second() {
    let redis = RedisServer::start().unwrap();
    let keys = fresh_keys("authr");
    let tune = |c: &mut draas_api::ApiConfig| c.auth = AuthMode::Tokens;
    let a = ApiNode::start_tuned(&redis.url, &keys, tune).await.unwrap();
    let b = ApiNode::start_tuned(&redis.url, &keys, tune).await.unwrap();
    let store = Store::new(connect::shared(&redis.url).await.unwrap(), keys.clone());
    let made = store
        .create_token(
            "acme",
            [Scope::InstancesRead].into_iter().collect(),
            None,
            None,
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let status = |base: String| {
        let http = http.clone();
        let secret = made.secret.clone();
        async move {
            http.get(format!("{base}/api/v1/instances"))
                .bearer_auth(secret)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Both nodes have it cached as valid.
    assert_eq!(status(a.url.clone()).await, 200);
    assert_eq!(status(b.url.clone()).await, 200);
    // A token manager of the tenant that lacks a scope of the token cannot revoke it (it may
    // revoke only tokens no stronger than itself)...
    let weak = token(&store, "acme", &[Scope::Tokens], None).await;
    let resp = http
        .delete(format!("{}/api/v1/tokens/{}", a.url, made.record.id))
        .bearer_auth(&weak)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // ...one that holds them revokes it through node A's API.
    let manager = token(&store, "acme", &[Scope::Tokens, Scope::InstancesRead], None).await;
    let resp = http
        .delete(format!("{}/api/v1/tokens/{}", a.url, made.record.id))
        .bearer_auth(&manager)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let revoked = Instant::now();
    loop {
        if status(b.url.clone()).await == 401 && status(a.url.clone()).await == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted {:?} after revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Token management short of a cluster administrator: no `admin` grants, and a made token
/// never outlives the token that made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_cannot_escalate() {
    let redis = RedisServer::start().unwrap();
    let keys = fresh_keys("authe");
    let api = ApiNode::start_tuned(&redis.url, &keys, |c| c.auth = AuthMode::Tokens)
        .await
        .unwrap();
    let store = Store::new(connect::shared(&redis.url).await.unwrap(), keys.clone());
    let in_an_hour = Timestamp(draas_bus::clock::now().millis() + 3_600_000);
    let manager = token(
        &store,
        "acme",
        &[Scope::Tokens, Scope::Admin, Scope::InstancesRead],
        Some(in_an_hour),
    )
    .await;
    let http = reqwest::Client::new();
    let create = |body: Value| {
        let (http, url, manager) = (
            http.clone(),
            format!("{}/api/v1/tokens", api.url),
            manager.clone(),
        );
        async move {
            let resp = http
                .post(url)
                .bearer_auth(manager)
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = create(json!({"scopes": ["admin"]})).await;
    assert_eq!(status, 403, "only `*` grants admin: {body}");
    let (status, body) = create(json!({"scopes": ["*"]})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = create(json!({"scopes": ["instances:read"], "expires": "30d"})).await;
    assert_eq!(status, 201, "{body}");
    let made = store
        .token(body["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        made.expires_at.is_some_and(|at| at <= in_an_hour),
        "capped at the maker's expiry: {made:?}"
    );
    let (status, body) = create(json!({"scopes": ["instances:read"]})).await;
    assert_eq!(status, 201, "{body}");
    let made = store
        .token(body["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        made.expires_at.is_some_and(|at| at <= in_an_hour),
        "{made:?}"
    );
}

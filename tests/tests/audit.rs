//! The audit trail end to end (real Redis, API, worker and draas-runtime): a create, a
//! refused delete and a start are each an entry with actor, tenant, method, route, path,
//! status and (for the start) the operation id, read back newest first through
//! `GET /api/v1/admin/audit` (paged) and `draas ops audit --json`; plain reads are not
//! audited; the state-change events of the start name its actor.

mod common;

use common::{System, draas_cli, wait_until};
use draas_protocol::EventKind;
use serde_json::Value;

fn find<'a>(items: &'a [Value], method: &str, path: &str) -> Option<&'a Value> {
    items
        .iter()
        .find(|e| e["method"] == method && e["path"] == path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_refused_delete_and_start_are_audited_with_their_actor() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("audited").await;
    let missing = uuid::Uuid::now_v7();
    let (status, _) = sys.delete(&format!("/api/v1/instances/{missing}")).await;
    assert_eq!(status, 404);
    let (status, started) = sys
        .post(&format!("/api/v1/instances/{id}/start?wait=60"))
        .await;
    assert_eq!(status, 200, "{started}");
    let (status, _) = sys.get(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, 200);

    // Entries are written by a background writer: wait for all three.
    let start_path = format!("/api/v1/instances/{id}/start");
    let delete_path = format!("/api/v1/instances/{missing}");
    let items = wait_until(|| async {
        let (status, page) = sys.get("/api/v1/admin/audit?limit=10").await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        find(&items, "POST", &start_path).is_some().then_some(items)
    })
    .await?;
    assert_eq!(
        items.len(),
        3,
        "only mutating and refused requests: {items:?}"
    );
    assert_eq!(items[0]["path"], start_path.as_str(), "newest first");

    let create = find(&items, "POST", "/api/v1/instances").expect("create audited");
    assert_eq!(create["status"], 201);
    assert_eq!(create["actor"], "anonymous");
    assert_eq!(create["tenant"], "default");
    assert_eq!(create["route"], "/api/v1/instances");

    let refused = find(&items, "DELETE", &delete_path).expect("refused delete audited");
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["route"], "/api/v1/instances/{id}");
    assert_eq!(refused["actor"], "anonymous");

    let start = find(&items, "POST", &start_path).expect("start audited");
    assert_eq!(start["status"], 200);
    assert_eq!(start["operation"], started["id"], "{start}");
    assert_eq!(start["route"], "/api/v1/instances/{id}/start");

    // Paging: one entry a page, following nextCursor, gives the same three in order.
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/audit?limit=1&cursor={c}"),
            None => "/api/v1/admin/audit?limit=1".to_owned(),
        };
        let (status, page) = sys.get(&path).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    // The audit reads themselves are GETs answered 200: not audited.
    assert_eq!(paged, items);
    let (status, bad) = sys.get("/api/v1/admin/audit?limit=0").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["details"]["field"], "limit");

    // The same through `draas ops audit --json`, plus the refused audit read just made.
    let (ok, out) = draas_cli(
        "ops",
        &sys.redis.url,
        &sys.keys,
        &["audit", "--limit", "10", "--json"],
    );
    assert!(ok, "{out}");
    let cli: Value = serde_json::from_str(&out)?;
    let cli_items = cli["items"].as_array().cloned().unwrap_or_default();
    let last_refusal = wait_until(|| async {
        let (ok, out) = draas_cli("ops", &sys.redis.url, &sys.keys, &["audit", "--json"]);
        let page: Value = serde_json::from_str(&out).ok()?;
        let first = page["items"][0].clone();
        (ok && first["status"] == 400).then_some(first)
    })
    .await?;
    assert_eq!(last_refusal["path"], "/api/v1/admin/audit");
    assert!(cli_items.ends_with(&items), "{cli_items:?}");

    // The start's state changes name who asked.
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&sys.redis.url).await?,
        sys.keys.clone(),
    );
    let events = store.recent_events(100).await?;
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.event.instance_id.to_string() == id)
        .filter(|e| matches!(e.event.kind, EventKind::StateChanged { .. }))
        .collect();
    assert!(changes.len() >= 2, "{changes:?}");
    for change in changes {
        assert_eq!(
            change.event.actor.as_deref(),
            Some("anonymous"),
            "{change:?}"
        );
    }
    Ok(())
}

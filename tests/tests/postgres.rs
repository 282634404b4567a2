//! PostgreSQL change data capture end to end: a private PostgreSQL server per test (logical
//! replication on), real Redis, the real API and worker, real `draas-runtime`. An instance with
//! a `postgres` source and its `postgres` bootstrap provider shows a table's rows through the
//! API's data plane, then follows INSERT, UPDATE and DELETE; a `storedproc-postgres` reaction
//! writes each change back through a stored procedure; the `profiler` reaction starts. The
//! password reaches the instance only as a secret `env` value behind `${PG_PASSWORD}`.

mod common;

use common::postgres::PgServer;
use common::{System, runtime_binary, wait_until};
use draas_protocol::egress::EgressPolicy;
use serde_json::{Value, json};

/// Quotes and a space, so the plugins that build connection strings must quote it.
const PASSWORD: &str = "s3cret pass'word";

/// A database `shop` owned by the replication role `drasi`, with `orders` (two rows) in
/// publication `draas_pub`, and `audit` + `record_change` for the stored procedure reaction.
async fn shop(pg: &PgServer) -> anyhow::Result<tokio_postgres::Client> {
    pg.create_app("drasi", PASSWORD, "shop").await?;
    let db = pg.connect("shop", "drasi", PASSWORD).await?;
    db.batch_execute(
        "CREATE TABLE orders (id integer PRIMARY KEY, item text NOT NULL, qty integer NOT NULL);
         INSERT INTO orders VALUES (1, 'apple', 3), (2, 'pear', 5);
         CREATE PUBLICATION draas_pub FOR TABLE orders;
         CREATE TABLE audit (seq serial PRIMARY KEY, op text, id integer, item text, qty integer);
         CREATE PROCEDURE record_change(p_op text, p_id integer, p_item text, p_qty integer)
           LANGUAGE sql AS $$ INSERT INTO audit (op, id, item, qty) VALUES (p_op, p_id, p_item, p_qty) $$;",
    )
    .await?;
    Ok(db)
}

/// The source, its bootstrap provider (connection keys taken from the source) and a query
/// over `orders`.
fn config(pg: &PgServer, reactions: Value) -> Value {
    json!({
        "logLevel": "debug",
        "sources": [{
            "kind": "postgres", "id": "shop",
            "host": "127.0.0.1", "port": pg.port, "database": "shop",
            "user": "drasi", "password": "${PG_PASSWORD}",
            "tables": ["orders"], "publicationName": "draas_pub", "sslMode": "disable",
            "bootstrapProvider": {"kind": "postgres"}
        }],
        "queries": [{
            "id": "orders",
            "query": "MATCH (o:orders) RETURN o.id AS id, o.item AS item, o.qty AS qty",
            "sources": [{"sourceId": "shop"}]
        }],
        "reactions": reactions
    })
}

/// Redis, API and worker whose egress policy allows loopback, where the server listens.
async fn system() -> anyhow::Result<System> {
    let loopback: EgressPolicy = "127.0.0.1/32".parse()?;
    let (worker_egress, api_egress) = (loopback.clone(), loopback);
    System::start_configured(
        runtime_binary(),
        |w| w.process.egress = worker_egress,
        |a| a.egress = api_egress,
    )
    .await
}

/// Creates and starts an instance of `config` with the password as a secret; returns its id.
async fn start(sys: &System, name: &str, config: Value) -> String {
    let (status, created) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": name, "platform": "process", "config": config,
                    "env": {"PG_PASSWORD": {"value": PASSWORD, "secret": true}}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(!created.to_string().contains(PASSWORD), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );
    sys.wait_state(&id, "running").await;
    id
}

/// Rows as `(id, item, qty)`, sorted.
fn rows(items: &Value) -> Option<Vec<(i64, String, i64)>> {
    let mut out: Vec<(i64, String, i64)> = items
        .as_array()?
        .iter()
        .map(|r| {
            Some((
                r["id"].as_i64()?,
                r["item"].as_str()?.to_owned(),
                r["qty"].as_i64()?,
            ))
        })
        .collect::<Option<_>>()?;
    out.sort();
    Some(out)
}

/// Waits until the query's results through the API's data plane are `expected`.
async fn results_become(sys: &System, id: &str, expected: &[(i64, &str, i64)]) {
    let expected: Vec<(i64, String, i64)> = expected
        .iter()
        .map(|(i, s, q)| (*i, (*s).to_owned(), *q))
        .collect();
    let path = format!("/api/v1/instances/{id}/queries/orders/results");
    let seen = wait_until(|| async {
        let (status, body) = sys.get(&path).await;
        (status == 200 && rows(&body["items"]).as_ref() == Some(&expected)).then_some(())
    })
    .await;
    if seen.is_err() {
        let (status, body) = sys.get(&path).await;
        let (_, logs) = sys
            .get(&format!("/api/v1/instances/{id}/logs?tail=80"))
            .await;
        panic!("results never became {expected:?}: {status} {body}\nlogs: {logs}");
    }
}

/// Every `*.log` file under `dir`, concatenated.
fn log_files(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out += &log_files(&path);
        } else if path.to_string_lossy().contains(".log") {
            out += &String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_table_bootstraps_then_follows_inserts_updates_and_deletes() -> anyhow::Result<()>
{
    let pg = PgServer::start().await?;
    let db = shop(&pg).await?;
    let sys = system().await?;
    let id = start(&sys, "pg-cdc", config(&pg, json!([]))).await;

    // The existing rows, from the bootstrap provider.
    results_become(&sys, &id, &[(1, "apple", 3), (2, "pear", 5)]).await;
    // Then the replication stream.
    pg.wait_streaming().await?;
    db.execute("INSERT INTO orders VALUES (3, 'plum', 7)", &[])
        .await?;
    results_become(
        &sys,
        &id,
        &[(1, "apple", 3), (2, "pear", 5), (3, "plum", 7)],
    )
    .await;
    db.execute("UPDATE orders SET qty = 4 WHERE id = 1", &[])
        .await?;
    results_become(
        &sys,
        &id,
        &[(1, "apple", 4), (2, "pear", 5), (3, "plum", 7)],
    )
    .await;
    db.execute("DELETE FROM orders WHERE id = 2", &[]).await?;
    results_become(&sys, &id, &[(1, "apple", 4), (3, "plum", 7)]).await;

    // The secret is in no log the instance wrote (at debug level), nor in what the API shows.
    let logs = log_files(&sys.worker.data_dir);
    assert!(logs.contains("shop"), "the instance logged nothing? {logs}");
    assert!(!logs.contains(PASSWORD), "the password was logged");
    let shown = sys.instance(&id).await.to_string();
    assert!(!shown.contains(PASSWORD), "{shown}");

    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storedproc_reaction_writes_every_change_back_into_postgres() -> anyhow::Result<()> {
    let pg = PgServer::start().await?;
    let db = shop(&pg).await?;
    let sys = system().await?;
    let call = |op: &str, row: &str| {
        json!({"template": format!(
            "CALL record_change('{op}', {{{{param {row}.id}}}}, {{{{param {row}.item}}}}, {{{{param {row}.qty}}}})"
        )})
    };
    let reaction = json!({
        "kind": "storedproc-postgres", "id": "audit", "queries": ["orders"],
        "hostname": "127.0.0.1", "port": pg.port, "database": "shop",
        "user": "drasi", "password": "${PG_PASSWORD}", "retryAttempts": 1,
        "routes": {"orders": {
            "added": call("added", "after"),
            "updated": call("updated", "after"),
            "deleted": call("deleted", "before")
        }}
    });
    let id = start(&sys, "pg-storedproc", config(&pg, json!([reaction]))).await;
    results_become(&sys, &id, &[(1, "apple", 3), (2, "pear", 5)]).await;
    pg.wait_streaming().await?;

    db.execute("INSERT INTO orders VALUES (3, 'plum', 7)", &[])
        .await?;
    db.execute("UPDATE orders SET qty = 4 WHERE id = 1", &[])
        .await?;
    db.execute("DELETE FROM orders WHERE id = 2", &[]).await?;
    let expected = [
        ("added".to_owned(), 3, "plum".to_owned(), 7),
        ("updated".to_owned(), 1, "apple".to_owned(), 4),
        ("deleted".to_owned(), 2, "pear".to_owned(), 5),
    ];
    let audit = wait_until(|| async {
        let rows = db
            .query("SELECT op, id, item, qty FROM audit ORDER BY seq", &[])
            .await
            .ok()?;
        let rows: Vec<(String, i32, String, i32)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        // The bootstrap's rows may or may not be reported as additions; the changes follow.
        let changes: Vec<_> = rows
            .iter()
            .filter(|r| !(r.0 == "added" && r.1 != 3))
            .cloned()
            .collect();
        (changes.len() >= expected.len()).then_some(changes)
    })
    .await;
    let audit = match audit {
        Ok(audit) => audit,
        Err(_) => {
            let (_, logs) = sys
                .get(&format!("/api/v1/instances/{id}/logs?tail=80"))
                .await;
            panic!("the audit rows never arrived; logs: {logs}");
        }
    };
    let audit: Vec<(String, i64, String, i64)> = audit
        .into_iter()
        .map(|(op, id, item, qty)| (op, id.into(), item, qty.into()))
        .collect();
    assert_eq!(audit, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_profiler_reaction_is_accepted_and_starts() -> anyhow::Result<()> {
    let sys = system().await?;
    let config = json!({
        "sources": [{"kind": "mock", "id": "m", "intervalMs": 50}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n.value AS value",
                     "sources": [{"sourceId": "m"}]}],
        "reactions": [{"kind": "profiler", "id": "profile", "queries": ["q"],
                       "windowSize": 100, "reportIntervalSecs": 1}]
    });
    let id = start(&sys, "profiler", config).await;
    let inst = sys.instance(&id).await;
    let api = common::endpoint(&inst, "api");
    let http = reqwest::Client::new();
    let status = wait_until(|| async {
        let v = common::get_json(&http, &format!("{api}/api/v1/reactions/profile")).await?;
        (v["data"]["status"] == "Running").then_some(v)
    })
    .await;
    assert!(status.is_ok(), "the profiler never ran");
    // A bad key is refused at create, naming it.
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "bad-profiler", "platform": "process", "config": {
                "sources": [{"kind": "mock", "id": "m"}],
                "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
                "reactions": [{"kind": "profiler", "id": "p", "queries": ["q"], "window": 5}]}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "config.reactions[0].window",
        "{body}"
    );
    Ok(())
}

//! The MySQL and SQL Server stored-procedure reactions through the real API, worker and
//! `draas-runtime`. No MySQL or SQL Server runs here, so what is checked is what can be
//! without one: both kinds are accepted (tests/configs/storedproc-*.yaml covers
//! `draas-runtime validate` and the API's create), their servers are judged by the egress
//! policy at create, and an instance whose reaction points at a closed loopback port fails
//! its start with the plugin's own message: the plugin connects when the reaction starts and
//! drasi-lib fails the instance's start when a reaction does not start.

mod common;

use common::{System, runtime_binary};
use draas_protocol::egress::EgressPolicy;
use serde_json::{Value, json};

fn config(kind: &str, hostname: &str, port: Option<u16>) -> Value {
    let mut reaction = json!({
        "kind": kind, "id": "audit", "queries": ["q"], "hostname": hostname,
        "user": "drasi", "password": "${DB_PASSWORD}", "database": "shop",
        "retryAttempts": 0, "commandTimeoutMs": 2000,
        "defaultTemplate": {"added": {"template": "CALL record_added({{param after.value}})"}}
    });
    if let Some(port) = port {
        reaction["port"] = json!(port);
    }
    json!({
        "sources": [{"kind": "mock", "id": "m", "intervalMs": 200}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n.value AS value",
                     "sources": [{"sourceId": "m"}]}],
        "reactions": [reaction]
    })
}

async fn create(sys: &System, name: &str, config: Value) -> (u16, Value) {
    sys.post_json(
        "/api/v1/instances",
        &json!({"name": name, "platform": "process", "config": config,
                "env": {"DB_PASSWORD": {"value": "not-a-real-password", "secret": true}}}),
    )
    .await
}

/// A port on loopback where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mysql_reaction_whose_server_is_closed_fails_the_start_saying_so() -> anyhow::Result<()> {
    let loopback: EgressPolicy = "127.0.0.1/32".parse()?;
    let (worker_egress, api_egress) = (loopback.clone(), loopback);
    let sys = System::start_configured(
        runtime_binary(),
        |w| w.process.egress = worker_egress,
        |a| a.egress = api_egress,
    )
    .await?;

    let port = closed_port();
    let (status, created) = create(
        &sys,
        "mysql-closed",
        config("storedproc-mysql", "127.0.0.1", Some(port)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["state"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "start_failed", "{op}");
    let message = op["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Failed to connect to MySQL") && message.contains("Connection refused"),
        "the plugin's reason belongs in the error: {message}"
    );
    assert!(
        !message.contains("not-a-real-password"),
        "no secret in the error: {message}"
    );
    assert_eq!(sys.instance(&id).await["state"], "failed");

    // Both kinds' servers are judged by the egress policy at create, with their default
    // ports: outside loopback, refused naming the key.
    for kind in ["storedproc-mysql", "storedproc-mssql"] {
        let (status, body) =
            create(&sys, &format!("{kind}-out"), config(kind, "10.1.2.3", None)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "egress_denied", "{body}");
        assert_eq!(
            body["error"]["details"]["field"], "config.reactions[0].hostname",
            "{body}"
        );
    }
    Ok(())
}

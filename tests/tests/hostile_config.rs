//! A tenant's config is hostile input: it must not read the worker's environment (through
//! a settings field's `${VAR}`, which an http reaction sends, or anything else), must not choose its listeners, and must not
//! reach destinations the operator's egress policy denies. Secrets of the instance's own
//! environment never appear in a read. Real Redis, API, worker and draas-runtime processes.

mod common;

use std::time::Duration;

use common::{System, endpoint, runtime_binary, wait_until};
use draas_protocol::EgressPolicy;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "s3cr3t-value-7f1c";

/// Accepts HTTP requests on loopback and hands each one's text (head and body) over.
async fn receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let l = l.to_ascii_lowercase();
                            l.strip_prefix("content-length:")?
                                .trim()
                                .parse::<usize>()
                                .ok()
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        let _ = tx.send(text);
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// The variables each http reaction of [`leaky_config`] sends as its bearer token (a
/// reaction's `token` is a settings field: a whole-value `${VAR}` there is resolved), and the
/// token expected: the worker's variables never resolve (their defaults do), the instance's
/// own do.
const TOKENS: &[(&str, &str, &str)] = &[
    ("home", "${HOME:-absent}", "absent"),
    ("dir", "${CARGO_MANIFEST_DIR:-absent}", "absent"),
    ("redis", "${REDIS_URL:-absent}", "absent"),
    ("greeting", "${GREETING}", "hello"),
    ("token", "${TOKEN}", SECRET),
];

fn leaky_config(receiver: u16) -> Value {
    let mut reactions = vec![json!({"kind": "log", "id": "log", "queries": ["q"]})];
    for (id, token, _) in TOKENS {
        reactions.push(json!({"kind": "http", "id": id, "queries": ["q"],
                              "baseUrl": format!("http://127.0.0.1:{receiver}"), "token": token}));
    }
    json!({
        // Plugin management is the operator's: a shared directory, a host path as registry.
        "autoInstallPlugins": true,
        "pluginRegistry": "/tmp/evil-plugins",
        "plugins": [{"ref": "source/http"}],
        "sources": [{"kind": "http", "id": "readings"}],
        "queries": [{
            "id": "q",
            // A query's text is no settings field: nothing in it is resolved.
            "query": "MATCH (s:Sensor) RETURN s.id AS id, s.note AS note, \
                      '${HOME:-absent}' AS home, '${TOKEN}' AS token",
            "sources": [{"sourceId": "readings"}]
        }],
        "reactions": reactions
    })
}

#[tokio::test]
async fn the_worker_environment_never_reaches_an_instance() -> anyhow::Result<()> {
    let home = std::env::var("HOME")?;
    let manifest = env!("CARGO_MANIFEST_DIR");
    let loopback: EgressPolicy = "127.0.0.1/32".parse()?;
    let (worker_egress, api_egress) = (loopback.clone(), loopback);
    let sys = System::start_configured(
        runtime_binary(),
        |w| w.process.egress = worker_egress,
        |a| a.egress = api_egress,
    )
    .await?;
    let (port, mut requests) = receiver().await;
    let (status, created) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "leaky", "platform": "process", "config": leaky_config(port),
                    "env": {"GREETING": "hello", "TOKEN": {"value": SECRET, "secret": true}}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["env"]["TOKEN"],
        json!({"secret": true}),
        "{created}"
    );
    // A patch of something else keeps the secret, unseen.
    let patched = sys
        .http
        .patch(sys.url(&format!("/api/v1/instances/{id}")))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "patched"}"#)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        patched.contains("patched") && !patched.contains(SECRET),
        "{patched}"
    );

    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );
    let inst = sys.instance(&id).await;

    // The process's environment, read from the kernel: built from nothing.
    let pid = inst["runtime"]["pid"].as_u64().expect("a pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let names: Vec<&str> = vars.iter().filter_map(|v| v.split('=').next()).collect();
    assert!(
        !names.contains(&"HOME") && !names.contains(&"CARGO_MANIFEST_DIR"),
        "{vars:?}"
    );
    for expected in [
        "PATH",
        "NO_COLOR",
        "GREETING",
        "TOKEN",
        "DRAAS_EGRESS",
        "HTTP_PROXY",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {vars:?}"
        );
    }

    // The rendered config: the DRaaS id, every listener on the platform's loopback address.
    let rendered = std::fs::read_to_string(
        sys.worker
            .data_dir
            .join("instances")
            .join(&id)
            .join("config.yaml"),
    )?;
    assert!(rendered.starts_with(&format!("id: {id}\n")), "{rendered}");
    assert!(!rendered.contains("0.0.0.0"), "{rendered}");
    // No plugin is installed, fetched or reloaded, whatever the config said; it was told so.
    assert!(rendered.contains("autoInstallPlugins: false"), "{rendered}");
    assert!(rendered.contains("hotReloadPlugins: false"), "{rendered}");
    assert!(
        !rendered.contains("evil-plugins") && !rendered.contains("plugins:\n"),
        "{rendered}"
    );
    let warned: Vec<&str> = created["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["field"].as_str())
        .collect();
    for key in [
        "config.plugins",
        "config.autoInstallPlugins",
        "config.pluginRegistry",
    ] {
        assert!(warned.contains(&key), "{key} not in {warned:?}");
    }

    // Feed one reading and read the results straight from the instance. Its note is the
    // secret's value, which the log reaction writes to the instance's log.
    let source = endpoint(&inst, "source:readings");
    let event = json!({"operation": "insert", "element": {"type": "node", "id": "s1",
        "labels": ["Sensor"], "properties": {"id": "s1", "note": SECRET}}});
    let resp = sys
        .http
        .post(format!("{source}/sources/readings/events"))
        .json(&event)
        .send()
        .await?;
    assert!(resp.status().is_success());
    let results_url = format!("{}/api/v1/queries/q/results", endpoint(&inst, "api"));
    let row = wait_until(|| {
        let (http, url) = (sys.http.clone(), results_url.clone());
        async move {
            let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            body["data"].as_array()?.first().cloned()
        }
    })
    .await?;
    assert_eq!(row["home"], "${HOME:-absent}", "kept as written: {row}");
    assert_eq!(row["token"], "${TOKEN}", "kept as written: {row}");

    // Each http reaction's request (through the egress proxy) carries its resolved token and
    // nothing of the worker.
    let mut tokens = Vec::new();
    while tokens.len() < TOKENS.len() {
        let request = tokio::time::timeout(Duration::from_secs(30), requests.recv())
            .await?
            .expect("the http reactions called");
        assert!(
            !request.contains(&home) && !request.contains(manifest),
            "{request}"
        );
        let token = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("authorization").then(|| {
                    value
                        .trim()
                        .strip_prefix("Bearer ")
                        .unwrap_or(value.trim())
                        .to_owned()
                })
            })
            .unwrap_or_else(|| panic!("no authorization header: {request}"));
        tokens.push(token);
    }
    tokens.sort();
    let mut expected: Vec<String> = TOKENS.iter().map(|(_, _, t)| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(
        tokens, expected,
        "the instance's own variables resolve, the worker's never"
    );

    // Logs through the API: the log reaction's lines, with the secret scrubbed.
    let logs = wait_until(|| async {
        let (status, body) = sys
            .get(&format!("/api/v1/instances/{id}/logs?tail=200"))
            .await;
        let lines = body["lines"].as_str()?.to_owned();
        // The log reaction's line of the row (its `home` column, kept as written).
        (status == 200 && lines.contains("${HOME:-absent}")).then_some(lines)
    })
    .await?;
    assert!(!logs.contains(SECRET), "a secret in the logs: {logs}");
    assert!(logs.contains("<redacted>"), "{logs}");
    assert!(!logs.contains(&home) && !logs.contains(manifest), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI colour codes in the logs: {logs}"
    );

    // Every read of the instance hides the secret.
    for path in [
        format!("/api/v1/instances/{id}"),
        "/api/v1/instances".to_owned(),
    ] {
        let text = sys.http.get(sys.url(&path)).send().await?.text().await?;
        assert!(!text.contains(SECRET), "{path}: {text}");
    }
    let (status, _) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn create_refuses_what_a_tenant_may_not_decide() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let with_reaction = |reaction: Value| {
        json!({
            "sources": [{"kind": "http", "id": "in"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "in"}]}],
            "reactions": [reaction]
        })
    };
    let cases = [
        (
            with_reaction(
                json!({"kind": "http", "id": "h", "queries": ["q"], "baseUrl": "http://127.0.0.1:6379"}),
            ),
            json!({}),
            "config.reactions[0].baseUrl",
            "egress_denied",
        ),
        (
            with_reaction(json!({"kind": "http", "id": "h", "queries": ["q"]})),
            json!({}),
            "config.reactions[0].baseUrl",
            "egress_denied",
        ),
        (
            with_reaction(
                json!({"kind": "http", "id": "h", "queries": ["q"], "baseUrl": "https://example.com",
                "outputTemplates": {"defaultTemplate": {"added": {"url": "http://169.254.169.254/latest/meta-data", "method": "GET"}}}}),
            ),
            json!({}),
            "config.reactions[0].outputTemplates.defaultTemplate.added.url",
            "egress_denied",
        ),
        (
            with_reaction(
                json!({"kind": "http", "id": "h", "queries": ["q"], "baseUrl": "${TARGET}"}),
            ),
            json!({"TARGET": "http://localhost:8080"}),
            "config.reactions[0].baseUrl",
            "egress_denied",
        ),
        (
            with_reaction(json!({"kind": "log", "id": "l", "queries": ["q"]})),
            json!({"LD_PRELOAD": "/tmp/evil.so"}),
            "env.LD_PRELOAD",
            "invalid_env",
        ),
        (
            with_reaction(json!({"kind": "log", "id": "l", "queries": ["q"]})),
            json!({"HTTPS_PROXY": "http://evil"}),
            "env.HTTPS_PROXY",
            "invalid_env",
        ),
        (
            with_reaction(json!({"kind": "http", "id": "h", "queries": ["q"],
                                 "baseUrl": "https://example.com", "token": "${REDIS_URL}"})),
            json!({}),
            "config.reactions[0].token",
            "unresolved_variable",
        ),
    ];
    for (config, env, field, code) in cases {
        let (status, body) = sys
            .post_json(
                "/api/v1/instances",
                &json!({"name": "hostile", "platform": "process", "config": config, "env": env}),
            )
            .await;
        assert_eq!(status, 422, "{field}: {body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
    let (_, list) = sys.get("/api/v1/instances").await;
    assert_eq!(list["items"], json!([]), "nothing was written");

    // Listener addresses are the platform's: a config that sets them (as drasi-server configs
    // do) is accepted, and the answer names each field the platform replaces.
    let config = json!({
        "sources": [{"kind": "http", "id": "in", "host": "0.0.0.0"}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "in"}]}],
        "reactions": [{"kind": "sse", "id": "s", "queries": ["q"], "port": 9999}]
    });
    let (status, body) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "listeners", "platform": "process", "config": config}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let fields: Vec<&str> = body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["config.sources[0].host", "config.reactions[0].port"],
        "{body}"
    );
    Ok(())
}

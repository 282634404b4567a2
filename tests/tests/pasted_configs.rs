//! drasi-server configs work as pasted. Every file of `tests/configs/` is checked twice: with
//! the real `draas-runtime validate --config FILE`, and through the real API (create with the
//! YAML parsed to JSON as `config`), against the expectation its header states:
//!
//! ```text
//! # expect: ok [warns FIELD…]          the first line: both checks
//! # expect: refused TEXT               refused, the error containing TEXT
//! # expect-api: …  /  # expect-runtime: …   (optional) one check differs
//! # env: NAME=value …                  (optional) the variables the file needs
//! ```
//!
//! `warns` lists the fields the API names in `warnings` (draas-runtime runs what it is given
//! and warns about nothing). When a kind becomes supported, its file's expectation flips.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{System, endpoint, runtime_binary, scratch, wait_until};
use draas_protocol::drasi::interpolate::yaml_to_json;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Accepted; the API's `warnings` name exactly these fields (in any order).
    Ok(Vec<String>),
    /// Refused with an error containing this text.
    Refused(String),
}

#[derive(Debug)]
struct Case {
    name: String,
    path: PathBuf,
    text: String,
    runtime: Expect,
    api: Expect,
    env: BTreeMap<String, String>,
}

fn parse_expect(file: &Path, spec: &str) -> Expect {
    let spec = spec.trim();
    if let Some(text) = spec.strip_prefix("refused ") {
        return Expect::Refused(text.trim().to_owned());
    }
    match spec.strip_prefix("ok") {
        Some("") => Expect::Ok(Vec::new()),
        Some(rest) => {
            let fields = rest
                .trim()
                .strip_prefix("warns ")
                .unwrap_or_else(|| panic!("{}: `ok` or `ok warns FIELD…`", file.display()));
            Expect::Ok(fields.split_whitespace().map(str::to_owned).collect())
        }
        None => panic!(
            "{}: an expectation is `ok…` or `refused TEXT`, not `{spec}`",
            file.display()
        ),
    }
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "configs in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let first = text.lines().next().unwrap_or_default();
            let both = first.strip_prefix("# expect:").unwrap_or_else(|| {
                panic!("{}: the first line must be `# expect: …`", path.display())
            });
            let both = parse_expect(&path, both);
            let (mut runtime, mut api) = (both.clone(), both);
            let mut env = BTreeMap::new();
            for line in text.lines().skip(1).take_while(|l| l.starts_with('#')) {
                if let Some(spec) = line.strip_prefix("# expect-api:") {
                    api = parse_expect(&path, spec);
                } else if let Some(spec) = line.strip_prefix("# expect-runtime:") {
                    runtime = parse_expect(&path, spec);
                } else if let Some(vars) = line.strip_prefix("# env:") {
                    for var in vars.split_whitespace() {
                        let (name, value) = var
                            .split_once('=')
                            .unwrap_or_else(|| panic!("{}: `# env: NAME=value …`", path.display()));
                        env.insert(name.to_owned(), value.to_owned());
                    }
                }
            }
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            Case {
                name,
                path,
                text,
                runtime,
                api,
                env,
            }
        })
        .collect()
}

/// The files cover what the issue names: each kind, supported or not yet, and each feature.
#[test]
fn the_directory_covers_every_kind_and_feature() {
    let all: String = cases().iter().map(|c| c.text.clone()).collect();
    for needle in [
        "kind: http\n",
        "webhooks:",
        "kind: mock",
        "kind: log",
        "kind: sse",
        "outputTemplates:",
        "instances:",
        "${{",
        ":-",
        "stateStore:",
        "joins:",
        "middleware:",
        "kind: postgres",
        "kind: grpc",
        "kind: profiler",
        "kind: http-adaptive",
        "kind: grpc-adaptive",
        "kind: storedproc-mysql",
        "kind: storedproc-mssql",
        "persistIndex: true",
        "port: 8080",
        "port: \"${DB_PORT:-5432}\"",
        "kind: EnvironmentVariable",
        "kind: Secret",
        "Bearer ${",
        "timeoutMs: \"${",
    ] {
        assert!(all.contains(needle), "no config has `{needle}`");
    }
}

#[test]
fn every_config_validates_with_draas_runtime_as_expected() {
    let workdir = scratch("pasted-runtime");
    let mut failures = Vec::new();
    for case in cases() {
        let out = std::process::Command::new(runtime_binary())
            .arg("validate")
            .arg("--config")
            .arg(&case.path)
            .env_clear()
            .envs(&case.env)
            .current_dir(&workdir)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run draas-runtime");
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = match &case.runtime {
            Expect::Ok(_) => out.status.success(),
            Expect::Refused(text) => !out.status.success() && output.contains(text.as_str()),
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, draas-runtime validate said ({}): {output}",
                case.name, case.runtime, out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn fields(warnings: &Value) -> Vec<String> {
    let mut fields: Vec<String> = warnings
        .as_array()
        .unwrap_or_else(|| panic!("`warnings` is always a list: {warnings}"))
        .iter()
        .map(|w| {
            assert!(w["message"].as_str().is_some_and(|m| !m.is_empty()), "{w}");
            w["field"].as_str().unwrap().to_owned()
        })
        .collect();
    fields.sort();
    fields
}

#[tokio::test]
async fn every_config_is_created_through_the_api_as_expected() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let mut failures = Vec::new();
    for case in cases() {
        let config = yaml_to_json(&case.text).map_err(|e| anyhow::anyhow!("{}: {e}", case.name))?;
        let (status, body) = sys
            .post_json(
                "/api/v1/instances",
                &json!({"name": case.name, "platform": "process", "config": config,
                        "env": case.env}),
            )
            .await;
        match &case.api {
            Expect::Ok(expected) => {
                let mut expected = expected.clone();
                expected.sort();
                if status != 201 {
                    failures.push(format!("{}: expected 201, got {status}: {body}", case.name));
                    continue;
                }
                if fields(&body["warnings"]) != expected {
                    failures.push(format!(
                        "{}: warnings {} instead of {expected:?}",
                        case.name, body["warnings"]
                    ));
                }
                // Every read says the same, computed from the stored spec.
                let id = body["id"].as_str().unwrap();
                let read = sys.instance(id).await;
                assert_eq!(read["warnings"], body["warnings"], "{}", case.name);
            }
            Expect::Refused(text) => {
                let error = &body["error"];
                let said = format!(
                    "{} {} {}",
                    error["code"].as_str().unwrap_or_default(),
                    error["details"]["field"].as_str().unwrap_or_default(),
                    error["message"].as_str().unwrap_or_default()
                );
                if status != 422 || !said.contains(text.as_str()) {
                    failures.push(format!(
                        "{}: expected a 422 containing `{text}`, got {status}: {body}",
                        case.name
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// A config whose source says `host: 0.0.0.0, port: 9000` and whose REST API says
/// `0.0.0.0:8080` is accepted with warnings naming each field, starts, and listens only where
/// the platform put it.
#[tokio::test]
async fn a_pasted_config_runs_on_the_platforms_listeners_and_says_so() -> anyhow::Result<()> {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "http-source")
        .expect("tests/configs/http-source.yaml");
    let sys = System::start().await?;
    let config = yaml_to_json(&case.text)?;
    let (status, created) = sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "pasted", "platform": "process", "config": config}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let expected = [
        "config.host",
        "config.id",
        "config.plugins",
        "config.port",
        "config.sources[0].host",
        "config.sources[0].port",
    ];
    assert_eq!(fields(&created["warnings"]), expected, "{created}");
    let port_warning = created["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["field"] == "config.sources[0].port")
        .unwrap();
    assert_eq!(
        port_warning["message"],
        "replaced by the port the platform assigns; DRaaS owns every listen address"
    );
    // The config is kept as given: the warnings are computed on every read, not stored.
    assert_eq!(created["config"]["sources"][0]["port"], 9000, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // PATCH answers with the warnings too, and so does the list.
    let resp = sys
        .http
        .patch(sys.url(&format!("/api/v1/instances/{id}")))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "pasted from drasi-server"}"#)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await?;
    assert_eq!(fields(&patched["warnings"]), expected, "{patched}");
    let (_, list) = sys.get("/api/v1/instances").await;
    assert_eq!(fields(&list["items"][0]["warnings"]), expected, "{list}");

    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );
    let inst = sys.instance(&id).await;
    assert_eq!(inst["state"], "running", "{inst}");
    assert_eq!(fields(&inst["warnings"]), expected, "{inst}");
    let api = endpoint(&inst, "api");
    let source = endpoint(&inst, "source:readings");
    for url in [&api, &source] {
        let port: u16 = url.rsplit(':').next().unwrap().parse()?;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(
            port != 8080 && port != 9000,
            "the platform's port, not the config's: {url}"
        );
    }
    let rendered = std::fs::read_to_string(
        sys.worker
            .data_dir
            .join("instances")
            .join(&id)
            .join("config.yaml"),
    )?;
    assert!(!rendered.contains("0.0.0.0"), "{rendered}");
    assert!(
        !rendered.contains("port: 9000") && !rendered.contains("port: 8080"),
        "{rendered}"
    );

    // The source listens where the platform said, and the query sees what it receives.
    let event = json!({"operation": "insert", "element": {"type": "node", "id": "s1",
        "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 90}}});
    let resp = sys
        .http
        .post(format!("{source}/sources/readings/events"))
        .json(&event)
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    let results = format!("{api}/api/v1/queries/hot-sensors/results");
    let row = wait_until(|| {
        let (http, url) = (sys.http.clone(), results.clone());
        async move {
            let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            body["data"].as_array()?.first().cloned()
        }
    })
    .await?;
    assert_eq!(row["id"], "s1", "{row}");
    let (status, _) = sys.post(&format!("/api/v1/instances/{id}/stop")).await;
    assert_eq!(status, 200);
    Ok(())
}

/// A port written as a whole `${VAR}` reference (drasi-server's `ConfigValue<u16>`) is kept
/// as written and resolved from the instance's env: unset, it is the `unresolved_variable`
/// 422 naming the field; set to something that is no port, a 422 naming the field and the
/// reference but not the value; the egress check judges the resolved port.
#[tokio::test]
async fn a_port_reference_is_resolved_from_the_env_and_named_when_it_fails() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let config = |host: &str, port: &str| {
        json!({
            "sources": [{"kind": "postgres", "id": "pg", "host": host, "port": port,
                         "database": "shop", "user": "drasi", "tables": ["public.orders"]}],
            "queries": [{"id": "q", "query": "MATCH (o:orders) RETURN o.id AS id",
                         "sources": [{"sourceId": "pg"}]}]})
    };
    let create = |name: &str, config: Value, env: Value| {
        let body = json!({"name": name, "platform": "process", "config": config, "env": env});
        let sys = &sys;
        async move { sys.post_json("/api/v1/instances", &body).await }
    };

    let (status, body) = create("missing", config("db.example.com", "${MISSING}"), json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unresolved_variable", "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "config.sources[0].port",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`MISSING`"),
        "{body}"
    );

    for (env, name) in [
        (json!({"DB_PORT": "abc"}), "not-a-number"),
        (
            json!({"DB_PORT": {"value": "hunter2", "secret": true}}),
            "secret",
        ),
        (json!({"DB_PORT": "70000"}), "too-big"),
    ] {
        let (status, body) = create(name, config("db.example.com", "${DB_PORT}"), env).await;
        assert!((400..500).contains(&status), "{name}: {status} {body}");
        assert_eq!(
            body["error"]["details"]["field"], "config.sources[0].port",
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`${DB_PORT}`"), "{message}");
        assert!(
            !message.contains("hunter2"),
            "a secret value leaked: {message}"
        );
    }

    // Egress is judged on the resolved address.
    let (status, body) = create(
        "local-db",
        config("127.0.0.1", "${DB_PORT:-5432}"),
        json!({"DB_PORT": "6543"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("egress_denied")),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"]["field"], "config.sources[0].host",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:6543"),
        "{body}"
    );

    // Resolvable: created, the reference kept as written.
    let (status, body) = create(
        "resolved",
        config("db.example.com", "${DB_PORT:-5432}"),
        json!({"DB_PORT": "6543"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["config"]["sources"][0]["port"], "${DB_PORT:-5432}",
        "{body}"
    );
    Ok(())
}

/// A numeric settings field (`timeoutMs`, drasi-server's `ConfigValue<u64>`) takes a whole
/// `${VAR}` reference like a port: kept as written, resolved from the env at create (unset
/// with no default, or no number, a 422 naming the field and the reference, never the
/// value). A structured reference is stored in its string form; a `Secret` one is refused
/// naming the field; a reference inside a longer value is kept as written and said in
/// `warnings`.
#[tokio::test]
async fn settings_references_are_checked_at_create_and_kept_as_written() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let config = |reaction: Value| {
        json!({
            "sources": [{"kind": "mock", "id": "m"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n.id AS id", "sources": [{"sourceId": "m"}]}],
            "reactions": [reaction]})
    };
    let http = |extra: Value| {
        let mut r = json!({"kind": "http", "id": "out", "queries": ["q"],
                           "baseUrl": "https://hooks.example.com"});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        config(r)
    };
    let create = |name: &str, config: Value, env: Value| {
        let body = json!({"name": name, "platform": "process", "config": config, "env": env});
        let sys = &sys;
        async move { sys.post_json("/api/v1/instances", &body).await }
    };

    let (status, body) = create(
        "timeout",
        http(json!({"timeoutMs": "${T:-100}", "token": "Bearer ${TOKEN}"})),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["config"]["reactions"][0]["timeoutMs"], "${T:-100}",
        "{body}"
    );
    assert_eq!(
        fields(&body["warnings"]),
        ["config.reactions[0].token"],
        "{body}"
    );

    let (status, body) = create(
        "not-a-number",
        http(json!({"timeoutMs": "${T}"})),
        json!({"T": {"value": "hunter2", "secret": true}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "config.reactions[0].timeoutMs",
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`${T}`"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "a secret value leaked: {message}"
    );

    let (status, body) = create("unset", http(json!({"timeoutMs": "${T}"})), json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unresolved_variable")),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"]["field"], "config.reactions[0].timeoutMs",
        "{body}"
    );

    let (status, body) = create(
        "structured",
        http(
            json!({"token": {"kind": "EnvironmentVariable", "name": "TOKEN", "default": "none"},
                    "timeoutMs": {"kind": "EnvironmentVariable", "name": "T"}}),
        ),
        json!({"T": "250"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let reaction = &body["config"]["reactions"][0];
    assert_eq!(
        (&reaction["token"], &reaction["timeoutMs"]),
        (&json!("${TOKEN:-none}"), &json!("${T}")),
        "{body}"
    );

    let (status, body) = create(
        "secret",
        http(json!({"token": {"kind": "Secret", "name": "crm-token"}})),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_config")),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"]["field"], "config.reactions[0].token",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("secret references"),
        "{body}"
    );
    Ok(())
}

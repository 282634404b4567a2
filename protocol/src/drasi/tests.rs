//! Unit tests for the drasi config model: parsing errors with paths, kinds, references,
//! golden YAML rendering and port assignment.

use super::*;

const GOOD: &str = r#"
apiVersion: drasi.io/v1
id: demo
logLevel: INFO
persistConfig: false
sources:
  - kind: http
    id: sensors
    host: 127.0.0.1
    port: "9100"
  - kind: mock
    id: fake
    dataType: {type: sensorReading, sensorCount: 3}
    intervalMs: 500
queries:
  - id: hot
    query: MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id
    sources:
      - sourceId: sensors
  - id: gql
    query: MATCH (s:Sensor) RETURN s.id AS id
    queryLanguage: GQL
    autoStart: false
    sources: [{sourceId: fake}]
reactions:
  - kind: log
    id: out
    queries: [hot]
    defaultTemplate:
      added: {template: "+ {{after.id}}"}
"#;

pub(super) fn parse(s: &str) -> DrasiConfig {
    DrasiConfig::from_yaml_str(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn parses_and_validates_a_full_config() {
    let cfg = parse(GOOD);
    cfg.validate().unwrap();
    assert_eq!(cfg.sources.len(), 2);
    let SourceConfig::Http(http) = &cfg.sources[0] else {
        panic!("http source expected")
    };
    assert_eq!(
        http.port,
        Some(Port::Number(9100)),
        "a quoted port is accepted"
    );
    assert_eq!(cfg.queries[1].query_language, Some(QueryLanguage::Gql));
    assert_eq!(cfg.reactions[0].queries(), ["hot".to_string()]);
}

#[test]
fn golden_yaml_rendering() {
    let yaml = parse(GOOD).to_yaml();
    let expected = r#"apiVersion: drasi.io/v1
id: demo
logLevel: info
persistConfig: false
sources:
- kind: http
  id: sensors
  host: 127.0.0.1
  port: 9100
- kind: mock
  id: fake
  dataType:
    type: sensorReading
    sensorCount: 3
  intervalMs: 500
queries:
- id: hot
  autoStart: true
  query: MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id
  queryLanguage: Cypher
  sources:
  - sourceId: sensors
- id: gql
  autoStart: false
  query: MATCH (s:Sensor) RETURN s.id AS id
  queryLanguage: GQL
  sources:
  - sourceId: fake
reactions:
- kind: log
  id: out
  queries:
  - hot
  defaultTemplate:
    added:
      template: + {{after.id}}
"#;
    assert_eq!(yaml, expected);
    let reparsed = parse(&yaml);
    assert_eq!(reparsed.to_yaml(), yaml, "rendering is a fixed point");
}

#[test]
fn unknown_keys_are_reported_with_their_path() {
    let err = DrasiConfig::from_yaml_str("log_level: info\n").unwrap_err();
    assert_eq!(err.path, "log_level");
    assert!(err.message.contains("unknown field `log_level`"), "{err}");
    assert!(
        err.message.contains("`logLevel`"),
        "the allowed keys are listed: {err}"
    );

    let yaml = "queries:\n  - id: q\n    query: MATCH (n) RETURN n\n    sources:\n      - sourceId: s\n      - sourceId: t\n        bogus: 1\n";
    let err = DrasiConfig::from_yaml_str(yaml).unwrap_err();
    assert_eq!(err.path, "queries[0].sources[1].bogus");
    assert!(err.message.contains("unknown field `bogus`"), "{err}");

    let yaml = "sources:\n  - kind: http\n    id: s\n    hots: x\n";
    let err = DrasiConfig::from_yaml_str(yaml).unwrap_err();
    assert_eq!(err.path, "sources[0].hots");
    assert!(err.message.contains("unknown field `hots`"), "{err}");

    let yaml = "sources:\n  - kind: http\n    id: s\n    webhooks:\n      routes:\n        - path: /x\n          mappings: []\n          nope: 1\n";
    let err = DrasiConfig::from_yaml_str(yaml).unwrap_err();
    assert_eq!(err.path, "sources[0].webhooks.routes[0].nope");
    assert!(err.message.contains("`nope`"), "{err}");

    let err = DrasiConfig::from_yaml_str("reactions:\n  - kind: log\n    id: r\n    queries: [q]\n    routes: {q: {added: {template: x, extra: 1}}}\n").unwrap_err();
    assert_eq!(err.path, "reactions[0].routes.q.added.extra");
    assert!(err.message.contains("`extra`"), "{err}");
}

#[test]
fn unknown_kinds_name_the_kind_and_the_supported_ones() {
    let err = DrasiConfig::from_yaml_str("sources:\n  - kind: kafka\n    id: k\n").unwrap_err();
    assert_eq!(err.path, "sources[0].kind");
    assert!(err.message.contains("`kafka`"), "{err}");
    assert!(err.message.contains("http, mock, postgres"), "{err}");

    let err =
        DrasiConfig::from_yaml_str("reactions:\n  - kind: kafka\n    id: g\n    queries: []\n")
            .unwrap_err();
    assert_eq!(err.path, "reactions[0].kind");
    assert!(
        err.message.contains("`kafka`") && err.message.contains("log, http, sse"),
        "{err}"
    );
    // A grpc reaction needs its endpoint.
    let err =
        DrasiConfig::from_yaml_str("reactions:\n  - kind: grpc\n    id: g\n    queries: []\n")
            .unwrap_err();
    assert!(err.message.contains("endpoint"), "{err}");

    let err = DrasiConfig::from_yaml_str("sources:\n  - id: nokind\n").unwrap_err();
    assert!(err.message.contains("kind"), "{err}");
}

#[test]
fn query_language_is_case_sensitive() {
    let err = DrasiConfig::from_yaml_str(
        "queries:\n  - id: q\n    query: x\n    queryLanguage: cypher\n",
    )
    .unwrap_err();
    assert_eq!(err.path, "queries[0].queryLanguage");
    assert!(err.message.contains("Cypher"), "{err}");
}

#[test]
fn references_and_ids_are_checked() {
    let mut cfg = parse(GOOD);
    cfg.queries[0].sources[0].source_id = "missing".into();
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.path, "queries[0].sources[0].sourceId");
    assert!(err.message.contains("`missing`"), "{err}");

    let mut cfg = parse(GOOD);
    let ReactionConfig::Log(log) = &mut cfg.reactions[0] else {
        unreachable!()
    };
    log.queries.push("nope".into());
    assert_eq!(cfg.validate().unwrap_err().path, "reactions[0].queries[1]");

    let mut cfg = parse(GOOD);
    cfg.queries[1].id = "hot".into();
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.path, "queries[1].id");
    assert!(err.message.contains("duplicate"), "{err}");

    let mut cfg = parse(GOOD);
    cfg.log_level = Some("verbose".into());
    assert_eq!(cfg.validate().unwrap_err().path, "logLevel");

    let yaml = "instances:\n  - id: a\n    sources: [{kind: mock, id: m}]\n    queries: [{id: q, query: x, sources: [{sourceId: other}]}]\n";
    let err = parse(yaml).validate().unwrap_err();
    assert_eq!(err.path, "instances[0].queries[0].sources[0].sourceId");
}

#[test]
fn user_supplied_listener_addresses_are_accepted_and_warned_about() {
    let mut cfg = parse(GOOD);
    // GOOD sets its http source's host and port, as drasi-server configs do: accepted, and
    // each replaced field is named (with the top-level id, which becomes the DRaaS id).
    let fields = |cfg: &DrasiConfig| -> Vec<String> {
        let warnings = cfg.validate_user_supplied().unwrap();
        warnings.into_iter().map(|w| w.field).collect()
    };
    assert_eq!(
        fields(&cfg),
        [
            "config.id",
            "config.sources[0].host",
            "config.sources[0].port"
        ]
    );
    let SourceConfig::Http(http) = &mut cfg.sources[0] else {
        unreachable!()
    };
    http.host = None;
    http.port = None;
    cfg.id = None;
    assert_eq!(fields(&cfg), Vec::<String>::new());
    cfg.port = Some(Port::Number(8080));
    cfg.host = Some("0.0.0.0".into());
    assert_eq!(fields(&cfg), ["config.host", "config.port"]);
    let yaml =
        "instances:\n  - id: a\n    reactions: [{kind: sse, id: s, queries: [], host: 0.0.0.0}]\n";
    assert_eq!(
        fields(&parse(yaml)),
        ["config.instances[0].reactions[0].host"]
    );
    // The other rules still refuse.
    cfg.port = Some(Port::Number(0));
    assert_eq!(cfg.validate_user_supplied().unwrap_err().path, "port");
}

#[test]
fn json_bodies_use_the_same_schema() {
    let v = serde_json::json!({
        "sources": [{"kind": "mock", "id": "m"}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
        "reactions": [{"kind": "sse", "id": "s", "queries": ["q"], "ssePath": "/events"}]
    });
    let cfg = DrasiConfig::from_json_value(v).unwrap();
    cfg.validate().unwrap();
    let err = DrasiConfig::from_json_value(
        serde_json::json!({"queries": [{"id": "q", "query": "x", "foo": 1}]}),
    )
    .unwrap_err();
    assert_eq!(err.path, "queries[0].foo");
    assert!(err.message.contains("`foo`"));
}

#[test]
fn assign_ports_replaces_every_listener() {
    let mut cfg = parse(
        "sources:\n  - {kind: http, id: a}\n  - {kind: http, id: b, port: 7000}\nreactions:\n  - {kind: sse, id: s, queries: []}\n  - {kind: log, id: l, queries: []}\n",
    );
    let mut next = 5000u16;
    let endpoints = cfg
        .assign_ports("127.0.0.1", &mut || {
            next += 1;
            Ok(next)
        })
        .unwrap();
    let urls: Vec<(String, String)> = endpoints.into_iter().map(|e| (e.name, e.url)).collect();
    assert_eq!(
        urls,
        vec![
            ("api".into(), "http://127.0.0.1:5001".into()),
            ("source:a".into(), "http://127.0.0.1:5002".into()),
            ("source:b".into(), "http://127.0.0.1:5003".into()),
            ("reaction:s".into(), "http://127.0.0.1:5004".into()),
        ]
    );
    assert_eq!(cfg.port, Some(Port::Number(5001)));
    assert_eq!(cfg.host.as_deref(), Some("127.0.0.1"));
    let ReactionConfig::Sse(sse) = &cfg.reactions[0] else {
        unreachable!()
    };
    assert_eq!(sse.port, Some(Port::Number(5004)));
    assert_eq!(
        cfg.assigned_endpoints("127.0.0.1").unwrap()[2].url,
        "http://127.0.0.1:5003"
    );
}

#[test]
fn plugin_refs_resolve_to_kinds() {
    let r = |s: &str| PluginRef {
        reference: s.into(),
    };
    assert_eq!(
        r("source/http").category_and_kind(),
        Some(("source", "http"))
    );
    assert_eq!(
        r("reaction/log:0.2.9").category_and_kind(),
        Some(("reaction", "log"))
    );
    assert_eq!(
        r("ghcr.io/drasi-project/source-postgres:0.1").category_and_kind(),
        Some(("source", "postgres"))
    );
    assert_eq!(r("ghcr.io/x/y").category_and_kind(), None);
}

#[test]
fn interpolation_then_parse() {
    let text = "port: ${API_PORT}\nlogLevel: ${LEVEL:-debug}\n";
    let out = interpolate(text, &|k| (k == "API_PORT").then(|| "8123".to_string())).unwrap();
    let cfg = parse(&out);
    // A resolved value is a string; numeric settings accept one, as drasi-server's do.
    assert_eq!(cfg.port, Some(Port::Number(8123)));
    assert_eq!(cfg.log_level.as_deref(), Some("debug"));
}

/// The runtime (text), the API (the stored config) and the worker (the rendered config)
/// resolve a config alike: whole values of settings fields, string or structured, nothing
/// else.
#[test]
fn text_and_stored_configs_resolve_alike() {
    let yaml = r#"
logLevel: ${LEVEL:-INFO}
sources:
  - kind: http
    id: in
    host: ${HOST:-0.0.0.0}
    port: "${PORT:-9000}"
    timeoutMs: "${TIMEOUT:-100}"
    endpoint: /in/${HOST}
queries:
  - id: q
    query: MATCH (n) WHERE n.x = '${GREETING}' RETURN n.x AS x  # ${NOT_READ}
    sources: [{sourceId: in}]
reactions:
  - kind: log
    id: l
    queries: [q]
    defaultTemplate:
      added: {template: "${{after.x}} ${EMPTY:-unused}|"}
  - kind: grpc
    id: g
    queries: [q]
    endpoint: {kind: EnvironmentVariable, name: GRPC, default: "grpc://collector.example.com:50052"}
    metadata: {x: "${EMPTY:-unused}"}
"#;
    let lookup = |name: &str| match name {
        "GREETING" => Some("hi".to_owned()),
        "EMPTY" => Some(String::new()),
        "TIMEOUT" => Some("250".to_owned()),
        "LEVEL" => Some("Debug".to_owned()),
        _ => None,
    };
    let from_text = parse(&interpolate(yaml, &lookup).unwrap());
    let stored = parse(yaml);
    assert_eq!(stored.resolve(&lookup).unwrap(), from_text);
    let rendered = parse(&interpolate(&stored.to_yaml(), &lookup).unwrap());
    assert_eq!(rendered.to_yaml(), from_text.to_yaml());

    // Stored as written, the structured reference in its string form.
    let SourceConfig::Http(http) = &stored.sources[0] else {
        unreachable!()
    };
    assert_eq!(
        http.timeout_ms,
        Some(Setting::Reference("${TIMEOUT:-100}".into()))
    );
    let grpc = stored.reactions[1].as_grpc().unwrap();
    assert_eq!(grpc.endpoint, "${GRPC:-grpc://collector.example.com:50052}");
    // The rendered config keeps a reference's name as written (the level is lowercased once
    // resolved, not in the reference).
    assert!(
        stored.to_yaml().contains("logLevel: ${LEVEL:-INFO}"),
        "{}",
        stored.to_yaml()
    );

    // Resolved: settings fields only.
    assert_eq!(from_text.log_level.as_deref(), Some("Debug"));
    let SourceConfig::Http(http) = &from_text.sources[0] else {
        unreachable!()
    };
    assert_eq!(http.timeout_ms, Some(Setting::Value(250)));
    assert_eq!(http.host.as_deref(), Some("0.0.0.0"));
    assert_eq!(http.endpoint.as_deref(), Some("/in/${HOST}"));
    assert_eq!(
        from_text.queries[0].query,
        "MATCH (n) WHERE n.x = '${GREETING}' RETURN n.x AS x"
    );
    let ReactionConfig::Log(log) = &from_text.reactions[0] else {
        unreachable!()
    };
    let template = &log
        .default_template
        .as_ref()
        .unwrap()
        .added
        .as_ref()
        .unwrap();
    assert_eq!(template.template, "${{after.x}} ${EMPTY:-unused}|");
    let grpc = from_text.reactions[1].as_grpc().unwrap();
    assert_eq!(grpc.endpoint, "grpc://collector.example.com:50052");
    assert_eq!(grpc.metadata["x"], "", "set but empty: the empty value");
}

#[test]
fn empty_document_is_an_empty_config() {
    assert_eq!(parse("# nothing\n"), DrasiConfig::default());
}

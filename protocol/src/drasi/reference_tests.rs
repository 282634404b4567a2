//! Unit tests for `${VAR}` references in the drasi config model: only the whole value of a
//! settings field resolves, what is kept as written is warned about, the structured form, numeric
//! settings, and references by path (nested settings, `instances[]`).

use super::tests::parse;
use super::*;

fn resolve_with(config: &DrasiConfig, vars: &[(&str, &str)]) -> Result<DrasiConfig, ConfigError> {
    config.resolve(&|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

fn reaction_json(reaction: serde_json::Value) -> DrasiConfig {
    DrasiConfig::from_json_value(serde_json::json!({
        "sources": [{"kind": "mock", "id": "m"}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
        "reactions": [reaction]}))
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn only_the_whole_value_of_a_settings_field_is_resolved() {
    let config = reaction_json(serde_json::json!({
        "kind": "http", "id": "h", "queries": ["q"],
        "baseUrl": "https://${HOST}",
        "token": "${TOKEN:-a:-b}",
        "batchEndpoint": "${{after.x}}",
        "outputTemplates": {"defaultTemplate": {"added": {
            "url": "${PATH_VAR}", "method": "POST", "headers": {"x-token": "${TOKEN}"}}}}}));
    let resolved = resolve_with(&config, &[("HOST", "h"), ("PATH_VAR", "/p")]).unwrap();
    let http = resolved.reactions[0].as_http().unwrap();
    // Inside a longer string: kept as written.
    assert_eq!(http.base_url.as_deref(), Some("https://${HOST}"));
    // The default runs from the first `:-`.
    assert_eq!(http.token.as_deref(), Some("a:-b"));
    // `${{…}}` is never a reference.
    assert_eq!(http.batch_endpoint.as_deref(), Some("${{after.x}}"));
    // Not settings fields: kept as written, even as whole values.
    let call = http
        .output_templates
        .as_ref()
        .and_then(|t| t.default_template.as_ref())
        .and_then(|c| c.added.as_ref())
        .unwrap();
    assert_eq!(call.url, "${PATH_VAR}");
    assert_eq!(call.headers["x-token"], "${TOKEN}");

    // Set but empty: the empty value, not the default.
    let resolved = resolve_with(&config, &[("TOKEN", "")]).unwrap();
    assert_eq!(
        resolved.reactions[0].as_http().unwrap().token.as_deref(),
        Some("")
    );
}

#[test]
fn a_reference_kept_as_written_is_named_in_warnings() {
    let yaml = r#"
sources:
  - kind: http
    id: in
    endpoint: /in/${HOST}
queries:
  - id: q
    query: MATCH (n) RETURN '${GREETING}' AS g, $param AS p
    sources: [{sourceId: in}]
reactions:
  - kind: log
    id: l
    queries: [q]
    defaultTemplate:
      added: {template: "${{after.x}} and ${NOTE:-none}"}
      updated: {template: "${{after.x}}"}
  - kind: http
    id: h
    queries: [q]
    baseUrl: ${BASE}
    token: Bearer ${TOKEN}
"#;
    let config = parse(yaml);
    let warnings = config.literal_references();
    let said: Vec<(&str, &str)> = warnings
        .iter()
        .map(|w| (w.field.as_str(), w.message.as_str()))
        .collect();
    let mut fields: Vec<&str> = said.iter().map(|(f, _)| *f).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "config.reactions[0].defaultTemplate.added.template",
            "config.reactions[1].token",
            "config.sources[0].endpoint",
        ]
    );
    let message = |field: &str| said.iter().find(|(f, _)| *f == field).unwrap().1;
    let endpoint = message("config.sources[0].endpoint");
    assert!(
        endpoint.starts_with("`${HOST}` is kept as written"),
        "{endpoint}"
    );
    assert!(
        endpoint.contains("whole value of a settings field"),
        "{endpoint}"
    );
    assert!(endpoint.contains("inside a longer value"), "{endpoint}");
    let template = message("config.reactions[0].defaultTemplate.added.template");
    assert!(template.starts_with("`${NOTE:-none}`"), "{template}");
    assert!(template.contains("not a settings field"), "{template}");
    // Every read says it: the warnings include them.
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.field == "config.reactions[1].token")
    );
}

#[test]
fn the_structured_form_is_stored_as_the_string_form() {
    let pg = |password: serde_json::Value| {
        serde_json::json!({
            "sources": [{"kind": "postgres", "id": "pg", "host": "db.example.com",
                         "database": "d", "user": "u", "tables": ["t"], "password": password}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "pg"}]}]})
    };
    let password = |c: &DrasiConfig| {
        let SourceConfig::Postgres(p) = &c.sources[0] else {
            unreachable!()
        };
        p.password.clone()
    };
    let config = DrasiConfig::from_json_value(pg(
        serde_json::json!({"kind": "EnvironmentVariable", "name": "PG_PASSWORD"}),
    ))
    .unwrap();
    assert_eq!(password(&config).as_deref(), Some("${PG_PASSWORD}"));
    let resolved = resolve_with(&config, &[("PG_PASSWORD", "pw")]).unwrap();
    assert_eq!(password(&resolved).as_deref(), Some("pw"));
    let err = resolve_with(&config, &[]).unwrap_err();
    assert_eq!(err.path, "sources[0].password");

    let config = DrasiConfig::from_json_value(pg(serde_json::json!(
        {"kind": "EnvironmentVariable", "name": "PG_PASSWORD", "default": "dflt"}
    )))
    .unwrap();
    assert_eq!(password(&config).as_deref(), Some("${PG_PASSWORD:-dflt}"));
    assert_eq!(
        password(&resolve_with(&config, &[]).unwrap()).as_deref(),
        Some("dflt")
    );

    // YAML reads the same.
    let yaml = "stateStore: {kind: redb, path: {kind: EnvironmentVariable, name: STORE, default: s.redb}}\n";
    let config = parse(yaml);
    assert_eq!(
        config.state_store.as_ref().unwrap().path,
        "${STORE:-s.redb}"
    );

    // A secret reference is refused naming the field; so is an unknown kind.
    let err = DrasiConfig::from_json_value(pg(serde_json::json!({"kind": "Secret", "name": "pw"})))
        .unwrap_err();
    assert_eq!(err.path, "sources[0].password");
    assert!(err.message.contains("not supported"), "{err}");
    assert!(err.message.contains("EnvironmentVariable"), "{err}");
    let err = DrasiConfig::from_yaml_str(
        "sources: [{kind: mock, id: m, intervalMs: {kind: Secret, name: i}}]\n",
    )
    .unwrap_err();
    assert_eq!(err.path, "sources[0].intervalMs");
    let err = DrasiConfig::from_json_value(pg(serde_json::json!({"kind": "Vault", "name": "pw"})))
        .unwrap_err();
    assert_eq!(err.path, "sources[0].password");
    assert!(err.message.contains("Unknown kind: Vault"), "{err}");
    // Outside a settings field, an object is no reference: the field's own type refuses it.
    let err = DrasiConfig::from_json_value(serde_json::json!({"sources": [
        {"kind": "mock", "id": {"kind": "EnvironmentVariable", "name": "ID"}}]}))
    .unwrap_err();
    assert_eq!(err.path, "sources[0].id");
}

#[test]
fn a_numeric_settings_field_takes_a_whole_value_reference() {
    let config = reaction_json(serde_json::json!({
        "kind": "http", "id": "h", "queries": ["q"], "baseUrl": "https://example.com",
        "timeoutMs": "${T:-100}", "adaptive": {"adaptiveMaxBatchSize": "${MAX}"}}));
    let http = config.reactions[0].as_http().unwrap();
    assert_eq!(
        http.timeout_ms,
        Some(Setting::Reference("${T:-100}".into()))
    );
    // Stored and rendered as written.
    assert!(
        config.to_yaml().contains("timeoutMs: ${T:-100}"),
        "{}",
        config.to_yaml()
    );
    assert_eq!(
        serde_json::to_value(&config).unwrap()["reactions"][0]["timeoutMs"],
        "${T:-100}"
    );
    let resolved = resolve_with(&config, &[("MAX", "50")]).unwrap();
    let http = resolved.reactions[0].as_http().unwrap();
    assert_eq!(http.timeout_ms, Some(Setting::Value(100)));
    assert_eq!(
        http.adaptive.as_ref().unwrap().adaptive_max_batch_size,
        Some(Setting::Value(50))
    );
    resolved.validate().unwrap();

    // A value that is no number: named by field and reference, the value left out.
    let err = resolve_with(&config, &[("T", "s3cr3t"), ("MAX", "1")]).unwrap_err();
    assert_eq!(err.path, "reactions[0].timeoutMs");
    assert!(err.message.contains("`${T:-100}`"), "{err}");
    assert!(!err.message.contains("s3cr3t"), "{err}");
    // A value that is itself a reference is never resolved again.
    let err = resolve_with(&config, &[("T", "${MAX}"), ("MAX", "1")]).unwrap_err();
    assert_eq!(err.path, "reactions[0].timeoutMs");
    // Unset without a default: named.
    let err = resolve_with(&config, &[]).unwrap_err();
    assert_eq!(err.path, "reactions[0].adaptive.adaptiveMaxBatchSize");
    assert!(err.message.contains("`MAX`"), "{err}");

    // A structured reference in a numeric field, and a flag.
    let config = DrasiConfig::from_json_value(serde_json::json!({
        "defaultPriorityQueueCapacity": {"kind": "EnvironmentVariable", "name": "CAP", "default": "64"},
        "reactions": [{"kind": "storedproc-mysql", "id": "s", "queries": [], "user": "u",
                       "database": "d", "ssl": "${TLS:-true}"}]}))
    .unwrap();
    let resolved = resolve_with(&config, &[]).unwrap();
    assert_eq!(
        resolved.default_priority_queue_capacity,
        Some(Setting::Value(64))
    );
    let (_, sp) = resolved.reactions[0].storedproc().unwrap();
    assert_eq!(sp.ssl, Some(Setting::Value(true)));

    // A field that is no settings field takes no reference (drasi-server's `u64`).
    let err = DrasiConfig::from_json_value(serde_json::json!({"hotReloadDebounceMs": "${D:-5}"}))
        .unwrap_err();
    assert_eq!(err.path, "hotReloadDebounceMs");
}

#[test]
fn nested_settings_and_instances_resolve_by_path() {
    let config = DrasiConfig::from_json_value(serde_json::json!({
        "id": "${SERVER_ID:-server}",
        "instances": [
            {"id": "${A_ID}", "defaultDispatchBufferCapacity": "${CAP:-8}",
             "stateStore": {"kind": "redb", "path": "${STORE:-a.redb}"},
             "sources": [{"kind": "http", "id": "h", "host": "0.0.0.0", "port": 9000,
                 "webhooks": {"routes": [{"path": "${HOOK_PATH}", "mappings": [
                     {"elementType": "node",
                      "template": {"id": "{{payload.id}}", "labels": ["${LABEL:-Order}"]}}]}]}}],
             "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "h"}]}],
             "reactions": [{"kind": "grpc", "id": "g", "queries": ["q"],
                            "endpoint": "grpc://collector.example.com:50052",
                            "metadata": {"x": "${META}", "y": "v-${META}"}}]},
            {"id": "b"}]}))
    .unwrap();
    let vars = [("A_ID", "a"), ("HOOK_PATH", "/hooks/in"), ("META", "m")];
    let resolved = resolve_with(&config, &vars).unwrap();
    assert_eq!(resolved.id.as_deref(), Some("server"));
    let inst = &resolved.instances[0];
    assert_eq!(inst.id.as_deref(), Some("a"));
    assert_eq!(
        inst.default_dispatch_buffer_capacity,
        Some(Setting::Value(8))
    );
    assert_eq!(inst.state_store.as_ref().unwrap().path, "a.redb");
    let SourceConfig::Http(http) = &inst.sources[0] else {
        unreachable!()
    };
    let route = &http.webhooks.as_ref().unwrap().routes[0];
    assert_eq!(route.path, "/hooks/in");
    assert_eq!(route.mappings[0].template.labels, ["Order"]);
    let grpc = inst.reactions[0].as_grpc().unwrap();
    assert_eq!(grpc.metadata["x"], "m");
    assert_eq!(grpc.metadata["y"], "v-${META}");

    for (missing, path) in [
        (
            "HOOK_PATH",
            "instances[0].sources[0].webhooks.routes[0].path",
        ),
        ("META", "instances[0].reactions[0].metadata.x"),
        ("A_ID", "instances[0].id"),
    ] {
        let vars: Vec<(&str, &str)> = vars
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let err = resolve_with(&config, &vars).unwrap_err();
        assert_eq!(err.path, path, "{missing}");
    }
    let fields: Vec<String> = config
        .literal_references()
        .into_iter()
        .map(|w| w.field)
        .collect();
    assert_eq!(fields, ["config.instances[0].reactions[0].metadata.y"]);
}

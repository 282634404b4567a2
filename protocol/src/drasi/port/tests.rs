//! Unit tests of [`super::Port`]: parsing, the list of port fields, resolution from the env,
//! egress on the resolved port, listener references.

use super::*;
use serde_json::json;

fn port(v: serde_json::Value) -> Result<Port, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn numbers_numeric_strings_and_whole_references_are_ports() {
    assert_eq!(port(json!(5432)), Ok(Port::Number(5432)));
    assert_eq!(port(json!(" 5432 ")), Ok(Port::Number(5432)));
    assert_eq!(port(json!("0")), Ok(Port::Number(0)));
    // drasi-server's rule: a string starting with `${` and ending with `}` is a reference,
    // whatever is between (its name is not checked).
    for r in [
        "${DB_PORT}",
        "${DB_PORT:-5432}",
        "${1X:-}",
        "${P:-not-a-number}",
        "${A}${B}",
        "${a.b}",
        "${}",
    ] {
        assert_eq!(port(json!(r)), Ok(Port::Reference(r.to_owned())), "{r}");
    }
    // Round trip: numbers stay numbers, references stay strings.
    assert_eq!(serde_json::to_value(Port::Number(9)).unwrap(), json!(9));
    assert_eq!(
        serde_json::to_value(Port::Reference("${P}".into())).unwrap(),
        json!("${P}")
    );
    let yaml: Port = serde_yaml::from_str("\"${P:-1}\"").unwrap();
    assert_eq!(yaml.reference(), Some("${P:-1}"));
    let yaml: Port = serde_yaml::from_str("8080").unwrap();
    assert_eq!(yaml, 8080);
}

#[test]
fn anything_else_is_refused() {
    for bad in [
        json!(70000),
        json!(-1),
        json!(1.5),
        json!(true),
        json!("big"),
        json!(""),
        json!("${{x}}"),
        json!(" ${P} "),
        json!("x${A}"),
        json!("${A}x"),
        json!("${UNCLOSED"),
    ] {
        assert!(port(bad.clone()).is_err(), "{bad} is not a port");
    }
    let message = port(json!("big")).unwrap_err();
    assert!(message.contains("\"big\""), "{message}");
    assert!(message.contains("${VAR}"), "{message}");
}

#[test]
fn ports_lists_every_port_field_with_its_path() {
    let config = DrasiConfig::from_json_value(json!({
        "port": "${API_PORT}",
        "bootstrapProviders": [{"id": "b", "kind": "postgres", "port": "${B_PORT:-6543}"}],
        "sources": [
            {"kind": "http", "id": "h", "host": "0.0.0.0", "port": 9000},
            {"kind": "grpc", "id": "g", "port": "50051"},
            {"kind": "postgres", "id": "pg", "database": "d", "user": "u",
             "port": "${DB_PORT:-5432}",
             "bootstrapProvider": {"kind": "postgres", "port": "${BP:-5433}"}},
            {"kind": "mock", "id": "m"}],
        "reactions": [
            {"kind": "sse", "id": "s", "queries": [], "port": 8081},
            {"kind": "log", "id": "l", "queries": []},
            {"kind": "storedproc-mysql", "id": "my", "queries": [], "user": "u",
             "database": "d", "port": "${MY_PORT}"}]}))
    .unwrap();
    let ports: Vec<(String, String)> = config
        .ports()
        .into_iter()
        .map(|(k, p)| (k, p.to_string()))
        .collect();
    let expected = [
        ("port", "${API_PORT}"),
        ("bootstrapProviders[0].port", "${B_PORT:-6543}"),
        ("sources[0].port", "9000"),
        ("sources[1].port", "50051"),
        ("sources[2].port", "${DB_PORT:-5432}"),
        ("sources[2].bootstrapProvider.port", "${BP:-5433}"),
        ("reactions[0].port", "8081"),
        ("reactions[2].port", "${MY_PORT}"),
    ]
    .map(|(k, p)| (k.to_owned(), p.to_owned()));
    assert_eq!(ports, expected);
    assert_eq!(config.check_ports_resolved().unwrap_err().path, "port");

    let resolved = config.resolve(&|_| Some("7000".to_owned())).unwrap();
    assert!(resolved.ports().iter().all(|(_, p)| p.number().is_some()));
    resolved.check_ports_resolved().unwrap();
}

fn pg_config(port: &str) -> DrasiConfig {
    DrasiConfig::from_json_value(json!({
        "port": "${API_PORT:-8080}",
        "sources": [{"kind": "postgres", "id": "pg", "host": "127.0.0.1", "port": port,
                     "database": "d", "user": "u", "tables": ["t"]}],
        "queries": [{"id": "q", "query": "MATCH (n) RETURN n",
                     "sources": [{"sourceId": "pg"}]}]}))
    .unwrap()
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn a_reference_is_kept_as_written_and_resolved_from_the_env() {
    let config = pg_config("${DB_PORT:-5432}");
    // Stored and rendered as written.
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["sources"][0]["port"], "${DB_PORT:-5432}");
    assert!(
        config.to_yaml().contains("port: ${DB_PORT:-5432}"),
        "{}",
        config.to_yaml()
    );
    // The default, then the variable.
    let SourceConfig::Postgres(pg) = &config.resolve(&env(&[])).unwrap().sources[0] else {
        panic!("postgres")
    };
    assert_eq!(pg.port, Some(Port::Number(5432)));
    let resolved = config.resolve(&env(&[("DB_PORT", " 6543 ")])).unwrap();
    let SourceConfig::Postgres(pg) = &resolved.sources[0] else {
        panic!("postgres")
    };
    assert_eq!(pg.port, Some(Port::Number(6543)));
    // The runtime's and the worker's path (the rendered text interpolated, then parsed)
    // gives the same ports.
    let text = super::super::interpolate(&config.to_yaml(), &env(&[("DB_PORT", "6543")]));
    let from_text = DrasiConfig::from_yaml_str(&text.unwrap()).unwrap();
    assert_eq!(from_text.ports(), resolved.ports());
}

#[test]
fn an_unresolved_or_non_numeric_reference_is_refused_naming_the_field() {
    let err = pg_config("${MISSING}").resolve(&env(&[])).unwrap_err();
    assert_eq!(err.path, "sources[0].port");
    assert!(err.message.contains("`MISSING`"), "{err}");

    let err = pg_config("${DB_PORT}")
        .resolve(&env(&[("DB_PORT", "s3cr3t-abc")]))
        .unwrap_err();
    assert_eq!(err.path, "sources[0].port");
    assert!(err.message.contains("`${DB_PORT}`"), "{err}");
    assert!(err.message.contains("port number"), "{err}");
    assert!(
        !err.message.contains("s3cr3t"),
        "the value is never said: {err}"
    );

    // Values are never resolved twice: one that is itself a reference stays refused.
    let err = pg_config("${DB_PORT}")
        .resolve(&env(&[("DB_PORT", "${OTHER:-5432}")]))
        .unwrap_err();
    assert_eq!(err.path, "sources[0].port");
    // And validation refuses a config whose port was never resolved.
    let err = pg_config("${DB_PORT}").validate().unwrap_err();
    assert_eq!(err.path, "port");
}

#[test]
fn egress_is_judged_on_the_resolved_port() {
    let resolved = pg_config("${DB_PORT}")
        .resolve(&env(&[("DB_PORT", "6543")]))
        .unwrap();
    let err = resolved
        .check_egress(&crate::egress::EgressPolicy::default())
        .unwrap_err();
    assert_eq!(err.path, "sources[0].host");
    assert!(err.message.contains("127.0.0.1:6543"), "{err}");
    assert_eq!(resolved.outbound_addresses()[0].port, 6543);
}

#[test]
fn listener_references_are_replaced_and_warned_about() {
    let mut config = DrasiConfig::from_json_value(json!({
        "port": "${API_PORT}",
        "sources": [{"kind": "http", "id": "h", "host": "0.0.0.0", "port": "${HOOK_PORT:-9000}"}],
        "reactions": [{"kind": "sse", "id": "s", "queries": [], "port": "${SSE_PORT}"}]}))
    .unwrap();
    let fields: Vec<String> = config.warnings().into_iter().map(|w| w.field).collect();
    assert_eq!(
        fields,
        [
            "config.port",
            "config.sources[0].host",
            "config.sources[0].port",
            "config.reactions[0].port"
        ]
    );
    let mut next = 6000;
    config
        .assign_ports("127.0.0.1", &mut || {
            next += 1;
            Ok(next)
        })
        .unwrap();
    let ports: Vec<Port> = config.ports().into_iter().map(|(_, p)| p).collect();
    assert_eq!(ports, [6001, 6002, 6003].map(Port::Number));
    config.validate().unwrap();
}

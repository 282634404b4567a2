//! Bad configs fail to start (and fail `validate`) naming the offending key or kind; good
//! configs validate; a missing config file is an error and is never created.

mod common;

use anyhow::Result;
use common::{HOT_QUERY, TempDir, pipeline_config, run_to_end};

/// Runs `draas-runtime --config` (start) and `validate --config` on `config`; both must fail
/// and mention every string in `expected`.
fn assert_rejected(config: &str, expected: &[&str]) -> Result<()> {
    let dir = TempDir::new("bad");
    let path = dir.write("config.yaml", config);
    let path = path.to_str().expect("utf-8 path");
    for args in [vec!["--config", path], vec!["validate", "--config", path]] {
        let (ok, output) = run_to_end(dir.path(), &args)?;
        assert!(!ok, "{args:?} should fail:\n{output}");
        for needle in expected {
            assert!(
                output.contains(needle),
                "{args:?}: `{needle}` missing from:\n{output}"
            );
        }
    }
    Ok(())
}

#[test]
fn unknown_top_level_key_is_named() -> Result<()> {
    assert_rejected("log_level: info\n", &["log_level", "unknown field"])
}

#[test]
fn unknown_nested_key_is_named_with_its_path() -> Result<()> {
    let config = pipeline_config(1, 2).replace(
        "queryLanguage: Cypher",
        "queryLanguage: Cypher\n    autostart: true",
    );
    assert_rejected(
        &config,
        &["queries[0].autostart", "unknown field `autostart`"],
    )?;
    let config = pipeline_config(1, 2).replace("    port: 2\n", "    port: 2\n    hots: x\n");
    assert_rejected(&config, &["sources[0].hots"])
}

#[test]
fn unknown_source_kind_is_named_with_the_supported_ones() -> Result<()> {
    let config = "sources:\n  - kind: kafka\n    id: k\n";
    assert_rejected(
        config,
        &["sources[0].kind", "`kafka`", "http, mock, postgres"],
    )
}

#[test]
fn unknown_reaction_kind_is_named_with_the_supported_ones() -> Result<()> {
    let config = format!(
        "queries:\n  - id: q\n    query: \"{HOT_QUERY}\"\nreactions:\n  - kind: kafka\n    id: g\n    queries: [q]\n"
    );
    assert_rejected(
        &config,
        &[
            "reactions[0].kind",
            "`kafka`",
            "log, http, sse, profiler, storedproc-postgres",
        ],
    )
}

#[test]
fn broken_references_and_plugins_are_rejected() -> Result<()> {
    let config = pipeline_config(1, 2).replace("sourceId: sensors", "sourceId: missing");
    assert_rejected(&config, &["queries[0].sources[0].sourceId", "missing"])?;
    let config = format!("plugins:\n  - ref: source/kafka\n{}", pipeline_config(1, 2));
    assert_rejected(
        &config,
        &[
            "plugins[0].ref",
            "source/kafka",
            "not built into draas-runtime",
        ],
    )
}

#[test]
fn unset_variable_is_named() -> Result<()> {
    assert_rejected(
        "id: ${DRAAS_TEST_SURELY_UNSET_VAR}\n",
        &["DRAAS_TEST_SURELY_UNSET_VAR"],
    )
}

#[test]
fn validate_accepts_a_good_file() -> Result<()> {
    let dir = TempDir::new("good");
    let config = format!(
        "plugins:\n  - ref: source/http\n  - ref: reaction/log:0.2.9\nport: ${{DRAAS_TEST_UNSET_PORT:-9999}}\n{}",
        pipeline_config(1, 2).replace("port: 1\n", "")
    );
    let path = dir.write("config.yaml", &config);
    let path = path.to_str().expect("utf-8 path");
    for args in [
        vec!["validate", "--config", path],
        vec!["validate", "-c", path],
        vec!["-c", path, "validate"],
    ] {
        let (ok, output) = run_to_end(dir.path(), &args)?;
        assert!(ok, "{args:?}: {output}");
        assert!(output.contains("is valid"), "{output}");
    }
    Ok(())
}

#[test]
fn missing_config_file_is_an_error_and_is_not_created() -> Result<()> {
    let dir = TempDir::new("missing");
    let path = dir.path().join("nope.yaml");
    let (ok, output) = run_to_end(dir.path(), &["--config", path.to_str().expect("utf-8")])?;
    assert!(!ok, "{output}");
    assert!(output.contains("not found"), "{output}");
    assert!(!path.exists(), "a default config must never be written");
    let (ok, output) = run_to_end(dir.path(), &[])?;
    assert!(!ok && output.contains("--config"), "{output}");
    Ok(())
}

#[test]
fn bootstrap_providers_and_profiler_settings_are_checked_naming_the_key() -> Result<()> {
    let source = "sources:\n  - kind: postgres\n    id: pg\n    database: d\n    user: u\n";
    let query = format!(
        "queries:\n  - id: q\n    query: \"{HOT_QUERY}\"\n    sources: [{{sourceId: pg}}]\n"
    );
    assert_rejected(
        &format!("{source}    bootstrapProvider: replica\n{query}"),
        &[
            "sources[0].bootstrapProvider",
            "unknown bootstrap provider `replica`",
        ],
    )?;
    assert_rejected(
        &format!("{source}    bootstrapProvider: {{kind: scriptfile}}\n{query}"),
        &[
            "sources[0].bootstrapProvider.kind",
            "supported bootstrap provider kinds: postgres",
        ],
    )?;
    assert_rejected(
        &format!(
            "bootstrapProviders:\n  - {{id: r, kind: postgres, sslmode: require}}\n{source}    bootstrapProvider: r\n{query}"
        ),
        &["bootstrapProviders[0].sslmode", "unknown field"],
    )?;
    assert_rejected(
        &format!(
            "{source}{query}reactions:\n  - {{kind: profiler, id: p, queries: [q], reportIntervalSecs: 0}}\n"
        ),
        &["reactions[0].reportIntervalSecs", "at least 1"],
    )
}

#[test]
fn grpc_tls_and_malformed_endpoints_are_refused_by_field() -> Result<()> {
    let reaction = format!(
        "sources:\n  - kind: grpc\n    id: g\nqueries:\n  - id: q\n    query: \"{HOT_QUERY}\"\n    sources: [{{sourceId: g}}]\nreactions:\n  - kind: grpc\n    id: r\n    queries: [q]\n    endpoint: https://collector.example.com:443\n"
    );
    assert_rejected(&reaction, &["reactions[0].endpoint", "TLS"])?;
    let missing = format!(
        "sources:\n  - kind: grpc\n    id: g\nqueries:\n  - id: q\n    query: \"{HOT_QUERY}\"\n    sources: [{{sourceId: g}}]\nreactions:\n  - kind: grpc\n    id: r\n    queries: [q]\n    endpoint: collector:50052\n"
    );
    assert_rejected(&missing, &["reactions[0].endpoint", "not a URL"])
}

#[test]
fn a_persistent_index_needs_durable_http_sources() -> Result<()> {
    let config = "persistIndex: true\nsources:\n  - kind: http\n    id: h\n    host: 127.0.0.1\n    port: 9\n";
    assert_rejected(config, &["sources[0].durability", "persistIndex"])
}

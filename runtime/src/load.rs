//! Loading a config file: read, `${VAR}` resolution (settings fields only, by drasi-server's
//! rules), parse, validate and runtime checks.

use std::path::Path;

use draas_protocol::drasi::{ConfigError, DrasiConfig, interpolate};

use crate::{RuntimeError, support};

/// Reads and checks the config at `path`, resolving `${VAR}` with `lookup`.
pub fn load_config(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<DrasiConfig, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RuntimeError::ConfigNotFound {
                path: path.to_path_buf(),
            }
        } else {
            RuntimeError::ConfigRead {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse_config(&text, lookup)
}

/// Interpolates, parses and checks config text. `${VAR}` references are resolved exactly by
/// drasi-server's rules ([`interpolate`], the function the API and the worker use too): the
/// whole value of a settings field only (string or `{kind: EnvironmentVariable, …}`); a
/// reference inside a longer value, in a query or a template, or in a comment is kept as
/// written, and `${{…}}` is a template, never a reference.
pub fn parse_config(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<DrasiConfig, RuntimeError> {
    let resolved = interpolate(text, lookup)?;
    let config = DrasiConfig::from_yaml_str(&resolved).map_err(|e| {
        // A resolved document is rendered anew: its line numbers are not the file's, so
        // the error names the key path only.
        if resolved == text {
            e
        } else {
            without_location(e)
        }
    })?;
    config.validate()?;
    support::check(&config)?;
    Ok(config)
}

/// Drops serde_yaml's ` at line L column C` from an error's message.
fn without_location(mut e: ConfigError) -> ConfigError {
    if let Some(at) = e.message.rfind(" at line ")
        && e.message[at + " at line ".len()..]
            .split(" column ")
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        e.message.truncate(at);
    }
    e
}

/// Variable lookup from the process environment.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use draas_protocol::drasi::{ReactionConfig, SourceConfig};

    fn lookup(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "t".to_owned())
    }

    #[test]
    fn only_whole_values_of_settings_fields_are_resolved() {
        let text = r#"
sources:
  - kind: mock
    id: m
    intervalMs: {kind: EnvironmentVariable, name: I, default: "250"}
queries:
  - id: q
    query: MATCH (n) RETURN '${TOKEN}' AS t
    sources: [{sourceId: m}]
reactions:
  - kind: http
    id: h
    queries: [q]
    baseUrl: https://example.com
    token: ${TOKEN}
    batchEndpoint: /b/${TOKEN}
"#;
        let config = parse_config(text, &lookup).unwrap();
        let SourceConfig::Mock(mock) = &config.sources[0] else {
            panic!("a mock source")
        };
        assert_eq!(mock.interval_ms.as_ref().and_then(|i| i.get()), Some(250));
        assert_eq!(config.queries[0].query, "MATCH (n) RETURN '${TOKEN}' AS t");
        let ReactionConfig::Http(http) = &config.reactions[0] else {
            panic!("an http reaction")
        };
        assert_eq!(http.token.as_deref(), Some("t"));
        assert_eq!(http.batch_endpoint.as_deref(), Some("/b/${TOKEN}"));

        let secret = "id: {kind: Secret, name: s}\n";
        let err = parse_config(secret, &lookup).unwrap_err().to_string();
        assert!(err.contains("secret references"), "{err}");
    }
}

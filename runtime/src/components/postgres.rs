//! What the PostgreSQL plugins are handed. drasi-bootstrap-postgres and
//! drasi-reaction-storedproc-postgres paste the password into a libpq connection string
//! unquoted (`password={}`), so a password with a space, a quote or a backslash, or an empty
//! one, would break it or be cut short; they get it quoted the way that syntax defines
//! (`'…'` with `\` escapes), which every password survives. drasi-source-postgres sets the
//! password through the client's API and gets it as written.

use draas_protocol::drasi::{PostgresBootstrapConfig, StoredProcReactionConfig};
use serde_json::Value;

/// The body for drasi-bootstrap-postgres's descriptor (its connection keys already filled).
pub fn bootstrap_body(provider: &PostgresBootstrapConfig) -> Value {
    with_quoted_password(
        serde_json::to_value(provider).unwrap_or_default(),
        provider.password.as_deref(),
    )
}

/// The body for drasi-reaction-storedproc-postgres's descriptor, from the reaction's own
/// keys (`plugin_body` of components.rs).
pub fn storedproc_body(body: Value, reaction: &StoredProcReactionConfig) -> Value {
    with_quoted_password(body, reaction.password.as_deref())
}

fn with_quoted_password(mut body: Value, password: Option<&str>) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert(
            "password".to_owned(),
            Value::String(quote_conn_value(password.unwrap_or_default())),
        );
    }
    body
}

/// A libpq connection-string value that reads back as `value`, whatever it holds.
pub fn quote_conn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_password_reads_back_as_written() {
        for password in [
            "",
            "plain",
            "with space",
            "it's",
            r"back\slash",
            "x dbname=other",
        ] {
            let conn = format!(
                "host=localhost user=u password={} dbname=d",
                quote_conn_value(password)
            );
            let parsed: tokio_postgres::Config = conn.parse().unwrap();
            assert_eq!(parsed.get_password(), Some(password.as_bytes()), "{conn}");
            assert_eq!(parsed.get_dbname(), Some("d"), "{conn}");
        }
    }

    #[test]
    fn the_plugins_get_the_password_quoted() {
        let provider = PostgresBootstrapConfig {
            database: Some("d".into()),
            password: Some("a b".into()),
            ..Default::default()
        };
        assert_eq!(bootstrap_body(&provider)["password"], "'a b'");
        let none = PostgresBootstrapConfig::default();
        assert_eq!(bootstrap_body(&none)["password"], "''");
    }
}

//! What the MySQL and SQL Server stored-procedure plugins are handed
//! (drasi-reaction-storedproc-mysql, drasi-reaction-storedproc-mssql). Both take `password`
//! as a required key and set it through their client's API (mysql_async's `OptsBuilder`,
//! tiberius's `AuthMethod`), never inside a connection string, so it is passed as written,
//! empty when the config has none. (storedproc-postgres gets its password quoted:
//! [`super::postgres::storedproc_body`].)
//!
//! With `ssl: true` both connect over rustls: runtime/Cargo.toml enables mysql_async's
//! `rustls-tls` (the plugin enables no TLS backend, and mysql_async without one refuses TLS)
//! and drasi-reaction-storedproc-mssql's `rustls` feature instead of its `native-tls`.

use draas_protocol::drasi::StoredProcReactionConfig;
use serde_json::Value;

/// The body for the MySQL or SQL Server plugin's descriptor, from the reaction's own keys
/// (`plugin_body` of components.rs).
pub fn body(mut body: Value, reaction: &StoredProcReactionConfig) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert(
            "password".to_owned(),
            Value::String(reaction.password.clone().unwrap_or_default()),
        );
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use draas_protocol::drasi::{DrasiConfig, ReactionConfig};
    use drasi_plugin_sdk::descriptor::ReactionPluginDescriptor;
    use serde_json::json;

    fn reaction(kind: &str, extra: Value) -> StoredProcReactionConfig {
        let mut r = json!({"kind": kind, "id": "sp", "queries": ["q"], "hostname": "127.0.0.1",
            "port": 9, "user": "u", "database": "d",
            "defaultTemplate": {"added": {"template": "CALL a({{param after.id}})"}}});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        let cfg = DrasiConfig::from_json_value(json!({
            "sources": [{"kind": "mock", "id": "m"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
            "reactions": [r]}))
        .unwrap();
        match &cfg.reactions[0] {
            ReactionConfig::StoredProcMysql(r) | ReactionConfig::StoredProcMssql(r) => r.clone(),
            other => panic!("a stored-procedure reaction expected: {other:?}"),
        }
    }

    fn plugin_body(r: &StoredProcReactionConfig) -> Value {
        let mut v = serde_json::to_value(r).unwrap();
        for key in ["id", "queries", "autoStart", "identityProvider"] {
            v.as_object_mut().unwrap().remove(key);
        }
        body(v, r)
    }

    #[test]
    fn the_password_is_passed_as_written_or_empty() {
        let r = reaction("storedproc-mysql", json!({"password": "a b'c\\"}));
        assert_eq!(plugin_body(&r)["password"], "a b'c\\");
        let r = reaction("storedproc-mysql", json!({}));
        assert_eq!(plugin_body(&r)["password"], "");
    }

    /// Both plugins take what DRaaS hands them, TLS on or off (building connects to nothing).
    #[tokio::test]
    async fn both_plugins_accept_the_body() {
        for ssl in [false, true] {
            let r = reaction("storedproc-mysql", json!({"ssl": ssl, "retryAttempts": 1}));
            drasi_reaction_storedproc_mysql::descriptor::MySqlStoredProcReactionDescriptor
                .create_reaction("sp", vec!["q".into()], &plugin_body(&r), false)
                .await
                .unwrap();
            let r = reaction(
                "storedproc-mssql",
                json!({"ssl": ssl, "commandTimeoutMs": 500}),
            );
            drasi_reaction_storedproc_mssql::descriptor::MsSqlStoredProcReactionDescriptor
                .create_reaction("sp", vec!["q".into()], &plugin_body(&r), false)
                .await
                .unwrap();
        }
    }
}

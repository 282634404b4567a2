//! The stored-procedure reactions: `storedproc-postgres` (drasi-reaction-storedproc-postgres),
//! `storedproc-mysql` (drasi-reaction-storedproc-mysql) and `storedproc-mssql`
//! (drasi-reaction-storedproc-mssql). The three plugins take the same keys, so one
//! [`StoredProcReactionConfig`] models them all; [`StoredProcDialect`] is what differs (the
//! default port). Keys and defaults are the plugins' own; a default the plugin applies is left
//! unset here, so rendering never invents values.
//!
//! Passwords are ordinary strings of the config: write `password: ${DB_PASSWORD}` with a
//! secret `env` value. Nothing here formats a password into a message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient::{self, Setting};
use super::outbound::OutboundAddress;
use super::port::Port;
use super::postgres::{POSTGRES_DEFAULT_HOST, POSTGRES_DEFAULT_PORT};
use super::reaction::ReactionConfig;

/// The server port of a `storedproc-mysql` reaction that names none.
pub const MYSQL_DEFAULT_PORT: u16 = 3306;
/// The server port of a `storedproc-mssql` reaction that names none.
pub const MSSQL_DEFAULT_PORT: u16 = 1433;
/// The server host every stored-procedure reaction uses when the config names none.
pub const STOREDPROC_DEFAULT_HOST: &str = POSTGRES_DEFAULT_HOST;

/// The database a stored-procedure reaction calls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredProcDialect {
    Postgres,
    MySql,
    MsSql,
}

impl StoredProcDialect {
    /// The reaction kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Postgres => "storedproc-postgres",
            Self::MySql => "storedproc-mysql",
            Self::MsSql => "storedproc-mssql",
        }
    }

    /// The port the plugin connects to when `port` is unset.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Postgres => POSTGRES_DEFAULT_PORT,
            Self::MySql => MYSQL_DEFAULT_PORT,
            Self::MsSql => MSSQL_DEFAULT_PORT,
        }
    }
}

/// `kind: storedproc-postgres | storedproc-mysql | storedproc-mssql`: calls a stored
/// procedure per result change, its command a Handlebars template whose `{{param after.x}}`
/// become bound parameters (`CALL p(…)` for PostgreSQL and MySQL, `EXEC p …` for SQL Server).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredProcReactionConfig {
    /// The reaction's id, unique in its instance.
    pub id: String,
    /// The ids of the queries whose result changes it receives.
    pub queries: Vec<String>,
    /// Start the reaction with the instance (default true).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub auto_start: Option<bool>,
    /// The id of an `identityProviders` entry the reaction authenticates with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    /// Default `localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Default 5432 (PostgreSQL), 3306 (MySQL), 1433 (SQL Server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::Port>)]
    pub port: Option<Port>,
    /// The database user.
    pub user: String,
    /// Default empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The database the procedures live in.
    pub database: String,
    /// TLS when true; default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::FlagSetting>)]
    pub ssl: Option<Setting<bool>>,
    /// Per-query commands, keyed by query id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, StoredProcQueryCommands>,
    /// Commands for queries without a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_template: Option<StoredProcQueryCommands>,
    /// Default 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub command_timeout_ms: Option<Setting<u64>>,
    /// Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub retry_attempts: Option<Setting<u32>>,
}

impl StoredProcReactionConfig {
    /// The server the reaction connects to (`hostname`, judged literally by the egress
    /// check), with the plugin's defaults for what is unset.
    pub fn outbound_address(&self, dialect: StoredProcDialect) -> OutboundAddress {
        OutboundAddress {
            key: "hostname".to_owned(),
            host: self
                .hostname
                .clone()
                .unwrap_or_else(|| STOREDPROC_DEFAULT_HOST.to_owned()),
            port: self
                .port
                .clone()
                .unwrap_or(Port::Number(dialect.default_port())),
        }
    }
}

impl ReactionConfig {
    /// A stored-procedure reaction's dialect and keys; `None` for every other kind.
    pub fn storedproc(&self) -> Option<(StoredProcDialect, &StoredProcReactionConfig)> {
        match self {
            Self::StoredProcPostgres(r) => Some((StoredProcDialect::Postgres, r)),
            Self::StoredProcMysql(r) => Some((StoredProcDialect::MySql, r)),
            Self::StoredProcMssql(r) => Some((StoredProcDialect::MsSql, r)),
            _ => None,
        }
    }
}

/// The command of each kind of result change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredProcQueryCommands {
    /// For rows added to the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<StoredProcCommand>,
    /// For rows that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<StoredProcCommand>,
    /// For rows removed from the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<StoredProcCommand>,
}

/// `{template: "CALL record_added({{param after.id}})"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredProcCommand {
    /// The call, a template whose `{{param after.id}}` placeholders become bound parameters:
    /// `CALL add_order({{param after.id}})`.
    pub template: String,
}

#[cfg(test)]
mod tests {
    use super::super::{DrasiConfig, ReactionConfig};
    use super::*;
    use serde_json::json;

    fn config(reaction: serde_json::Value) -> serde_json::Value {
        json!({"sources": [{"kind": "mock", "id": "m"}],
               "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
               "reactions": [reaction]})
    }

    #[test]
    fn mysql_and_sql_server_reactions_parse_render_and_name_their_servers() {
        for (kind, dialect, port) in [
            ("storedproc-mysql", StoredProcDialect::MySql, 3306),
            ("storedproc-mssql", StoredProcDialect::MsSql, 1433),
            ("storedproc-postgres", StoredProcDialect::Postgres, 5432),
        ] {
            let cfg = DrasiConfig::from_json_value(config(json!({
                "kind": kind, "id": "sp", "queries": ["q"], "hostname": "db.example.com",
                "user": "u", "password": "${DB_PASSWORD}", "database": "d", "ssl": "true",
                "commandTimeoutMs": 5000, "retryAttempts": "2",
                "defaultTemplate": {"added": {"template": "CALL a({{param after.id}})"}}})))
            .unwrap();
            cfg.validate().unwrap();
            let reaction = &cfg.reactions[0];
            assert_eq!(reaction.kind(), kind);
            assert_eq!(reaction.storedproc().map(|(d, _)| d), Some(dialect));
            let sp = reaction_body(reaction);
            assert_eq!(
                (sp.ssl.clone(), sp.retry_attempts.clone()),
                (Some(Setting::Value(true)), Some(Setting::Value(2)))
            );
            let addresses = cfg.outbound_addresses();
            assert_eq!(addresses.len(), 1, "{addresses:?}");
            assert_eq!(
                (
                    addresses[0].key.as_str(),
                    addresses[0].host.as_str(),
                    addresses[0].port.clone()
                ),
                (
                    "reactions[0].hostname",
                    "db.example.com",
                    Port::Number(port)
                )
            );
            let yaml = cfg.to_yaml();
            assert!(yaml.contains(&format!("kind: {kind}")), "{yaml}");
            assert!(yaml.contains("password: ${DB_PASSWORD}"), "{yaml}");
            assert_eq!(
                DrasiConfig::from_yaml_str(&yaml).unwrap().reactions,
                cfg.reactions
            );

            // Defaults: localhost and the dialect's port; an unknown key is named.
            let cfg = DrasiConfig::from_json_value(config(json!({
                "kind": kind, "id": "sp", "queries": ["q"], "user": "u", "database": "d"})))
            .unwrap();
            let a = &cfg.outbound_addresses()[0];
            assert_eq!(
                (a.host.as_str(), a.port.clone()),
                ("localhost", Port::Number(port))
            );
            let err = DrasiConfig::from_json_value(config(json!({
                "kind": kind, "id": "sp", "queries": ["q"], "user": "u", "database": "d",
                "host": "db"})))
            .unwrap_err();
            assert_eq!(err.path, "reactions[0].host", "{err}");
        }
    }

    fn reaction_body(r: &ReactionConfig) -> &StoredProcReactionConfig {
        r.storedproc().expect("a stored-procedure reaction").1
    }
}

//! The PostgreSQL kinds: the `postgres` source (change data capture over logical replication,
//! drasi-source-postgres), its `postgres` bootstrap provider (the initial rows,
//! drasi-bootstrap-postgres); the `storedproc-postgres` reaction's keys are the shared
//! [`super::storedproc::StoredProcReactionConfig`]. Keys and defaults are the plugins' own; a
//! default the plugin applies is left unset here, so rendering never invents values.
//!
//! Passwords are ordinary strings of the config: write `password: ${PG_PASSWORD}` with a
//! secret `env` value. Nothing here formats a password into a message.

use serde::{Deserialize, Serialize};

use super::bootstrap;
use super::lenient::{self, Setting};
use super::port::Port;

/// The server port every PostgreSQL kind uses when the config names none.
pub const POSTGRES_DEFAULT_PORT: u16 = 5432;
/// The server host every PostgreSQL kind uses when the config names none.
pub const POSTGRES_DEFAULT_HOST: &str = "localhost";

/// `kind: postgres`: streams a database's row changes from a logical replication slot (which
/// the source creates) of an existing publication. The server needs `wal_level=logical` and a
/// user with `REPLICATION`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// The source's id, unique in its instance: queries subscribe to it by this id.
    pub id: String,
    /// Start the source with the instance (default true).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub auto_start: Option<bool>,
    /// An inline provider (`{kind: postgres, …}`) or the id of one in `bootstrapProviders`;
    /// anything else is refused while parsing.
    #[serde(
        default,
        deserialize_with = "bootstrap::checked_ref",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::BootstrapProviderRefSchema>)]
    pub bootstrap_provider: Option<serde_json::Value>,
    /// The id of an `identityProviders` entry the source authenticates with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    /// Default `localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Default 5432.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::Port>)]
    pub port: Option<Port>,
    /// The database whose changes it follows.
    pub database: String,
    /// A user with the `REPLICATION` attribute.
    pub user: String,
    /// The user's password; write `${NAME}` with a secret `env` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The tables to follow (`schema.table` or `table`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Default `drasi_slot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_name: Option<String>,
    /// Default `drasi_publication`; it must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication_name: Option<String>,
    /// Default `prefer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PostgresSslMode>)]
    pub ssl_mode: Option<Setting<PostgresSslMode>>,
    /// Key columns of tables without a primary key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table_keys: Vec<TableKeyConfig>,
}

/// `sslMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PostgresSslMode {
    Disable,
    Prefer,
    Require,
}

/// `tableKeys[]`: the columns that identify a row of `table`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableKeyConfig {
    /// The table (`schema.table` or `table`).
    pub table: String,
    /// The columns that identify a row.
    pub key_columns: Vec<String>,
}

/// A `postgres` bootstrap provider: the same keys as the source, every one optional. The
/// plugin does not read its source's settings, so [`PostgresBootstrapConfig::filled_from`]
/// supplies the missing ones from the `postgres` source it serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresBootstrapConfig {
    /// The server (default: the source's, else `localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The server's port (default: the source's, else 5432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::Port>)]
    pub port: Option<Port>,
    /// The database (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The user (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The password (default: the source's); write `${NAME}` with a secret `env` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The tables whose rows are loaded (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// The replication slot (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_name: Option<String>,
    /// The publication (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication_name: Option<String>,
    /// TLS towards the server (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PostgresSslMode>)]
    pub ssl_mode: Option<Setting<PostgresSslMode>>,
    /// Key columns of tables without a primary key (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_keys: Option<Vec<TableKeyConfig>>,
}

impl PostgresBootstrapConfig {
    /// This provider with every key it leaves out taken from `source` (the connection of the
    /// `postgres` source it bootstraps), which is what a user writing
    /// `bootstrapProvider: {kind: postgres}` expects.
    pub fn filled_from(&self, source: &PostgresSourceConfig) -> Self {
        let or = |mine: &Option<String>, theirs: &Option<String>| mine.clone().or(theirs.clone());
        let or_list = |mine: &Option<Vec<String>>, theirs: &Vec<String>| {
            mine.clone()
                .or_else(|| (!theirs.is_empty()).then(|| theirs.clone()))
        };
        Self {
            host: or(&self.host, &source.host),
            port: self.port.clone().or_else(|| source.port.clone()),
            database: self.database.clone().or(Some(source.database.clone())),
            user: self.user.clone().or(Some(source.user.clone())),
            password: or(&self.password, &source.password),
            tables: or_list(&self.tables, &source.tables),
            slot_name: or(&self.slot_name, &source.slot_name),
            publication_name: or(&self.publication_name, &source.publication_name),
            ssl_mode: self.ssl_mode.clone().or_else(|| source.ssl_mode.clone()),
            table_keys: self
                .table_keys
                .clone()
                .or_else(|| (!source.table_keys.is_empty()).then(|| source.table_keys.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, DrasiConfig, Port, ReactionConfig, SourceConfig};
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<DrasiConfig, ConfigError> {
        DrasiConfig::from_json_value(v)
    }

    fn source(extra: serde_json::Value) -> serde_json::Value {
        let mut s = json!({"kind": "postgres", "id": "pg", "host": "db.example.com",
                           "database": "shop", "user": "drasi", "password": "${PG_PASSWORD}",
                           "tables": ["orders"]});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        json!({"sources": [s]})
    }

    #[test]
    fn a_postgres_source_parses_renders_and_names_a_bad_key() {
        let cfg = parse(source(json!({"port": "5433", "sslMode": "disable",
            "tableKeys": [{"table": "orders", "keyColumns": ["id"]}],
            "bootstrapProvider": {"kind": "postgres"}})))
        .unwrap();
        let SourceConfig::Postgres(pg) = &cfg.sources[0] else {
            panic!("postgres source expected")
        };
        assert_eq!(pg.port, Some(Port::Number(5433)));
        assert_eq!(cfg.sources[0].kind(), "postgres");
        let yaml = cfg.to_yaml();
        assert!(yaml.contains("kind: postgres"), "{yaml}");
        assert!(yaml.contains("password: ${PG_PASSWORD}"), "{yaml}");
        assert_eq!(DrasiConfig::from_yaml_str(&yaml).unwrap(), cfg);

        let err = parse(source(json!({"slotname": "x"}))).unwrap_err();
        assert_eq!(err.path, "sources[0].slotname", "{err}");
        assert!(err.message.contains("slotname"), "{err}");
        let err = parse(source(json!({"sslMode": "verify-full"}))).unwrap_err();
        assert_eq!(err.path, "sources[0].sslMode", "{err}");
        let err = parse(source(
            json!({"tableKeys": [{"table": "t", "columns": []}]}),
        ))
        .unwrap_err();
        assert!(err.path.starts_with("sources[0].tableKeys[0]"), "{err}");
        let mut no_db = source(json!({}));
        no_db["sources"][0]
            .as_object_mut()
            .unwrap()
            .remove("database");
        let err = parse(no_db).unwrap_err();
        assert!(err.message.contains("database"), "{err}");
    }

    #[test]
    fn a_postgres_source_checks_its_bootstrap_provider() {
        parse(source(json!({"bootstrapProvider": "shared"}))).unwrap();
        let err = parse(source(
            json!({"bootstrapProvider": {"kind": "postgres", "hots": "x"}}),
        ))
        .unwrap_err();
        assert_eq!(err.path, "sources[0].bootstrapProvider.hots", "{err}");
        assert!(err.message.contains("unknown field"), "{err}");
        let err = parse(source(json!({"bootstrapProvider": {"kind": "scriptfile"}}))).unwrap_err();
        assert_eq!(err.path, "sources[0].bootstrapProvider.kind", "{err}");
        assert!(
            err.message
                .contains("supported bootstrap provider kinds: postgres"),
            "{err}"
        );
        let err = parse(source(json!({"bootstrapProvider": 7}))).unwrap_err();
        assert_eq!(err.path, "sources[0].bootstrapProvider", "{err}");
    }

    #[test]
    fn a_bootstrap_provider_takes_what_it_leaves_out_from_its_source() {
        let cfg = parse(source(json!({"port": 5433}))).unwrap();
        let SourceConfig::Postgres(pg) = &cfg.sources[0] else {
            panic!()
        };
        let own = super::PostgresBootstrapConfig {
            host: Some("replica.example.com".into()),
            ..Default::default()
        };
        let filled = own.filled_from(pg);
        assert_eq!(filled.host.as_deref(), Some("replica.example.com"));
        assert_eq!(filled.port, Some(Port::Number(5433)));
        assert_eq!(filled.database.as_deref(), Some("shop"));
        assert_eq!(filled.password.as_deref(), Some("${PG_PASSWORD}"));
        assert_eq!(filled.tables, Some(vec!["orders".to_owned()]));
        assert_eq!(filled.slot_name, None);
    }

    #[test]
    fn the_new_reactions_parse_and_refuse_unknown_keys() {
        let base = |r: serde_json::Value| {
            json!({"sources": [{"kind": "mock", "id": "m"}],
                   "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
                   "reactions": [r]})
        };
        let cfg = parse(base(
            json!({"kind": "storedproc-postgres", "id": "sp", "queries": ["q"],
            "hostname": "db", "port": "5432", "user": "u", "password": "${P}", "database": "d",
            "ssl": "false", "retryAttempts": 1,
            "routes": {"q": {"added": {"template": "CALL a({{param after.id}})"}}}}),
        ))
        .unwrap();
        cfg.validate().unwrap();
        let ReactionConfig::StoredProcPostgres(sp) = &cfg.reactions[0] else {
            panic!("storedproc-postgres expected")
        };
        assert_eq!(
            (sp.port.clone(), sp.ssl.clone()),
            (
                Some(Port::Number(5432)),
                Some(crate::drasi::Setting::Value(false))
            )
        );
        assert_eq!(cfg.reactions[0].kind(), "storedproc-postgres");
        let yaml = cfg.to_yaml();
        assert!(yaml.contains("kind: storedproc-postgres"), "{yaml}");
        let again = DrasiConfig::from_yaml_str(&yaml).unwrap();
        assert_eq!(again.reactions, cfg.reactions);
        let err = parse(base(
            json!({"kind": "storedproc-postgres", "id": "sp", "queries": ["q"],
            "user": "u", "database": "d",
            "routes": {"q": {"added": {"command": "CALL a()"}}}}),
        ))
        .unwrap_err();
        assert!(err.path.starts_with("reactions[0].routes.q.added"), "{err}");

        let cfg = parse(base(
            json!({"kind": "profiler", "id": "p", "queries": ["q"],
            "windowSize": "100", "reportIntervalSecs": 5}),
        ))
        .unwrap();
        assert_eq!(cfg.reactions[0].kind(), "profiler");
        let err = parse(base(
            json!({"kind": "profiler", "id": "p", "queries": ["q"], "window": 1}),
        ))
        .unwrap_err();
        assert!(err.message.contains("window"), "{err}");
        let err = parse(base(json!({"kind": "kafka", "id": "p", "queries": ["q"]}))).unwrap_err();
        assert!(
            err.message.contains(
                "supported reaction kinds: log, http, sse, profiler, storedproc-postgres, grpc"
            ),
            "{err}"
        );
    }
}

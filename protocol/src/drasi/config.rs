//! The top-level drasi-server document ([`DrasiConfig`]), its `instances:` entries, the state
//! store and plugin references, plus parsing from YAML and JSON.

use serde::{Deserialize, Serialize};

use super::interpolate::{normalise, yaml_to_json};
use super::lenient::{self, Setting};
use super::port::Port;
use super::{ConfigError, QueryConfig, ReactionConfig, SourceConfig};

/// A drasi-server configuration file. Every top-level key drasi-server accepts is accepted;
/// optional settings stay `None` so that rendering never invents values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrasiConfig {
    /// The file's format marker, `drasi.io/v1`; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The server's id (drasi-server makes a fresh UUID at every start when absent). DRaaS runs
    /// the instance under its own id and says so in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The address drasi-server's REST API binds (its default: `0.0.0.0`). The platform assigns
    /// it under DRaaS; a value here is replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The REST API's port (drasi-server's default: 8080). The platform assigns it under DRaaS;
    /// a value here is replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::Port>)]
    pub port: Option<Port>,
    /// trace, debug, info, warn or error (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// drasi-server: write components added through its own REST API back to the config file
    /// (its default: true). Under DRaaS the config changes through DRaaS; the instance's copy
    /// is not read back.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub persist_config: Option<bool>,
    /// Keep the query indexes in RocksDB on disk instead of in memory (drasi-server's default:
    /// false), so a query's state survives a stop and start; its sources must be durable.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub persist_index: Option<bool>,
    /// With persistent indexes, also keep every element's past versions, which Cypher's
    /// `past()` functions read (default false).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub enable_archive: Option<bool>,
    /// drasi-server: serve its web UI at `/ui` (its default: true). draas-runtime has none.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub enable_ui: Option<bool>,
    /// drasi-server: the directory of solution templates (its default: `./solutions`), confined
    /// to the instance's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solutions_dir: Option<String>,
    /// Where plugins keep state across restarts: `{kind: redb, path}`; in memory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_store: Option<StateStoreConfig>,
    /// Secret store settings, kept verbatim (their schema belongs to secret-store plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store: Option<serde_json::Value>,
    /// The capacity of each query's and reaction's queue of incoming changes, unless it sets
    /// its own (drasi-server's default: 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub default_priority_queue_capacity: Option<Setting<u64>>,
    /// The capacity of the buffers that carry changes from sources to queries and from queries
    /// to reactions, unless one sets its own (drasi-server's default: 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub default_dispatch_buffer_capacity: Option<Setting<u64>>,
    /// drasi-server: the OCI registry short plugin names resolve against (its default:
    /// `ghcr.io/drasi-project`). Ignored under DRaaS, where plugins are the operator's, and named
    /// in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_registry: Option<String>,
    /// drasi-server: download missing plugins from the registry at start-up. Ignored under DRaaS,
    /// where plugins are the operator's, and named in `warnings`.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub auto_install_plugins: Option<bool>,
    /// drasi-server: the plugins to install, by OCI reference. Ignored under DRaaS, where plugins
    /// are the operator's, and named in `warnings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginRef>,
    /// drasi-server: check the cosign signatures of downloaded plugins (its default: true).
    /// Ignored under DRaaS, where plugins are the operator's, and named in `warnings`.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub verify_plugins: Option<bool>,
    /// drasi-server: the signers trusted when plugins are verified (its default: the drasi-project
    /// identity). Ignored under DRaaS, where plugins are the operator's, and named in `warnings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_identities: Vec<TrustedIdentity>,
    /// drasi-server: watch the plugins directory and reload changed plugins (its default:
    /// false). Ignored under DRaaS, where plugins are the operator's, and named in `warnings`.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub hot_reload_plugins: Option<bool>,
    /// drasi-server: the debounce window of plugin reloads, in milliseconds (its default:
    /// 2000). Ignored under DRaaS, where plugins are the operator's, and named in `warnings`.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Count>)]
    pub hot_reload_debounce_ms: Option<u64>,
    /// drasi-server: the origins its REST API allows (every origin when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_allowed_origins: Vec<String>,
    /// Identity provider entries, kept verbatim (plugin-defined schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_providers: Vec<serde_json::Value>,
    /// Top-level bootstrap provider entries, kept verbatim (plugin-defined schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_providers: Vec<serde_json::Value>,
    /// Where change events come from, tagged by `kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    /// Continuous queries: result sets kept up to date as the sources change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QueryConfig>,
    /// What happens with the queries' result changes, tagged by `kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionConfig>,
    /// Multi-instance mode: when non-empty, each entry is one DrasiLib instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceConfig>,
}

/// One DrasiLib instance in multi-instance mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceConfig {
    /// The instance's id, unique in the config. The data routes reach its queries only when it
    /// has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Keep the query indexes in RocksDB on disk instead of in memory (drasi-server's default:
    /// false), so a query's state survives a stop and start; its sources must be durable.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub persist_index: Option<bool>,
    /// With persistent indexes, also keep every element's past versions, which Cypher's
    /// `past()` functions read (default false).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub enable_archive: Option<bool>,
    /// Where plugins keep state across restarts: `{kind: redb, path}`; in memory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_store: Option<StateStoreConfig>,
    /// Secret-store plugin settings, kept verbatim (their schema belongs to the plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store: Option<serde_json::Value>,
    /// The capacity of each query's and reaction's queue of incoming changes, unless it sets
    /// its own (drasi-server's default: 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub default_priority_queue_capacity: Option<Setting<u64>>,
    /// The capacity of the buffers that carry changes from sources to queries and from queries
    /// to reactions, unless one sets its own (drasi-server's default: 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub default_dispatch_buffer_capacity: Option<Setting<u64>>,
    /// Identity providers that sources and reactions name in `identityProvider`, kept verbatim
    /// (plugin-defined).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_providers: Vec<serde_json::Value>,
    /// Named bootstrap providers, `{id, kind, …settings}`, that sources name in
    /// `bootstrapProvider`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_providers: Vec<serde_json::Value>,
    /// Where change events come from, tagged by `kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    /// Continuous queries: result sets kept up to date as the sources change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QueryConfig>,
    /// What happens with the queries' result changes, tagged by `kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionConfig>,
}

/// `stateStore: {kind: redb, path: ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateStoreConfig {
    /// `redb`: an embedded key-value store in one file.
    pub kind: StateStoreKind,
    /// The store's file, confined to the instance's directory.
    pub path: String,
}

/// State store kinds drasi-server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateStoreKind {
    Redb,
}

/// `plugins: [{ref: source/http}]`: an OCI plugin reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// An OCI reference: `source/http:0.2`, or `ghcr.io/acme/source-http:1`.
    #[serde(rename = "ref")]
    pub reference: String,
}

impl PluginRef {
    /// The `(category, kind)` a reference names, e.g. `source/http:0.2` and
    /// `ghcr.io/acme/source-http:1` both give `("source", "http")`. `None` if unrecognised.
    pub fn category_and_kind(&self) -> Option<(&str, &str)> {
        let reference = self.reference.split('@').next()?;
        let mut segments = reference.rsplit('/');
        let last = segments.next()?;
        let last = last.split(':').next()?;
        let is_category = |c: &str| matches!(c, "source" | "reaction" | "bootstrap");
        match segments.next() {
            Some(category) if is_category(category) => Some((category, last)),
            _ => last
                .split_once('-')
                .filter(|(category, _)| is_category(category)),
        }
    }
}

/// A trusted signer for plugin verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedIdentity {
    /// The OIDC issuer of the signing certificate.
    pub issuer: String,
    /// A pattern the certificate's subject must match.
    pub subject_pattern: String,
}

impl DrasiConfig {
    /// Parses a YAML document. Unknown keys, unknown kinds and type errors are reported with
    /// the path of the offending key. No reference is resolved here (see
    /// [`super::interpolate`]); a structured one (`{kind: EnvironmentVariable, name: N}`) in a
    /// settings field is read as its string form (`${N}`), and a `Secret` one is refused, as
    /// [`DrasiConfig::from_json_value`] does.
    pub fn from_yaml_str(s: &str) -> Result<Self, ConfigError> {
        if is_blank_yaml(s) {
            return Ok(Self::default());
        }
        if let Ok(mut doc) = yaml_to_json(s)
            && normalise(&mut doc)?
        {
            return serde_path_to_error::deserialize(doc).map_err(ConfigError::from_serde);
        }
        // Straight from the text, so an error keeps its line and column.
        let de = serde_yaml::Deserializer::from_str(s);
        serde_path_to_error::deserialize(de).map_err(ConfigError::from_serde)
    }

    /// Parses the same schema from a JSON value (for example a REST request body). A
    /// structured reference in a settings field becomes its string form first
    /// ([`super::interpolate::normalise`]: `{kind: EnvironmentVariable, name: N, default: D}`
    /// is stored, rendered and resolved as `${N:-D}`); a `Secret` or unknown `kind` there is
    /// an error naming the field.
    pub fn from_json_value(mut v: serde_json::Value) -> Result<Self, ConfigError> {
        normalise(&mut v)?;
        serde_path_to_error::deserialize(v).map_err(ConfigError::from_serde)
    }

    /// The effective instances: the `instances:` entries, or one implicit instance built from
    /// the top-level settings when there are none. Paths are the config-file prefixes.
    pub fn effective_instances(&self) -> Vec<(String, InstanceConfig)> {
        if !self.instances.is_empty() {
            return self
                .instances
                .iter()
                .enumerate()
                .map(|(i, inst)| (format!("instances[{i}]"), inst.clone()))
                .collect();
        }
        let implicit = InstanceConfig {
            id: self.id.clone(),
            persist_index: self.persist_index,
            enable_archive: self.enable_archive,
            state_store: self.state_store.clone(),
            secret_store: self.secret_store.clone(),
            default_priority_queue_capacity: self.default_priority_queue_capacity.clone(),
            default_dispatch_buffer_capacity: self.default_dispatch_buffer_capacity.clone(),
            identity_providers: self.identity_providers.clone(),
            bootstrap_providers: self.bootstrap_providers.clone(),
            sources: self.sources.clone(),
            queries: self.queries.clone(),
            reactions: self.reactions.clone(),
        };
        vec![(String::new(), implicit)]
    }
}

fn is_blank_yaml(s: &str) -> bool {
    s.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

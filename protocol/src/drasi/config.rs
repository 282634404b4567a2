//! The top-level drasi-server document ([`DrasiConfig`]), its `instances:` entries, the state
//! store and plugin references, plus parsing from YAML and JSON.

use serde::{Deserialize, Serialize};

use super::lenient;
use super::{ConfigError, QueryConfig, ReactionConfig, SourceConfig};

/// A drasi-server configuration file. Every top-level key drasi-server accepts is accepted;
/// optional settings stay `None` so that rendering never invents values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrasiConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<u16>,
    /// trace, debug, info, warn or error (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub persist_config: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub persist_index: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_archive: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ui: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solutions_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_store: Option<StateStoreConfig>,
    /// Secret store settings, kept verbatim (their schema belongs to secret-store plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store: Option<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_priority_queue_capacity: Option<u64>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_dispatch_buffer_capacity: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_registry: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_install_plugins: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginRef>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_plugins: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_identities: Vec<TrustedIdentity>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub hot_reload_plugins: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub hot_reload_debounce_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_allowed_origins: Vec<String>,
    /// Identity provider entries, kept verbatim (plugin-defined schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_providers: Vec<serde_json::Value>,
    /// Top-level bootstrap provider entries, kept verbatim (plugin-defined schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_providers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QueryConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionConfig>,
    /// Multi-instance mode: when non-empty, each entry is one DrasiLib instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceConfig>,
}

/// One DrasiLib instance in multi-instance mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub persist_index: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_archive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_store: Option<StateStoreConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store: Option<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_priority_queue_capacity: Option<u64>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_dispatch_buffer_capacity: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_providers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_providers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QueryConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionConfig>,
}

/// `stateStore: {kind: redb, path: ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateStoreConfig {
    pub kind: StateStoreKind,
    pub path: String,
}

/// State store kinds drasi-server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateStoreKind {
    Redb,
}

/// `plugins: [{ref: source/http}]`: an OCI plugin reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedIdentity {
    pub issuer: String,
    pub subject_pattern: String,
}

impl DrasiConfig {
    /// Parses a YAML document. Unknown keys, unknown kinds and type errors are reported with
    /// the path of the offending key. No interpolation is done here; see [`super::interpolate`].
    pub fn from_yaml_str(s: &str) -> Result<Self, ConfigError> {
        if is_blank_yaml(s) {
            return Ok(Self::default());
        }
        let de = serde_yaml::Deserializer::from_str(s);
        serde_path_to_error::deserialize(de).map_err(ConfigError::from_serde)
    }

    /// Parses the same schema from a JSON value (for example a REST request body).
    pub fn from_json_value(v: serde_json::Value) -> Result<Self, ConfigError> {
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
            default_priority_queue_capacity: self.default_priority_queue_capacity,
            default_dispatch_buffer_capacity: self.default_dispatch_buffer_capacity,
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

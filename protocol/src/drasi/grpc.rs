//! The gRPC kinds: the `grpc` source (change events submitted over gRPC, drasi-source-grpc:
//! `drasi.v1.SourceService`) and the `grpc` reaction (result changes sent to a
//! `drasi.v1.ReactionService` endpoint, drasi-reaction-grpc). Keys and defaults are the
//! plugins' own; a default the plugin applies is left unset here, so rendering never invents
//! values.
//!
//! A `grpc` source listens, so its `host`/`port` belong to the platform
//! ([`super::DrasiConfig::assign_ports`]), like an http source's. A `grpc` reaction connects
//! out to `endpoint`, which the egress policy judges ([`GrpcReactionConfig::outbound_address`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient::{self, Setting};
use super::outbound::OutboundAddress;
use super::port::Port;
use super::reaction::RecoveryPolicy;

/// `kind: grpc` (source): a gRPC server receiving source change events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcSourceConfig {
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
    /// Where the source's initial data comes from: the id of a `bootstrapProviders` entry, or
    /// an inline provider, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_provider: Option<serde_json::Value>,
    /// The id of an `identityProviders` entry the source authenticates with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    /// The address its gRPC listener binds (the plugin's default: `0.0.0.0`). The platform
    /// assigns it under DRaaS; a value here is replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The port its gRPC listener binds (the plugin's default: 50051). The platform assigns it
    /// under DRaaS; a value here is replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::Port>)]
    pub port: Option<Port>,
    /// An optional service endpoint (informational for the plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub timeout_ms: Option<Setting<u64>>,
    /// WAL durability settings, passed through to drasi-lib's `DurabilityConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<serde_json::Value>,
}

/// drasi-reaction-grpc's scheme for plain-text gRPC (rewritten to `http://` by the plugin).
pub const GRPC_SCHEME: &str = "grpc";

/// `kind: grpc` (reaction): sends each batch of a query's result changes as one
/// `drasi.v1.ReactionService/ProcessResults` call to `endpoint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcReactionConfig {
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
    /// `grpc://host:port` or `http://host:port`.
    pub endpoint: String,
    /// Per-call timeout; default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub timeout_ms: Option<Setting<u64>>,
    /// Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub max_retries: Option<Setting<u32>>,
    /// Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub connection_retry_attempts: Option<Setting<u32>>,
    /// Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub initial_connection_timeout_ms: Option<Setting<u64>>,
    /// Sent with every call, as gRPC request metadata and in the request body.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Default `canonicalJson`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<GrpcOutputFormat>,
    /// Default `{mode: fixed, batchSize: 100, batchFlushTimeoutMs: 1000}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<GrpcBatching>,
    /// Templates per query and change (with `canonicalJson`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_templates: Option<GrpcOutputTemplates>,
    /// What a restarted reaction does when the query no longer holds every change it missed:
    /// `strict` or `auto_skip_gap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_policy: Option<RecoveryPolicy>,
}

/// How a grpc reaction encodes changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum GrpcOutputFormat {
    CanonicalJson,
    Proto,
}

/// `batching: {mode: fixed | adaptive, …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum GrpcBatching {
    /// Batches of a fixed size.
    #[serde(rename_all = "camelCase")]
    Fixed {
        /// Changes per batch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<crate::schema::CountSetting>)]
        batch_size: Option<Setting<u64>>,
        /// The longest a partial batch waits, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<crate::schema::CountSetting>)]
        batch_flush_timeout_ms: Option<Setting<u64>>,
    },
    /// Batches sized by measured throughput.
    #[serde(rename_all = "camelCase")]
    Adaptive {
        /// The fewest changes worth a batch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<crate::schema::CountSetting>)]
        adaptive_min_batch_size: Option<Setting<u64>>,
        /// The most changes in one batch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<crate::schema::CountSetting>)]
        adaptive_max_batch_size: Option<Setting<u64>>,
        /// How many recent batches throughput is measured over.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<crate::schema::CountSetting>)]
        adaptive_window_size: Option<Setting<u64>>,
        /// The longest a change waits for its batch, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<crate::schema::CountSetting>)]
        adaptive_batch_timeout_ms: Option<Setting<u64>>,
    },
}

/// A grpc reaction's templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcOutputTemplates {
    /// The templates for queries without a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_template: Option<GrpcQueryTemplates>,
    /// The templates per query, by query id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, GrpcQueryTemplates>,
}

/// A grpc reaction's templates for one query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcQueryTemplates {
    /// For rows added to the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<GrpcTemplateSpec>,
    /// For rows that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<GrpcTemplateSpec>,
    /// For rows removed from the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<GrpcTemplateSpec>,
}

/// A Handlebars body template (rendered into the item's `payload`) and per-call metadata
/// templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcTemplateSpec {
    /// A Handlebars template over the change: the message's payload.
    pub template: String,
    /// gRPC metadata of these calls.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl GrpcReactionConfig {
    /// The host and port `endpoint` names (port 80 when it names none, as the plugin's
    /// client does for `grpc://` and `http://`), or why it names none. A host that is a
    /// template or `${VAR}` is returned as written.
    pub fn outbound_address(&self) -> Result<OutboundAddress, String> {
        endpoint_address(&self.endpoint)
    }
}

/// Parses a gRPC reaction endpoint into its host and port.
pub(crate) fn endpoint_address(endpoint: &str) -> Result<OutboundAddress, String> {
    let lower = endpoint.to_ascii_lowercase();
    let as_http = match lower.split_once("://") {
        Some((GRPC_SCHEME, _)) | Some(("http", _)) => {
            format!(
                "http://{}",
                &endpoint[endpoint.find("://").unwrap_or(0) + 3..]
            )
        }
        Some(("https", _)) => endpoint.to_owned(),
        Some((scheme, _)) => {
            return Err(format!(
                "`{endpoint}`: unsupported scheme `{scheme}`; expected grpc:// or http://"
            ));
        }
        None => {
            return Err(format!(
                "`{endpoint}` is not a URL; expected grpc://host:port or http://host:port"
            ));
        }
    };
    let url = url::Url::parse(&as_http).map_err(|e| format!("`{endpoint}`: {e}"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{endpoint}` has no host"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(OutboundAddress {
        key: "endpoint".to_owned(),
        host: host.to_owned(),
        port: Port::Number(url.port_or_known_default().unwrap_or(80)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_their_host_and_port() {
        let a = endpoint_address("grpc://collector.example.com:50052").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port),
            ("collector.example.com", Port::Number(50052))
        );
        let a = endpoint_address("http://127.0.0.1").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", Port::Number(80)));
        let a = endpoint_address("GRPC://[::1]:9").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", Port::Number(9)));
        let a = endpoint_address("grpc://user@169.254.169.254:1").unwrap();
        assert_eq!(a.host, "169.254.169.254");
        assert!(endpoint_address("collector:50052").is_err());
        assert!(endpoint_address("ftp://x:1").is_err());
        assert!(endpoint_address("grpc://:1").is_err());
    }

    #[test]
    fn a_reaction_parses_with_the_plugins_keys() {
        let r: GrpcReactionConfig = serde_json::from_value(serde_json::json!({
            "id": "g", "queries": ["q"], "endpoint": "grpc://h:1", "timeoutMs": "5000",
            "metadata": {"k": "v"}, "outputFormat": "proto",
            "batching": {"mode": "adaptive", "adaptiveMaxBatchSize": 10},
            "outputTemplates": {"routes": {"q": {"added": {"template": "{{after.id}}",
                                                          "metadata": {"m": "x"}}}}},
            "recoveryPolicy": "auto_skip_gap"}))
        .unwrap();
        assert_eq!(r.timeout_ms, Some(Setting::Value(5000)));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["batching"]["mode"], "adaptive");
        assert_eq!(back["batching"]["adaptiveMaxBatchSize"], 10);
        assert_eq!(back["outputFormat"], "proto");
        let err = serde_json::from_value::<GrpcReactionConfig>(
            serde_json::json!({"id": "g", "queries": [], "endpoint": "grpc://h:1", "batchSize": 1}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("batchSize"), "{err}");
    }
}

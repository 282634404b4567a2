//! drasi-server's `http-adaptive` and `grpc-adaptive` reactions. Their published crates
//! (drasi-reaction-http-adaptive, drasi-reaction-grpc-adaptive) need an older drasi-lib;
//! upstream merged adaptive batching into the http and grpc reactions, so a config naming
//! these kinds keeps its flat keys here and runs as that reaction with adaptive batching:
//! [`HttpAdaptiveReactionConfig::to_http`], [`GrpcAdaptiveReactionConfig::to_grpc`].
//!
//! What changes with the move: the http-adaptive reaction posted a batch to
//! `{baseUrl}/batch` as a list of `{query_id, results, timestamp, count}`; the http reaction
//! posts every batch to the same `{baseUrl}/batch` as `{"batch": [item, …]}`, one item per
//! result change (a route's `body` template rendered, or the default change notification).
//! A route's `url`, `method` and `headers` have no use in batch delivery and are dropped.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::grpc::{GrpcBatching, GrpcReactionConfig};
use super::lenient::{self, Setting};
use super::reaction::{
    HttpAdaptiveConfig, HttpCallSpec, HttpOutputTemplates, HttpQueryCalls, HttpReactionConfig,
    ReactionConfig,
};

/// Where the http reaction posts an `http-adaptive` reaction's batches, as drasi-server's
/// http-adaptive reaction did (`{baseUrl}/batch`).
pub const HTTP_ADAPTIVE_BATCH_ENDPOINT: &str = "/batch";

/// `kind: http-adaptive`: result changes posted to `baseUrl` in batches sized by load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAdaptiveReactionConfig {
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
    /// The URL batches are posted to (under `/batch`).
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How long one call may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub timeout_ms: Option<Setting<u64>>,
    /// Per-query calls; only `body` (each batch item's template) applies in batch delivery.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, HttpAdaptiveQueryCalls>,
    /// The fewest changes worth a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_min_batch_size: Option<Setting<u64>>,
    /// The most changes in one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_max_batch_size: Option<Setting<u64>>,
    /// In units of 100 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_window_size: Option<Setting<u64>>,
    /// The longest a change waits for its batch, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_batch_timeout_ms: Option<Setting<u64>>,
}

/// drasi-server's per-operation http-adaptive calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAdaptiveQueryCalls {
    /// For rows added to the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<HttpAdaptiveCallSpec>,
    /// For rows that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<HttpAdaptiveCallSpec>,
    /// For rows removed from the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<HttpAdaptiveCallSpec>,
}

/// `{url, method, body, headers}` as drasi-server's http-adaptive reaction takes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAdaptiveCallSpec {
    /// The URL, relative to `baseUrl`.
    pub url: String,
    /// The HTTP method.
    pub method: String,
    /// The request body, a Handlebars template over the change.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl HttpAdaptiveReactionConfig {
    /// The http reaction this runs as: adaptive batching on, batches to
    /// [`HTTP_ADAPTIVE_BATCH_ENDPOINT`], each route's `body` the item template.
    pub fn to_http(&self) -> HttpReactionConfig {
        let item = |call: &Option<HttpAdaptiveCallSpec>| {
            call.as_ref()
                .filter(|c| !c.body.is_empty())
                .map(|c| HttpCallSpec {
                    template: c.body.clone(),
                    ..Default::default()
                })
        };
        let routes: BTreeMap<String, HttpQueryCalls> = self
            .routes
            .iter()
            .map(|(query, calls)| {
                (
                    query.clone(),
                    HttpQueryCalls {
                        added: item(&calls.added),
                        updated: item(&calls.updated),
                        deleted: item(&calls.deleted),
                    },
                )
            })
            .filter(|(_, calls)| {
                calls.added.is_some() || calls.updated.is_some() || calls.deleted.is_some()
            })
            .collect();
        HttpReactionConfig {
            id: self.id.clone(),
            queries: self.queries.clone(),
            auto_start: self.auto_start,
            identity_provider: self.identity_provider.clone(),
            base_url: Some(self.base_url.clone()),
            token: self.token.clone(),
            timeout_ms: self.timeout_ms.clone(),
            output_templates: (!routes.is_empty()).then_some(HttpOutputTemplates {
                default_template: None,
                routes,
            }),
            adaptive: Some(HttpAdaptiveConfig {
                adaptive_min_batch_size: self.adaptive_min_batch_size.clone(),
                adaptive_max_batch_size: self.adaptive_max_batch_size.clone(),
                adaptive_window_size: self.adaptive_window_size.clone(),
                adaptive_batch_timeout_ms: self.adaptive_batch_timeout_ms.clone(),
            }),
            batch_endpoint: Some(HTTP_ADAPTIVE_BATCH_ENDPOINT.to_owned()),
            ..Default::default()
        }
    }
}

/// `kind: grpc-adaptive`: result changes sent to a gRPC `endpoint` in batches sized by load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcAdaptiveReactionConfig {
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
    /// How long one call may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub timeout_ms: Option<Setting<u64>>,
    /// How often a failed call is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub max_retries: Option<Setting<u32>>,
    /// How often connecting is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub connection_retry_attempts: Option<Setting<u32>>,
    /// How long the first connection may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub initial_connection_timeout_ms: Option<Setting<u64>>,
    /// gRPC metadata sent with every call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The fewest changes worth a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_min_batch_size: Option<Setting<u64>>,
    /// The most changes in one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_max_batch_size: Option<Setting<u64>>,
    /// In units of 100 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_window_size: Option<Setting<u64>>,
    /// The longest a change waits for its batch, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_batch_timeout_ms: Option<Setting<u64>>,
}

impl GrpcAdaptiveReactionConfig {
    /// The grpc reaction this runs as: `batching: {mode: adaptive, …}`.
    pub fn to_grpc(&self) -> GrpcReactionConfig {
        GrpcReactionConfig {
            id: self.id.clone(),
            queries: self.queries.clone(),
            auto_start: self.auto_start,
            identity_provider: self.identity_provider.clone(),
            endpoint: self.endpoint.clone(),
            timeout_ms: self.timeout_ms.clone(),
            max_retries: self.max_retries.clone(),
            connection_retry_attempts: self.connection_retry_attempts.clone(),
            initial_connection_timeout_ms: self.initial_connection_timeout_ms.clone(),
            metadata: self.metadata.clone(),
            batching: Some(GrpcBatching::Adaptive {
                adaptive_min_batch_size: self.adaptive_min_batch_size.clone(),
                adaptive_max_batch_size: self.adaptive_max_batch_size.clone(),
                adaptive_window_size: self.adaptive_window_size.clone(),
                adaptive_batch_timeout_ms: self.adaptive_batch_timeout_ms.clone(),
            }),
            ..Default::default()
        }
    }
}

impl ReactionConfig {
    /// The reaction as the http reaction it runs as: an `http` reaction itself, an
    /// `http-adaptive` one translated; `None` for every other kind.
    pub fn as_http(&self) -> Option<Cow<'_, HttpReactionConfig>> {
        match self {
            Self::Http(r) => Some(Cow::Borrowed(r)),
            Self::HttpAdaptive(r) => Some(Cow::Owned(r.to_http())),
            _ => None,
        }
    }

    /// The reaction as the grpc reaction it runs as: a `grpc` reaction itself, a
    /// `grpc-adaptive` one translated; `None` for every other kind.
    pub fn as_grpc(&self) -> Option<Cow<'_, GrpcReactionConfig>> {
        match self {
            Self::Grpc(r) => Some(Cow::Borrowed(r)),
            Self::GrpcAdaptive(r) => Some(Cow::Owned(r.to_grpc())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DrasiConfig, Port};
    use super::*;
    use serde_json::json;

    fn config(reaction: serde_json::Value) -> serde_json::Value {
        json!({"sources": [{"kind": "mock", "id": "m"}],
               "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
               "reactions": [reaction]})
    }

    #[test]
    fn an_http_adaptive_reaction_runs_as_a_batching_http_reaction() {
        let cfg = DrasiConfig::from_json_value(config(json!({
            "kind": "http-adaptive", "id": "b", "queries": ["q"],
            "baseUrl": "https://ingest.example.com", "token": "${TOKEN}", "timeoutMs": "3000",
            "adaptiveMinBatchSize": 10, "adaptiveMaxBatchSize": "500",
            "adaptiveWindowSize": 20, "adaptiveBatchTimeoutMs": 250,
            "routes": {"q": {"added": {"url": "/ignored", "method": "POST",
                                       "body": "{\"id\": {{json after.id}}}"},
                             "deleted": {"url": "/d", "method": "DELETE"}}}})))
        .unwrap();
        cfg.validate().unwrap();
        let reaction = &cfg.reactions[0];
        assert_eq!(reaction.kind(), "http-adaptive");
        let http = reaction.as_http().unwrap().into_owned();
        assert_eq!(http.base_url.as_deref(), Some("https://ingest.example.com"));
        assert_eq!(http.batch_endpoint.as_deref(), Some("/batch"));
        assert_eq!(http.timeout_ms, Some(Setting::Value(3000)));
        let adaptive = http.adaptive.unwrap();
        assert_eq!(
            (
                adaptive.adaptive_min_batch_size,
                adaptive.adaptive_max_batch_size,
                adaptive.adaptive_window_size,
                adaptive.adaptive_batch_timeout_ms
            ),
            (
                Some(Setting::Value(10)),
                Some(Setting::Value(500)),
                Some(Setting::Value(20)),
                Some(Setting::Value(250))
            )
        );
        let routes = http.output_templates.unwrap().routes;
        let q = &routes["q"];
        assert_eq!(
            q.added.as_ref().unwrap().template,
            "{\"id\": {{json after.id}}}"
        );
        assert!(q.added.as_ref().unwrap().url.is_empty());
        assert!(q.deleted.is_none(), "no body: the default notification");
        // The base URL is judged by the egress check like an http reaction's.
        let urls = cfg.outbound_urls();
        assert_eq!(
            urls[0],
            (
                "reactions[0].baseUrl".to_owned(),
                "https://ingest.example.com".to_owned()
            )
        );
        let yaml = cfg.to_yaml();
        assert!(yaml.contains("kind: http-adaptive"), "{yaml}");
        assert_eq!(
            DrasiConfig::from_yaml_str(&yaml).unwrap().reactions,
            cfg.reactions
        );
        // A key of the http reaction is not one of http-adaptive's.
        let err = DrasiConfig::from_json_value(config(json!({
            "kind": "http-adaptive", "id": "b", "queries": ["q"],
            "baseUrl": "https://x.example.com", "batchEndpoint": "/b"})))
        .unwrap_err();
        assert_eq!(err.path, "reactions[0].batchEndpoint", "{err}");
    }

    #[test]
    fn a_grpc_adaptive_reaction_runs_as_an_adaptive_grpc_reaction() {
        let cfg = DrasiConfig::from_json_value(config(json!({
            "kind": "grpc-adaptive", "id": "g", "queries": ["q"],
            "endpoint": "grpc://collector.example.com:50052", "maxRetries": 2,
            "metadata": {"tenant": "a"}, "adaptiveMaxBatchSize": 200,
            "adaptiveBatchTimeoutMs": "50"})))
        .unwrap();
        cfg.validate().unwrap();
        let grpc = cfg.reactions[0].as_grpc().unwrap().into_owned();
        assert_eq!(grpc.endpoint, "grpc://collector.example.com:50052");
        assert_eq!(grpc.max_retries, Some(Setting::Value(2)));
        assert_eq!(grpc.metadata["tenant"], "a");
        assert_eq!(
            grpc.batching,
            Some(GrpcBatching::Adaptive {
                adaptive_min_batch_size: None,
                adaptive_max_batch_size: Some(Setting::Value(200)),
                adaptive_window_size: None,
                adaptive_batch_timeout_ms: Some(Setting::Value(50)),
            })
        );
        let addresses = cfg.outbound_addresses();
        assert_eq!(
            (
                addresses[0].key.as_str(),
                addresses[0].host.as_str(),
                addresses[0].port.clone()
            ),
            (
                "reactions[0].endpoint",
                "collector.example.com",
                Port::Number(50052)
            )
        );
        let err = DrasiConfig::from_json_value(config(json!({
            "kind": "grpc-adaptive", "id": "g", "queries": ["q"], "endpoint": "nowhere"})))
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(err.path, "reactions[0].endpoint", "{err}");
    }
}

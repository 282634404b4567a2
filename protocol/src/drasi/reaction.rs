//! Reaction kinds: [`ReactionConfig`] dispatches on `kind` to the log, http, sse, profiler,
//! storedproc-postgres/-mysql/-mssql, grpc, http-adaptive and grpc-adaptive reactions;
//! unknown kinds fail naming the kind and the supported ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::adaptive::{GrpcAdaptiveReactionConfig, HttpAdaptiveReactionConfig};
use super::grpc::GrpcReactionConfig;
use super::lenient::{self, Setting};
use super::outbound::OutboundAddress;
use super::port::Port;
use super::source::{body_as, split_kind, unknown_kind};
use super::storedproc::StoredProcReactionConfig;

/// Reaction kinds this model (and draas-runtime) supports.
pub const SUPPORTED_REACTION_KINDS: &[&str] = &[
    "log",
    "http",
    "sse",
    "profiler",
    "storedproc-postgres",
    "grpc",
    "storedproc-mysql",
    "storedproc-mssql",
    "http-adaptive",
    "grpc-adaptive",
];

/// One entry of `reactions[]`, tagged by `kind`: `log` (to the instance's log), `http` and
/// `http-adaptive` (HTTP calls), `sse` (Server-Sent Events on a port of its own), `grpc` and
/// `grpc-adaptive` (gRPC calls), `profiler` (latency statistics), `storedproc-postgres`,
/// `storedproc-mysql` and `storedproc-mssql` (stored-procedure calls).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
// Config values are few and cold; unboxed variants keep construction and matching plain.
#[allow(clippy::large_enum_variant)]
pub enum ReactionConfig {
    Log(LogReactionConfig),
    Http(HttpReactionConfig),
    Sse(SseReactionConfig),
    Profiler(ProfilerReactionConfig),
    #[serde(rename = "storedproc-postgres")]
    StoredProcPostgres(StoredProcReactionConfig),
    Grpc(GrpcReactionConfig),
    #[serde(rename = "storedproc-mysql")]
    StoredProcMysql(StoredProcReactionConfig),
    #[serde(rename = "storedproc-mssql")]
    StoredProcMssql(StoredProcReactionConfig),
    #[serde(rename = "http-adaptive")]
    HttpAdaptive(HttpAdaptiveReactionConfig),
    #[serde(rename = "grpc-adaptive")]
    GrpcAdaptive(GrpcAdaptiveReactionConfig),
}

/// `kind: profiler`: measures each result change's latency through the pipeline and logs
/// percentiles over a sliding window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfilerReactionConfig {
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
    /// Changes per statistics window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub window_size: Option<Setting<u64>>,
    /// Seconds between reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub report_interval_secs: Option<Setting<u64>>,
}

/// `kind: log`: writes result changes to stdout, optionally through Handlebars templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogReactionConfig {
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
    /// Templates per query, by query id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, LogQueryTemplates>,
    /// Templates for queries without a route; without any, each change is logged as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_template: Option<LogQueryTemplates>,
}

/// Per-operation templates of the log reaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogQueryTemplates {
    /// For rows added to the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<TemplateSpec>,
    /// For rows that changed (`before` and `after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<TemplateSpec>,
    /// For rows removed from the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<TemplateSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    /// A Handlebars template over the change (`after`, `before`, `query_name`, …).
    #[serde(default)]
    pub template: String,
}

/// `kind: http`: calls HTTP endpoints on result changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpReactionConfig {
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
    /// The URL every call's `url` is relative to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// A bearer token sent with every call; write `${NAME}` with a secret `env` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How long a call may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub timeout_ms: Option<Setting<u64>>,
    /// The capacity of its queue of incoming changes (default: `defaultPriorityQueueCapacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub priority_queue_capacity: Option<Setting<u64>>,
    /// The calls made per query and change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_templates: Option<HttpOutputTemplates>,
    /// Adaptive batching: with `batchEndpoint`, changes are posted in batches sized by
    /// throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<HttpAdaptiveConfig>,
    /// The path (under `baseUrl`) batches are posted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_endpoint: Option<String>,
    /// What a restarted reaction does when the query no longer holds every change it missed:
    /// `strict` (fail) or `auto_skip_gap` (carry on past the gap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_policy: Option<RecoveryPolicy>,
}

/// An http reaction's calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpOutputTemplates {
    /// The calls for queries without a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_template: Option<HttpQueryCalls>,
    /// The calls per query, by query id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, HttpQueryCalls>,
}

/// The calls made for one query's changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpQueryCalls {
    /// For rows added to the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<HttpCallSpec>,
    /// For rows that changed (`before` and `after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<HttpCallSpec>,
    /// For rows removed from the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<HttpCallSpec>,
}

/// One HTTP call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCallSpec {
    /// The request body, a Handlebars template over the change.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    /// The URL, relative to `baseUrl` (a template too).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The HTTP method (default POST).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Adaptive batching of an http reaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAdaptiveConfig {
    /// The fewest changes worth a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_min_batch_size: Option<Setting<u64>>,
    /// The most changes in one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_max_batch_size: Option<Setting<u64>>,
    /// How many recent batches throughput is measured over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_window_size: Option<Setting<u64>>,
    /// The longest a change waits for its batch, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_batch_timeout_ms: Option<Setting<u64>>,
}

/// What a restarted reaction does about changes it can no longer get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryPolicy {
    Strict,
    AutoSkipGap,
}

/// `kind: sse`: serves result changes as Server-Sent Events on its own port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SseReactionConfig {
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
    /// The address its SSE listener binds. The platform assigns it under DRaaS; a value here is
    /// replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The port its SSE listener binds. The platform assigns it under DRaaS; a value here is
    /// replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::Port>)]
    pub port: Option<Port>,
    /// The path of its event stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_path: Option<String>,
    /// Milliseconds between keep-alive heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub heartbeat_interval_ms: Option<Setting<u64>>,
    /// Templates per query, by query id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, SseQueryTemplates>,
    /// Templates for queries without a route; without any, each change is sent as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_template: Option<SseQueryTemplates>,
}

/// An sse reaction's templates for one query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SseQueryTemplates {
    /// For rows added to the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<SseTemplateSpec>,
    /// For rows that changed (`before` and `after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<SseTemplateSpec>,
    /// For rows removed from the result set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<SseTemplateSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SseTemplateSpec {
    /// A Handlebars template over the change: the event's data.
    #[serde(default)]
    pub template: String,
    /// A stream path of their own for these events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ReactionConfig {
    pub fn id(&self) -> &str {
        match self {
            Self::Log(r) => &r.id,
            Self::Http(r) => &r.id,
            Self::Sse(r) => &r.id,
            Self::Profiler(r) => &r.id,
            Self::StoredProcPostgres(r) => &r.id,
            Self::Grpc(r) => &r.id,
            Self::StoredProcMysql(r) | Self::StoredProcMssql(r) => &r.id,
            Self::HttpAdaptive(r) => &r.id,
            Self::GrpcAdaptive(r) => &r.id,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Log(_) => "log",
            Self::Http(_) => "http",
            Self::Sse(_) => "sse",
            Self::Profiler(_) => "profiler",
            Self::StoredProcPostgres(_) => "storedproc-postgres",
            Self::Grpc(_) => "grpc",
            Self::StoredProcMysql(_) => "storedproc-mysql",
            Self::StoredProcMssql(_) => "storedproc-mssql",
            Self::HttpAdaptive(_) => "http-adaptive",
            Self::GrpcAdaptive(_) => "grpc-adaptive",
        }
    }

    pub fn queries(&self) -> &[String] {
        match self {
            Self::Log(r) => &r.queries,
            Self::Http(r) => &r.queries,
            Self::Sse(r) => &r.queries,
            Self::Profiler(r) => &r.queries,
            Self::StoredProcPostgres(r) => &r.queries,
            Self::Grpc(r) => &r.queries,
            Self::StoredProcMysql(r) | Self::StoredProcMssql(r) => &r.queries,
            Self::HttpAdaptive(r) => &r.queries,
            Self::GrpcAdaptive(r) => &r.queries,
        }
    }

    /// Whether the reaction starts with its instance (default: yes, as in drasi-server).
    pub fn auto_start(&self) -> bool {
        match self {
            Self::Log(r) => r.auto_start,
            Self::Http(r) => r.auto_start,
            Self::Sse(r) => r.auto_start,
            Self::Profiler(r) => r.auto_start,
            Self::StoredProcPostgres(r) => r.auto_start,
            Self::Grpc(r) => r.auto_start,
            Self::StoredProcMysql(r) | Self::StoredProcMssql(r) => r.auto_start,
            Self::HttpAdaptive(r) => r.auto_start,
            Self::GrpcAdaptive(r) => r.auto_start,
        }
        .unwrap_or(true)
    }

    pub fn identity_provider(&self) -> Option<&str> {
        match self {
            Self::Log(r) => r.identity_provider.as_deref(),
            Self::Http(r) => r.identity_provider.as_deref(),
            Self::Sse(r) => r.identity_provider.as_deref(),
            Self::Profiler(r) => r.identity_provider.as_deref(),
            Self::StoredProcPostgres(r) => r.identity_provider.as_deref(),
            Self::Grpc(r) => r.identity_provider.as_deref(),
            Self::StoredProcMysql(r) | Self::StoredProcMssql(r) => r.identity_provider.as_deref(),
            Self::HttpAdaptive(r) => r.identity_provider.as_deref(),
            Self::GrpcAdaptive(r) => r.identity_provider.as_deref(),
        }
    }

    /// Every address the reaction connects out to directly, not through the egress proxy:
    /// a stored-procedure reaction's server (`hostname`, default `localhost` and port 5432,
    /// 3306 or 1433) and a `grpc` or `grpc-adaptive` reaction's `endpoint` (gRPC over HTTP/2 does not use the proxy; an endpoint
    /// that does not parse is left to validation). The http reaction's URLs are
    /// [`super::DrasiConfig::outbound_urls`].
    pub fn outbound_addresses(&self) -> Vec<OutboundAddress> {
        match self {
            Self::StoredProcPostgres(r) => {
                vec![OutboundAddress::postgres("hostname", &r.hostname, &r.port)]
            }
            Self::Grpc(r) => r.outbound_address().into_iter().collect(),
            Self::StoredProcMysql(_) | Self::StoredProcMssql(_) => self
                .storedproc()
                .map(|(dialect, r)| r.outbound_address(dialect))
                .into_iter()
                .collect(),
            Self::GrpcAdaptive(r) => r.to_grpc().outbound_address().into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for ReactionConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, body) = split_kind::<D>(serde_json::Value::deserialize(d)?, "reaction")?;
        match kind.as_str() {
            "log" => body_as::<D, _>(body).map(Self::Log),
            "http" => body_as::<D, _>(body).map(Self::Http),
            "sse" => body_as::<D, _>(body).map(Self::Sse),
            "profiler" => body_as::<D, _>(body).map(Self::Profiler),
            "storedproc-postgres" => body_as::<D, _>(body).map(Self::StoredProcPostgres),
            "grpc" => body_as::<D, _>(body).map(Self::Grpc),
            "storedproc-mysql" => body_as::<D, _>(body).map(Self::StoredProcMysql),
            "storedproc-mssql" => body_as::<D, _>(body).map(Self::StoredProcMssql),
            "http-adaptive" => body_as::<D, _>(body).map(Self::HttpAdaptive),
            "grpc-adaptive" => body_as::<D, _>(body).map(Self::GrpcAdaptive),
            other => Err(unknown_kind::<D>(
                "reaction",
                other,
                SUPPORTED_REACTION_KINDS,
            )),
        }
    }
}

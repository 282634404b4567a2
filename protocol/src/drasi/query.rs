//! Continuous queries: [`QueryConfig`], the sources they subscribe to and their language.

use serde::{Deserialize, Serialize};

use super::lenient;

/// One continuous query (`queries[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryConfig {
    /// The query's id, unique in its instance: reactions name it in `queries`, the data routes
    /// in their path.
    pub id: String,
    /// Start the query with the instance. DRaaS's default is true, and rendering then writes
    /// `autoStart: true`, because drasi-server's own default is not to start.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub auto_start: Option<bool>,
    /// The continuous query, in `queryLanguage`: its result set is kept up to date as the
    /// sources' data changes. `ORDER BY` and `LIMIT` are not supported.
    pub query: String,
    /// `Cypher` or `GQL`, case-sensitive. DRaaS assumes Cypher when absent and renders it
    /// explicitly (drasi-server would assume GQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_language: Option<QueryLanguage>,
    /// Middleware steps (`unwind`, `map`, `jq`, `decoder`, …) that the sources' `pipeline`s run
    /// on incoming changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middleware: Vec<MiddlewareConfig>,
    /// The sources the query subscribes to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSubscription>,
    /// Load the sources' current data (bootstrap) before following their changes (default
    /// true).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub enable_bootstrap: Option<bool>,
    /// Changes held back while the bootstrap runs.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Count>)]
    pub bootstrap_buffer_size: Option<u64>,
    /// Synthetic relations between nodes of different sources, by equal property values (`[{id,
    /// keys: [{label, property}]}]`), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joins: Option<serde_json::Value>,
    /// The capacity of this query's queue of incoming changes (default:
    /// `defaultPriorityQueueCapacity`).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Count>)]
    pub priority_queue_capacity: Option<u64>,
    /// The capacity of this query's buffer towards its reactions (default:
    /// `defaultDispatchBufferCapacity`).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Count>)]
    pub dispatch_buffer_capacity: Option<u64>,
    /// How result changes reach subscribers: `channel` (a buffer per subscriber) or `broadcast`
    /// (one shared buffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_mode: Option<String>,
    /// Where this query's index lives, overriding `persistIndex`, kept verbatim (drasi-lib's
    /// storage backend reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_backend: Option<serde_json::Value>,
    /// How many recent result changes the query keeps for subscribers that resume: a change
    /// feed reconnecting with `Last-Event-ID`, a restarted reaction.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Count>)]
    pub outbox_capacity: Option<u64>,
    /// How long the bootstrap may take before the query fails to start.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Count>)]
    pub bootstrap_timeout_secs: Option<u64>,
}

impl QueryConfig {
    /// A query with only the required fields set.
    pub fn new(id: impl Into<String>, query: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            auto_start: None,
            query: query.into(),
            query_language: None,
            middleware: Vec::new(),
            sources: Vec::new(),
            enable_bootstrap: None,
            bootstrap_buffer_size: None,
            joins: None,
            priority_queue_capacity: None,
            dispatch_buffer_capacity: None,
            dispatch_mode: None,
            storage_backend: None,
            outbox_capacity: None,
            bootstrap_timeout_secs: None,
        }
    }

    /// The language this query runs in under DRaaS defaults.
    pub fn effective_language(&self) -> QueryLanguage {
        self.query_language.unwrap_or(super::DEFAULT_QUERY_LANGUAGE)
    }

    /// Whether the query starts with its instance (DRaaS default: yes).
    pub fn effective_auto_start(&self) -> bool {
        self.auto_start.unwrap_or(true)
    }
}

/// The query language, spelled exactly as drasi-server expects (case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum QueryLanguage {
    Cypher,
    #[serde(rename = "GQL")]
    Gql,
}

/// `queries[].sources[]`: a subscription to one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSubscription {
    /// The id of a source of the same instance.
    pub source_id: String,
    /// The node labels the query takes from this source (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The relation labels the query takes from this source (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<String>,
    /// Names of `middleware` steps applied in order to this source's changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipeline: Vec<String>,
}

impl SourceSubscription {
    pub fn new(source_id: impl Into<String>) -> Self {
        Self {
            source_id: source_id.into(),
            nodes: Vec::new(),
            relations: Vec::new(),
            pipeline: Vec::new(),
        }
    }
}

/// `queries[].middleware[]`: a source middleware step referenced from `pipeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MiddlewareConfig {
    /// The middleware kind: `unwind`, `map`, `jq`, `decoder`, `parse_json`, `promote`,
    /// `relabel`, …
    pub kind: String,
    /// The name a source subscription's `pipeline` uses.
    pub name: String,
    /// The kind's settings.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
}

//! Continuous queries: [`QueryConfig`], the sources they subscribe to and their language.

use serde::{Deserialize, Serialize};

use super::lenient;

/// One continuous query (`queries[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryConfig {
    pub id: String,
    /// `None` means "start automatically": rendering always writes `autoStart: true` then,
    /// because drasi-server's own default is not to start.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_start: Option<bool>,
    pub query: String,
    /// `None` means Cypher for DRaaS (drasi-server would assume GQL; rendering is explicit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_language: Option<QueryLanguage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middleware: Vec<MiddlewareConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSubscription>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_bootstrap: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub bootstrap_buffer_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joins: Option<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority_queue_capacity: Option<u64>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub dispatch_buffer_capacity: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_backend: Option<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub outbox_capacity: Option<u64>,
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryLanguage {
    Cypher,
    #[serde(rename = "GQL")]
    Gql,
}

/// `queries[].sources[]`: a subscription to one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSubscription {
    pub source_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MiddlewareConfig {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
}

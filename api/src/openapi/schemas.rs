//! The schemas of the API's own bodies that no Rust type of the handlers spells out (they
//! build them with `json!`): the error body, an instance as reads show it, lists, health,
//! platforms, workers, logs, tokens, patches and source events. Schema-only: never
//! constructed; schemathesis' response-schema check holds the handlers to them.

#![allow(dead_code)]

use std::collections::BTreeMap;

use draas_protocol::drasi::DrasiConfig;
use draas_protocol::drasi::warnings::ConfigWarning;
use draas_protocol::{
    DesiredState, EnvValue, Instance, Platform, Resources, RestartPolicy, Timestamp,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Every error response: one code for programs, one message for people, and details (the
/// offending `field` when one is known, and what else the code says).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"error": {"code": "invalid_config",
    "message": "config.queries[0].sources[0].sourceId: unknown source `readngs`",
    "details": {"field": "config.queries[0].sources[0].sourceId"}}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_field`, `malformed_json`, `invalid_config`,
    /// `not_found`, `illegal_transition`, `name_taken`, `unauthorized`,
    /// `insufficient_scope`, `rate_limited`, `unavailable`, …
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
    /// `field` (the request field, header or parameter at fault) and code-specific keys
    /// (`accepted`, `limit`, `allow`, `state`, `instanceId`, `line`, `column`, …); `null`
    /// when there is nothing to add.
    #[schema(required = true)]
    pub details: Option<BTreeMap<String, Value>>,
}

/// An instance as every read shows it: its spec, state and runtime, secret environment
/// values redacted, and the `warnings` of its config.
#[derive(Serialize, ToSchema)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    /// The config fields DRaaS replaces (listen addresses, the top-level id), computed from
    /// the stored config on every read; empty when there are none.
    pub warnings: Vec<ConfigWarning>,
}

/// A page of instances, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancePage {
    pub items: Vec<InstanceView>,
    /// Pass as `cursor` for the next page; `null` when the list is exhausted.
    #[schema(required = true)]
    pub next_cursor: Option<Uuid>,
}

/// The body of `PATCH` as `application/merge-patch+json` (RFC 7396): the fields to change;
/// `null` removes an optional one. The platform and the id never change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"description": "hot sensors", "labels": {"team": "iot"}}))]
pub struct InstanceMergePatch {
    /// A new name (1–63 lowercase letters, digits or `-`), unique in the tenant.
    pub name: Option<String>,
    /// Free text for people, at most 1024 bytes.
    pub description: Option<String>,
    /// Labels to set (strings) or drop (`null`); RFC 7396 merges keys.
    pub labels: Option<BTreeMap<String, Value>>,
    /// The drasi-server configuration; a running instance restarts on the new one
    /// (`ApplyConfig`, named by `Operation-Location`).
    pub config: Option<DrasiConfig>,
    pub restart_policy: Option<RestartPolicy>,
    /// Container image (docker and kubernetes only), within the operator's allow list.
    pub image: Option<String>,
    pub resources: Option<Resources>,
    /// Variables by name (an `EnvValue`, or `null` to drop one); a secret left as
    /// `{"secret": true}` keeps its stored value.
    pub env: Option<BTreeMap<String, Value>>,
    /// Where the instance should be; the workers' controller moves it there.
    pub desired_state: Option<DesiredState>,
}

/// One operation of a JSON Patch (RFC 6902) over the patchable fields (`/name`,
/// `/description`, `/labels`, `/config`, `/restartPolicy`, `/image`, `/resources`, `/env`,
/// `/desiredState`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonPatchOperation {
    pub op: JsonPatchOp,
    /// A JSON Pointer into the instance's patchable fields.
    #[schema(example = "/config/queries/0/query")]
    pub path: String,
    /// The value of `add`, `replace` and `test`.
    pub value: Option<Value>,
    /// The source pointer of `move` and `copy`.
    pub from: Option<String>,
}

/// RFC 6902 operations.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JsonPatchOp {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok` (the process is up) or `ready` (Redis answers).
    #[schema(example = "ok")]
    pub status: String,
}

/// Per platform: whether a live worker can take commands.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformList {
    pub items: Vec<PlatformStatus>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformStatus {
    pub platform: Platform,
    /// At least one live worker.
    pub available: bool,
    /// Live workers.
    pub workers: u64,
    /// Instances on the platform; shown to cluster administrators only.
    pub instances: Option<u64>,
}

/// Live workers.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerList {
    pub items: Vec<WorkerView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerView {
    /// The worker's consumer name in its platform's group.
    pub consumer: String,
    pub platform: Platform,
    /// The node (host identity) it runs on.
    pub node: String,
    pub last_heartbeat_at: Timestamp,
    #[schema(required = true)]
    pub started_at: Option<Timestamp>,
    /// Its data-plane address, when it serves one.
    #[schema(required = true)]
    pub data_plane: Option<String>,
}

/// The instance's last log lines.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logs {
    pub instance_id: Uuid,
    /// How many lines were asked for.
    pub tail: u32,
    /// The lines, newline-separated, oldest first.
    pub lines: String,
}

/// An instance's continuous queries, as the instance reports them.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryList {
    pub items: Vec<QueryStatus>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryStatus {
    /// The query's id in the config.
    pub id: Value,
    /// drasi's component status: `Starting`, `Running`, `Stopped`, `Error`, …
    pub status: Value,
    /// The instance's error message, when the query failed.
    pub error: Option<Value>,
}

/// A query's current result set.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryResults {
    pub query_id: String,
    /// The rows; keys are the query's `RETURN` aliases.
    pub items: Value,
}

/// One change event for an http source (drasi-server's standard mode): an insert or update
/// carries the `element`; a delete names the element by `id` and `labels`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"operation": "insert", "element": {"type": "node", "id": "s1",
    "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 80}}}))]
pub struct SourceEvent {
    /// `insert`, `update` or `delete`.
    pub operation: String,
    /// The node or relation: `{type: node|relation, id, labels, properties, startId?, endId?}`.
    pub element: Option<Value>,
    /// A delete's element id.
    pub id: Option<String>,
    /// A delete's element labels.
    pub labels: Option<Vec<String>>,
}

/// Many events for an http source, applied in order.
#[derive(Serialize, ToSchema)]
pub struct SourceEventBatch {
    pub events: Vec<SourceEvent>,
}

/// What the instance's http source answered, passed through as it is
/// (`{success, message}` from draas-runtime and drasi-server).
#[derive(Serialize, ToSchema)]
pub struct SourceAnswer {
    pub success: Option<bool>,
    pub message: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPage {
    pub items: Vec<draas_protocol::auth::TokenRecord>,
    /// Pass as `cursor` for the next page; `null` at the end.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A new token: its record and, this once, its secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    #[serde(flatten)]
    pub record: draas_protocol::auth::TokenRecord,
    /// The bearer secret (`draas_…`). It is stored nowhere and shown only here.
    pub secret: String,
}

/// The body of `PUT /api/v1/instances/{id}`: an instance document, as `draas apply` files
/// hold them (YAML there, JSON here).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"apiVersion": "draas.io/v1", "kind": "DrasiInstance",
    "metadata": {"name": "sensors", "labels": {"team": "iot"}},
    "spec": {"platform": "process", "desiredState": "running", "config": {
        "sources": [{"kind": "http", "id": "readings"}],
        "queries": [{"id": "hot", "query": "MATCH (s:Sensor) RETURN s.id AS id",
            "sources": [{"sourceId": "readings"}]}],
        "reactions": [{"kind": "log", "id": "log", "queries": ["hot"]}]}}}))]
pub struct InstanceDocument {
    /// Always `draas.io/v1`.
    #[schema(pattern = "^draas\\.io/v1$")]
    pub api_version: String,
    /// Always `DrasiInstance`.
    #[schema(pattern = "^DrasiInstance$")]
    pub kind: String,
    pub metadata: DocumentMetadata,
    pub spec: DocumentSpec,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentMetadata {
    /// The instance's name: the one in the path.
    pub name: String,
    /// The instance's labels (replaced whole).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What the instance should be. Fields left out take their defaults (they are not kept from
/// the stored spec), except `env`: absent keeps the instance's environment.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentSpec {
    /// Fixed at creation: another platform is a `409 platform_immutable`.
    pub platform: Platform,
    /// `running` (the default) or `stopped`: the PUT starts or stops the instance to match,
    /// and the workers' controller keeps it there within its restart policy.
    pub desired_state: Option<DesiredState>,
    /// The drasi-server configuration. A running instance restarts on a new one.
    pub config: DrasiConfig,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Container image (docker and kubernetes only).
    pub image: Option<String>,
    pub resources: Option<Resources>,
    /// Free text for people, at most 1024 bytes.
    pub description: Option<String>,
    /// Replaces the environment when present; a secret without a value keeps its own.
    pub env: Option<BTreeMap<String, EnvValue>>,
}

/// What a `PUT` did.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyResult {
    pub result: ApplyOutcome,
    pub instance: InstanceView,
    /// The start, stop or `ApplyConfig` it issued; `null` when none was needed.
    #[schema(required = true)]
    pub operation: Option<draas_protocol::Operation>,
}

/// `created`, `updated` (the spec changed or a command was issued) or `unchanged`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Updated,
    Unchanged,
}

/// One event of an instance event feed (`text/event-stream`): `event: instance`, the events
/// stream's id, and the `Event` as JSON in `data`. Comments (`: open`, keep-alives) are not
/// events.
#[derive(Serialize, ToSchema)]
pub struct InstanceEventFrame {
    /// Always `instance`.
    #[schema(pattern = "^instance$")]
    pub event: String,
    /// The events stream's id of this event.
    pub id: String,
    /// An `Event`, as JSON.
    pub data: String,
}

/// One event of a query's change feed (`text/event-stream`).
#[derive(Serialize, ToSchema)]
pub struct QueryChangeFrame {
    /// `snapshot` (the current rows: `{queryId, results, sequence}`), `change` (`{queryId,
    /// sequence, added, updated, deleted}`), `reset` (the resume point is gone; a snapshot
    /// follows), `end` (the query stopped) or `error` (the feed broke).
    #[schema(pattern = "^(snapshot|change|reset|end|error)$")]
    pub event: String,
    /// The position to resume after (`Last-Event-ID`).
    pub id: Option<String>,
    /// The event's JSON.
    pub data: String,
}

//! `/api/v1/admin/…`: the operator actions of `draas ops` over HTTP, for dashboards. Each
//! handler parses and checks its input (errors name the field) and calls
//! [`draas_bus::admin::Admin`]; nothing here talks to Redis itself. Every state-changing
//! endpoint takes `dryRun` in its body.
//!
//! Workers are judged live by the heartbeat TTL each registered (the API's `worker_ttl` only
//! for workers that registered none), as `draas ops` judges them; action reports count the
//! entries left alone by reason (`skipped`, `skipReasons`), as `draas ops --json` prints them.
//!
//! | method | path | body / query |
//! |---|---|---|
//! | GET | `streams` | `?platform=` (all when absent) |
//! | GET | `pending` | `?platform=&node=&consumer=&minIdleMs=&count=&after=` |
//! | POST | `claim` / `retry` / `drop` | `{platform, node?, ids? \| consumer? \| all, minIdleMs?, to (claim), reason (drop), force?, dryRun?}` |
//! | GET | `dlq` | `?platform=&after=&count=` |
//! | GET | `dlq/{id}` | `?platform=` |
//! | POST | `dlq/replay`, `dlq/purge` | `{platform, ids? \| all, dryRun?}` |
//! | GET | `consumers` | `?platform=` |
//! | POST | `prune` | `{platform, minIdleMs?, dryRun?}` |
//! | POST | `trim` | `{platform, target: "dlq" \| "commands", maxlen?, olderThanMs?, dryRun?}` |
//! | GET | `audit` | `?limit=&cursor=` (newest first; `nextCursor` pages to older entries) |

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use draas_bus::admin::{
    ActionReport, Admin, AdminError, DeadLetter, DlqPage, DlqSelection, NoProgress, PendingPage,
    PendingQuery, Selection, StreamRef, StreamsReport, TrimTarget,
};
use draas_protocol::Platform;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::body::Body;
use crate::error::{ApiError, ApiResult};

type Params = Query<HashMap<String, String>>;

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Bus(e) => e.into(),
            AdminError::Invalid { field, message } => {
                ApiError::bad_request("invalid_field", message, Some(field.into()))
            }
            AdminError::NotFound(m) => ApiError::NotFound(m),
            AdminError::Refused(message) => ApiError::Conflict {
                code: "refused",
                message,
                details: Value::Null,
            },
        }
    }
}

/// Registered TTLs first; the API's worker TTL for workers that registered none.
fn admin(app: &App) -> Admin {
    Admin::new(app.store.clone(), app.config.worker_ttl)
}

/// Refuses query parameters the endpoint does not know, naming the first.
fn only(q: &HashMap<String, String>, known: &[&str]) -> ApiResult<()> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(
            "unknown_parameter",
            format!(
                "unknown query parameter `{k}`; this endpoint takes {}",
                known.join(", ")
            ),
            Some(k.clone()),
        )),
        None => Ok(()),
    }
}

fn platform(q: &HashMap<String, String>) -> ApiResult<Option<Platform>> {
    q.get("platform")
        .map(|p| {
            Platform::parse(p).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_platform",
                    format!("unknown platform `{p}`; use process, docker or kubernetes"),
                    Some("platform".into()),
                )
            })
        })
        .transpose()
}

fn required_platform(q: &HashMap<String, String>) -> ApiResult<Platform> {
    platform(q)?.ok_or_else(|| {
        ApiError::bad_request(
            "missing_field",
            "`platform` is required",
            Some("platform".into()),
        )
    })
}

fn number(q: &HashMap<String, String>, field: &str, default: u64) -> ApiResult<u64> {
    q.get(field).map_or(Ok(default), |v| {
        v.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_field",
                format!("`{field}` must be a non-negative integer, not `{v}`"),
                Some(field.into()),
            )
        })
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/streams",
    operation_id = "getStreams",
    tag = "admin",
    summary = "Command streams, groups and dead-letter queues",
    params(("platform" = Option<Platform>, Query, description = "One platform (all when absent).")),
    responses(
        (status = 200, description = "Per platform.",
            body = StreamsReport),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn streams(State(app): State<App>, Query(q): Params) -> ApiResult<Json<StreamsReport>> {
    only(&q, &["platform"])?;
    let platforms: Vec<Platform> = platform(&q)?.into_iter().collect();
    Ok(Json(admin(&app).streams(&platforms).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/pending",
    operation_id = "listPending",
    tag = "admin",
    summary = "A page of a stream's pending entries, decoded",
    params(("platform" = Platform, Query, description = "The platform."),
        ("node" = Option<String>, Query, description = "A node's own stream instead of the \
            platform's."),
        ("consumer" = Option<String>, Query, description = "Only this consumer's entries."),
        ("minIdleMs" = Option<u64>, Query, description = "Only entries idle this long."),
        ("count" = Option<u64>, Query, description = "Entries per page (default 50)."),
        ("after" = Option<String>, Query, description = "The `next` of the previous page (a \
            stream id).")),
    responses(
        (status = 200, description = "A page.",
            body = PendingPage),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn pending(State(app): State<App>, Query(q): Params) -> ApiResult<Json<PendingPage>> {
    only(
        &q,
        &[
            "platform",
            "node",
            "consumer",
            "minIdleMs",
            "count",
            "after",
        ],
    )?;
    let query = PendingQuery {
        target: StreamRef {
            platform: required_platform(&q)?,
            node: q.get("node").cloned(),
        },
        consumer: q.get("consumer").cloned(),
        min_idle_ms: number(&q, "minIdleMs", 0)?,
        count: number(&q, "count", 50)? as usize,
        after: q.get("after").cloned(),
    };
    Ok(Json(admin(&app).pending(&query).await?))
}

/// The body of claim, retry and drop.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingAction {
    platform: Platform,
    /// A node's own stream instead of the platform's.
    node: Option<String>,
    /// The entries, by stream id; or select by `consumer` or `all`.
    #[serde(default)]
    ids: Vec<String>,
    /// Every entry pending on this consumer.
    consumer: Option<String>,
    /// Only entries idle at least this long.
    #[serde(default)]
    min_idle_ms: u64,
    /// Every pending entry of the stream.
    #[serde(default)]
    all: bool,
    /// claim: the live consumer to hand the entries to.
    to: Option<String>,
    /// drop: why.
    reason: Option<String>,
    /// claim, retry, drop: act on entries whose owner is live too.
    #[serde(default)]
    force: bool,
    /// Say what would be done; change nothing.
    #[serde(default)]
    dry_run: bool,
}

impl PendingAction {
    fn selection(&self) -> Selection {
        Selection {
            target: Some(StreamRef {
                platform: self.platform,
                node: self.node.clone(),
            }),
            ids: self.ids.clone(),
            consumer: self.consumer.clone(),
            min_idle_ms: self.min_idle_ms,
            all: self.all,
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/claim",
    operation_id = "claimPending",
    tag = "admin",
    summary = "Hand pending entries to a live consumer",
    request_body(content = PendingAction, content_type = "application/json"),
    responses(
        (status = 200, description = "What was done (with `dryRun`: what would be).",
            body = ActionReport),
        crate::openapi::responses::AdminErrors,
        (status = 409, description = "Refused as asked (`refused`): the `to` consumer is not \
            live.", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn claim(
    State(app): State<App>,
    Body(b): Body<PendingAction>,
) -> ApiResult<Json<ActionReport>> {
    let to = b.to.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_field",
            "`to` names the live consumer",
            Some("to".into()),
        )
    })?;
    let report = admin(&app)
        .claim(&b.selection(), to, b.force, b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/retry",
    operation_id = "retryPending",
    tag = "admin",
    summary = "Append copies of pending entries and ack the originals",
    request_body(content = PendingAction, content_type = "application/json"),
    responses(
        (status = 200, description = "What was done (with `dryRun`: what would be).",
            body = ActionReport),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn retry(
    State(app): State<App>,
    Body(b): Body<PendingAction>,
) -> ApiResult<Json<ActionReport>> {
    let report = admin(&app)
        .retry(&b.selection(), b.force, b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/drop",
    operation_id = "dropPending",
    tag = "admin",
    summary = "Dead-letter pending entries",
    request_body(content = PendingAction, content_type = "application/json"),
    responses(
        (status = 200, description = "What was done (with `dryRun`: what would be).",
            body = ActionReport),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn drop(
    State(app): State<App>,
    Body(b): Body<PendingAction>,
) -> ApiResult<Json<ActionReport>> {
    let reason = b.reason.clone().unwrap_or_default();
    let report = admin(&app)
        .drop_pending(&b.selection(), &reason, b.force, b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/dlq",
    operation_id = "listDeadLetters",
    tag = "admin",
    summary = "A page of a platform's dead letters",
    params(("platform" = Platform, Query, description = "The platform."),
        ("after" = Option<String>, Query, description = "The `next` of the previous page."),
        ("count" = Option<u64>, Query, description = "Letters per page (default 50).")),
    responses(
        (status = 200, description = "A page.", body = DlqPage),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn dlq_list(State(app): State<App>, Query(q): Params) -> ApiResult<Json<DlqPage>> {
    only(&q, &["platform", "after", "count"])?;
    let platform = required_platform(&q)?;
    let count = number(&q, "count", 50)? as usize;
    let page = admin(&app)
        .dlq_list(platform, q.get("after").map(String::as_str), count)
        .await?;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/dlq/{id}",
    operation_id = "getDeadLetter",
    tag = "admin",
    summary = "One dead letter with its fields and envelope",
    params(("id" = String, Path, description = "The letter's stream id."),
        ("platform" = Platform, Query, description = "The platform.")),
    responses(
        (status = 200, description = "The letter.",
            body = DeadLetter),
        crate::openapi::responses::AdminErrors,
        (status = 404, description = "No such dead letter (`not_found`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn dlq_show(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult<Json<DeadLetter>> {
    only(&q, &["platform"])?;
    let platform = required_platform(&q)?;
    Ok(Json(admin(&app).dlq_show(platform, &id).await?))
}

/// The body of dlq/replay and dlq/purge.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DlqAction {
    platform: Platform,
    /// The letters, by stream id; or `all`.
    #[serde(default)]
    ids: Vec<String>,
    /// Every letter of the platform.
    #[serde(default)]
    all: bool,
    /// Say what would be done; change nothing.
    #[serde(default)]
    dry_run: bool,
}

impl DlqAction {
    fn selection(&self) -> DlqSelection {
        DlqSelection {
            platform: self.platform,
            ids: self.ids.clone(),
            all: self.all,
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/dlq/replay",
    operation_id = "replayDeadLetters",
    tag = "admin",
    summary = "Send dead letters back to their streams",
    request_body(content = DlqAction, content_type = "application/json"),
    responses(
        (status = 200, description = "What was done (with `dryRun`: what would be).",
            body = ActionReport),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn dlq_replay(
    State(app): State<App>,
    Body(b): Body<DlqAction>,
) -> ApiResult<Json<ActionReport>> {
    let report = admin(&app)
        .dlq_replay(&b.selection(), b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/dlq/purge",
    operation_id = "purgeDeadLetters",
    tag = "admin",
    summary = "Delete dead letters",
    request_body(content = DlqAction, content_type = "application/json"),
    responses(
        (status = 200, description = "What was done (with `dryRun`: what would be).",
            body = ActionReport),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn dlq_purge(
    State(app): State<App>,
    Body(b): Body<DlqAction>,
) -> ApiResult<Json<ActionReport>> {
    let report = admin(&app)
        .dlq_purge(&b.selection(), b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/consumers",
    operation_id = "listConsumers",
    tag = "admin",
    summary = "The consumers of a platform's streams",
    params(("platform" = Platform, Query, description = "The platform.")),
    responses(
        (status = 200, description = "Every consumer, live or not.",
            body = crate::openapi::admin::ConsumerList),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn consumers(State(app): State<App>, Query(q): Params) -> ApiResult<Json<Value>> {
    only(&q, &["platform"])?;
    let platform = required_platform(&q)?;
    let items = admin(&app).consumers(platform).await?;
    Ok(Json(json!({ "items": items })))
}

/// The body of prune.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneBody {
    platform: Platform,
    /// Only consumers idle at least this long.
    #[serde(default)]
    min_idle_ms: u64,
    /// Say what would be done; change nothing.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/prune",
    operation_id = "pruneConsumers",
    tag = "admin",
    summary = "Remove dead consumers without pending entries",
    request_body(content = PruneBody, content_type = "application/json"),
    responses(
        (status = 200, description = "One report per stream.",
            body = crate::openapi::admin::ActionReports),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn prune(State(app): State<App>, Body(b): Body<PruneBody>) -> ApiResult<Json<Value>> {
    let reports = admin(&app)
        .prune(b.platform, b.min_idle_ms, b.dry_run)
        .await?;
    Ok(Json(json!({ "reports": reports })))
}

/// What trim shortens: the dead-letter queue, or the command streams' acked leftovers.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
enum TrimWhat {
    Dlq,
    Commands,
}

/// The body of trim.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrimBody {
    platform: Platform,
    target: TrimWhat,
    /// `dlq`: keep at most this many letters.
    maxlen: Option<u64>,
    /// `dlq`: drop letters older than this.
    older_than_ms: Option<u64>,
    /// Say what would be done; change nothing.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/trim",
    operation_id = "trimStreams",
    tag = "admin",
    summary = "Trim a platform's dead-letter queue or acked command leftovers",
    request_body(content = TrimBody, content_type = "application/json"),
    responses(
        (status = 200, description = "One report per stream.",
            body = crate::openapi::admin::ActionReports),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn trim(State(app): State<App>, Body(b): Body<TrimBody>) -> ApiResult<Json<Value>> {
    let target = match b.target {
        TrimWhat::Dlq => TrimTarget::Dlq {
            maxlen: b.maxlen,
            older_than_ms: b.older_than_ms,
        },
        TrimWhat::Commands if b.maxlen.is_some() || b.older_than_ms.is_some() => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "command streams keep every pending and undelivered entry; only acked leftovers are trimmed, so maxlen and olderThanMs do not apply",
                Some("target".into()),
            ));
        }
        TrimWhat::Commands => TrimTarget::Commands,
    };
    let reports = admin(&app)
        .trim(b.platform, &target, b.dry_run, &NoProgress)
        .await?;
    Ok(Json(json!({ "reports": reports })))
}

/// `GET /api/v1/admin/audit?limit=&cursor=`: a page of the audit stream, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
    operation_id = "getAuditTrail",
    tag = "admin",
    summary = "A page of the audit trail, newest first",
    params(("limit" = Option<u64>, Query, description = "Entries per page (default 50)."),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page.")),
    responses(
        (status = 200, description = "A page.", body = draas_bus::store::AuditPage),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn audit(
    State(app): State<App>,
    Query(q): Params,
) -> ApiResult<Json<draas_bus::store::AuditPage>> {
    only(&q, &["limit", "cursor"])?;
    let limit = number(&q, "limit", 50)? as usize;
    let page = admin(&app)
        .audit(q.get("cursor").map(String::as_str), limit)
        .await?;
    Ok(Json(page))
}

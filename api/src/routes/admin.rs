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

pub async fn streams(State(app): State<App>, Query(q): Params) -> ApiResult<Json<StreamsReport>> {
    only(&q, &["platform"])?;
    let platforms: Vec<Platform> = platform(&q)?.into_iter().collect();
    Ok(Json(admin(&app).streams(&platforms).await?))
}

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
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingAction {
    platform: Platform,
    node: Option<String>,
    #[serde(default)]
    ids: Vec<String>,
    consumer: Option<String>,
    #[serde(default)]
    min_idle_ms: u64,
    #[serde(default)]
    all: bool,
    /// claim: the live consumer to hand the entries to.
    to: Option<String>,
    /// drop: why.
    reason: Option<String>,
    /// claim, retry, drop: act on entries whose owner is live too.
    #[serde(default)]
    force: bool,
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

pub async fn retry(
    State(app): State<App>,
    Body(b): Body<PendingAction>,
) -> ApiResult<Json<ActionReport>> {
    let report = admin(&app)
        .retry(&b.selection(), b.force, b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

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

pub async fn dlq_list(State(app): State<App>, Query(q): Params) -> ApiResult<Json<DlqPage>> {
    only(&q, &["platform", "after", "count"])?;
    let platform = required_platform(&q)?;
    let count = number(&q, "count", 50)? as usize;
    let page = admin(&app)
        .dlq_list(platform, q.get("after").map(String::as_str), count)
        .await?;
    Ok(Json(page))
}

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
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DlqAction {
    platform: Platform,
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
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

pub async fn dlq_replay(
    State(app): State<App>,
    Body(b): Body<DlqAction>,
) -> ApiResult<Json<ActionReport>> {
    let report = admin(&app)
        .dlq_replay(&b.selection(), b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

pub async fn dlq_purge(
    State(app): State<App>,
    Body(b): Body<DlqAction>,
) -> ApiResult<Json<ActionReport>> {
    let report = admin(&app)
        .dlq_purge(&b.selection(), b.dry_run, &NoProgress)
        .await?;
    Ok(Json(report))
}

pub async fn consumers(State(app): State<App>, Query(q): Params) -> ApiResult<Json<Value>> {
    only(&q, &["platform"])?;
    let platform = required_platform(&q)?;
    let items = admin(&app).consumers(platform).await?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneBody {
    platform: Platform,
    #[serde(default)]
    min_idle_ms: u64,
    #[serde(default)]
    dry_run: bool,
}

pub async fn prune(State(app): State<App>, Body(b): Body<PruneBody>) -> ApiResult<Json<Value>> {
    let reports = admin(&app)
        .prune(b.platform, b.min_idle_ms, b.dry_run)
        .await?;
    Ok(Json(json!({ "reports": reports })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum TrimWhat {
    Dlq,
    Commands,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrimBody {
    platform: Platform,
    target: TrimWhat,
    maxlen: Option<u64>,
    older_than_ms: Option<u64>,
    #[serde(default)]
    dry_run: bool,
}

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

//! `draas ops`: operator tooling that talks straight to Redis (no API needed): stream overview,
//! pending entries (list, claim, retry, drop), dead letters (list, show, replay, purge),
//! consumers, prune and trim, the API's audit trail. The work is [`draas_bus::admin`]; this
//! module parses, asks for confirmation, shows progress and prints ([`render`] tables, or
//! `--json`).
//!
//! Liveness: a worker is live while its last heartbeat is younger than the heartbeat TTL it
//! registered; `--worker-ttl` judges every worker by one TTL instead. Entries an action leaves
//! alone are counted by reason in its output (`skipped`, `skipReasons` in `--json`).
//!
//! Every state-changing command takes `--dry-run`. Destructive ones (purge, prune, trim) first
//! compute what they would do, then ask on a terminal, and refuse without `--yes` otherwise.

mod args;
mod render;
mod ui;

use std::time::Duration;

use anyhow::Context;
use draas_bus::admin::{ActionReport, Admin, NoProgress, PendingQuery, TrimTarget};
use draas_protocol::Keyspace;
use serde::Serialize;

pub use args::OpsArgs;
use args::{DlqCmd, OpsCmd, Safety, TrimCmd};

/// The heartbeat TTL of workers that registered none (versions before it was recorded): the
/// workers' default.
const FALLBACK_WORKER_TTL: Duration = Duration::from_secs(10);

pub async fn run(args: OpsArgs) -> anyhow::Result<()> {
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(args.common.redis())
            .await
            .with_context(|| format!("connecting to {}", args.common.redis()))?,
        Keyspace::new(&args.common.prefix),
    );
    let admin = match args.worker_ttl {
        Some(ttl) => Admin::new(store, FALLBACK_WORKER_TTL).with_ttl_override(ttl),
        None => Admin::new(store, FALLBACK_WORKER_TTL),
    };
    let json = args.json;
    match args.command {
        OpsCmd::Streams { platform } => {
            let report = admin
                .streams(&platform.into_iter().collect::<Vec<_>>())
                .await?;
            emit(json, &report, || render::streams(&report))
        }
        OpsCmd::Pending {
            stream,
            consumer,
            min_idle,
            count,
            after,
        } => {
            let query = PendingQuery {
                target: stream.target(),
                consumer,
                min_idle_ms: min_idle.map_or(0, |d| d.as_millis() as u64),
                count,
                after,
            };
            let page = admin.pending(&query).await?;
            emit(json, &page, || render::pending(&page))
        }
        OpsCmd::Claim {
            select,
            to,
            force,
            dry_run,
        } => {
            let bar = ui::bar("claim");
            let report = admin
                .claim(&select.selection(), &to, force, dry_run, &bar)
                .await?;
            bar.done();
            emit_report(json, &report)
        }
        OpsCmd::Retry {
            select,
            force,
            dry_run,
        } => {
            let bar = ui::bar("retry");
            let report = admin
                .retry(&select.selection(), force, dry_run, &bar)
                .await?;
            bar.done();
            emit_report(json, &report)
        }
        OpsCmd::Drop {
            select,
            reason,
            force,
            dry_run,
        } => {
            let bar = ui::bar("drop");
            let sel = select.selection();
            let report = admin
                .drop_pending(&sel, &reason, force, dry_run, &bar)
                .await?;
            bar.done();
            emit_report(json, &report)
        }
        OpsCmd::Dlq(DlqCmd::List {
            platform,
            after,
            count,
        }) => {
            let page = admin.dlq_list(platform, after.as_deref(), count).await?;
            emit(json, &page, || render::dlq_list(&page))
        }
        OpsCmd::Dlq(DlqCmd::Show { id, platform }) => {
            let letter = admin.dlq_show(platform, &id).await?;
            emit(json, &letter, || render::dlq_show(&letter))
        }
        OpsCmd::Dlq(DlqCmd::Replay { select, dry_run }) => {
            let bar = ui::bar("replay");
            let report = admin.dlq_replay(&select.selection(), dry_run, &bar).await?;
            bar.done();
            emit_report(json, &report)
        }
        OpsCmd::Dlq(DlqCmd::Purge { select, safety }) => {
            let sel = select.selection();
            let plan = admin.dlq_purge(&sel, true, &NoProgress).await?;
            if !proceed(json, &safety, &[&plan], "delete these dead letters")? {
                return Ok(());
            }
            let bar = ui::bar("purge");
            let report = admin.dlq_purge(&sel, false, &bar).await?;
            bar.done();
            emit_report(json, &report)
        }
        OpsCmd::Audit { limit, cursor } => {
            let page = admin.audit(cursor.as_deref(), limit).await?;
            emit(json, &page, || render::audit(&page))
        }
        OpsCmd::Consumers { platform } => {
            let rows = admin.consumers(platform).await?;
            emit(json, &rows, || render::consumers(&rows))
        }
        OpsCmd::Prune {
            platform,
            min_idle,
            safety,
        } => {
            let min_idle = min_idle.as_millis() as u64;
            let plan = admin.prune(platform, min_idle, true).await?;
            if !proceed(
                json,
                &safety,
                &plan.iter().collect::<Vec<_>>(),
                "delete these consumers",
            )? {
                return Ok(());
            }
            let reports = admin.prune(platform, min_idle, false).await?;
            emit_reports(json, &reports)
        }
        OpsCmd::Trim(cmd) => {
            let (platform, target, safety) = match cmd {
                TrimCmd::Dlq {
                    platform,
                    maxlen,
                    older_than,
                    safety,
                } => {
                    let older_than_ms = older_than.map(|d| d.as_millis() as u64);
                    (
                        platform,
                        TrimTarget::Dlq {
                            maxlen,
                            older_than_ms,
                        },
                        safety,
                    )
                }
                TrimCmd::Commands { platform, safety } => (platform, TrimTarget::Commands, safety),
            };
            let plan = admin.trim(platform, &target, true, &NoProgress).await?;
            if !proceed(
                json,
                &safety,
                &plan.iter().collect::<Vec<_>>(),
                "delete these entries",
            )? {
                return Ok(());
            }
            let bar = ui::bar("trim");
            let reports = admin.trim(platform, &target, false, &bar).await?;
            bar.done();
            emit_reports(json, &reports)
        }
    }
}

/// For a destructive command: prints the plan and returns false on a dry run; otherwise asks
/// (unless `--yes` or there is nothing to do) and returns whether to go on.
fn proceed(
    json: bool,
    safety: &Safety,
    plan: &[&ActionReport],
    what: &str,
) -> anyhow::Result<bool> {
    let matched: u64 = plan.iter().map(|r| r.matched).sum();
    if safety.dry_run {
        let owned: Vec<ActionReport> = plan.iter().map(|r| (*r).clone()).collect();
        emit_reports(json, &owned)?;
        return Ok(false);
    }
    if safety.yes || matched == 0 {
        return Ok(true);
    }
    if !json {
        for r in plan {
            render::report(r);
        }
    }
    ui::confirm(&format!("{what}: {matched} in all?"))
}

fn emit<T: Serialize>(json: bool, value: &T, table: impl FnOnce()) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        table();
    }
    Ok(())
}

fn emit_report(json: bool, report: &ActionReport) -> anyhow::Result<()> {
    emit(json, report, || render::report(report))
}

fn emit_reports(json: bool, reports: &[ActionReport]) -> anyhow::Result<()> {
    emit(json, &reports, || reports.iter().for_each(render::report))
}

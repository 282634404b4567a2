//! `draas ops`: operator tooling that talks straight to Redis (no API needed): stream overview,
//! pending entries (list, claim, retry, drop), dead letters (list, show, replay, purge),
//! consumers, prune and trim. The work is [`draas_bus::admin`]; this module parses, asks for
//! confirmation, shows progress and prints ([`render`] tables, or `--json`).
//!
//! Every state-changing command takes `--dry-run`. Destructive ones (purge, prune, trim) first
//! compute what they would do, then ask on a terminal, and refuse without `--yes` otherwise.

mod render;
mod ui;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use draas_bus::admin::{
    ActionReport, Admin, DlqSelection, NoProgress, PendingQuery, Selection, StreamRef, TrimTarget,
};
use draas_protocol::{Keyspace, Platform};
use serde::Serialize;

use crate::{Common, parse_platform};

#[derive(Args)]
pub struct OpsArgs {
    #[command(flatten)]
    common: Common,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// A worker whose heartbeat is older than this counts as dead (e.g. 10s).
    #[arg(long, global = true, value_parser = ui::parse_duration, default_value = "10s")]
    worker_ttl: Duration,
    #[command(subcommand)]
    command: OpsCmd,
}

#[derive(Subcommand)]
enum OpsCmd {
    /// Every platform and node stream: length, group, pending, oldest pending, lag, DLQ size.
    Streams {
        /// Only this platform (process, docker or kubernetes).
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
    },
    /// Pending entries of one stream, decoded, a page at a time.
    Pending {
        #[command(flatten)]
        stream: StreamArgs,
        /// Only this consumer's entries.
        #[arg(long)]
        consumer: Option<String>,
        /// Only entries idle at least this long (e.g. 30s, 5m).
        #[arg(long, value_parser = ui::parse_duration)]
        min_idle: Option<Duration>,
        #[arg(long, default_value_t = 50)]
        count: usize,
        /// Start after this entry id (the `next` cursor of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// Hand pending entries to a live consumer (its sweeper runs them once idle).
    Claim {
        #[command(flatten)]
        select: SelectArgs,
        /// The live consumer that takes them (see `ops consumers`).
        #[arg(long)]
        to: String,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make pending entries deliverable now (re-append, ack, delete; never re-runs a finished command).
    Retry {
        #[command(flatten)]
        select: SelectArgs,
        /// Also entries whose owner is a live worker.
        #[arg(long)]
        force: bool,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move pending entries to the dead-letter stream (replayable later).
    Drop {
        #[command(flatten)]
        select: SelectArgs,
        /// Why; kept with the dead letter.
        #[arg(long)]
        reason: String,
        /// Also entries whose owner is a live worker.
        #[arg(long)]
        force: bool,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Dead letters.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Consumers of every stream, with idle (and, on Redis 7.2+, inactive) times.
    Consumers {
        /// process, docker or kubernetes.
        #[arg(long, value_parser = parse_platform, default_value = "process")]
        platform: Platform,
    },
    /// Delete consumers that are not live and hold no pending entries.
    Prune {
        /// process, docker or kubernetes.
        #[arg(long, value_parser = parse_platform, default_value = "process")]
        platform: Platform,
        /// Keep consumers idle for less than this.
        #[arg(long, value_parser = ui::parse_duration, default_value = "0s")]
        min_idle: Duration,
        #[command(flatten)]
        safety: Safety,
    },
    /// Bound retention: the DLQ by length or age, command streams of acked leftovers.
    #[command(subcommand)]
    Trim(TrimCmd),
}

#[derive(Subcommand)]
enum DlqCmd {
    /// Dead letters, oldest first, a page at a time.
    List {
        /// process, docker or kubernetes.
        #[arg(long, value_parser = parse_platform, default_value = "process")]
        platform: Platform,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 50)]
        count: usize,
    },
    /// One dead letter with every field and its decoded command.
    Show {
        id: String,
        /// process, docker or kubernetes.
        #[arg(long, value_parser = parse_platform, default_value = "process")]
        platform: Platform,
    },
    /// Re-enqueue the original commands (same command id: a finished one is not run again).
    Replay {
        #[command(flatten)]
        select: DlqSelect,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete dead letters.
    Purge {
        #[command(flatten)]
        select: DlqSelect,
        #[command(flatten)]
        safety: Safety,
    },
}

#[derive(Subcommand)]
enum TrimCmd {
    /// Trim the dead-letter stream to a length or an age.
    Dlq {
        /// process, docker or kubernetes.
        #[arg(long, value_parser = parse_platform, default_value = "process")]
        platform: Platform,
        /// Keep at most this many letters (the newest).
        #[arg(
            long,
            conflicts_with = "older_than",
            required_unless_present = "older_than"
        )]
        maxlen: Option<u64>,
        /// Delete letters older than this (e.g. 7d).
        #[arg(long, value_parser = ui::parse_duration)]
        older_than: Option<Duration>,
        #[command(flatten)]
        safety: Safety,
    },
    /// Delete acked leftovers of the command streams (never pending or undelivered entries).
    Commands {
        /// process, docker or kubernetes.
        #[arg(long, value_parser = parse_platform, default_value = "process")]
        platform: Platform,
        #[command(flatten)]
        safety: Safety,
    },
}

#[derive(Args)]
struct StreamArgs {
    /// process, docker or kubernetes.
    #[arg(long, value_parser = parse_platform, default_value = "process")]
    platform: Platform,
    /// A node's own stream instead of the platform stream.
    #[arg(long)]
    node: Option<String>,
}

impl StreamArgs {
    fn target(&self) -> StreamRef {
        StreamRef {
            platform: self.platform,
            node: self.node.clone(),
        }
    }
}

#[derive(Args)]
struct SelectArgs {
    #[command(flatten)]
    stream: StreamArgs,
    /// Entry ids.
    ids: Vec<String>,
    /// Every pending entry of this consumer.
    #[arg(long, conflicts_with = "ids")]
    consumer: Option<String>,
    /// Every pending entry of the stream.
    #[arg(long, conflicts_with_all = ["ids", "consumer"])]
    all: bool,
    /// Only entries idle at least this long.
    #[arg(long, value_parser = ui::parse_duration)]
    min_idle: Option<Duration>,
}

impl SelectArgs {
    fn selection(&self) -> Selection {
        Selection {
            target: Some(self.stream.target()),
            ids: self.ids.clone(),
            consumer: self.consumer.clone(),
            min_idle_ms: self.min_idle.map_or(0, |d| d.as_millis() as u64),
            all: self.all,
        }
    }
}

#[derive(Args)]
struct DlqSelect {
    /// process, docker or kubernetes.
    #[arg(long, value_parser = parse_platform, default_value = "process")]
    platform: Platform,
    /// Dead-letter ids.
    ids: Vec<String>,
    /// Every dead letter of the platform.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

impl DlqSelect {
    fn selection(&self) -> DlqSelection {
        DlqSelection {
            platform: self.platform,
            ids: self.ids.clone(),
            all: self.all,
        }
    }
}

/// Flags of destructive commands.
#[derive(Args)]
struct Safety {
    /// Show what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn run(args: OpsArgs) -> anyhow::Result<()> {
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&args.common.redis_url)
            .await
            .with_context(|| format!("connecting to {}", args.common.redis_url))?,
        Keyspace::new(&args.common.prefix),
    );
    let admin = Admin::new(store, args.worker_ttl);
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
            dry_run,
        } => {
            let bar = ui::bar("claim");
            let report = admin.claim(&select.selection(), &to, dry_run, &bar).await?;
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

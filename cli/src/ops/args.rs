//! The arguments of `draas ops`, parsed by clap.

use std::time::Duration;

use clap::{Args, Subcommand};
use draas_bus::admin::{DlqSelection, Selection, StreamRef};
use draas_protocol::Platform;

use super::ui;
use crate::{Common, parse_platform};

#[derive(Args)]
pub struct OpsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Judge every worker by this heartbeat TTL (e.g. 10s) instead of the TTL it registered.
    /// Without it each worker is live while its last heartbeat is younger than its own
    /// registered TTL (10s for workers that registered none).
    #[arg(long, global = true, value_parser = ui::parse_duration)]
    pub worker_ttl: Option<Duration>,
    #[command(subcommand)]
    pub command: OpsCmd,
}

#[derive(Subcommand)]
pub enum OpsCmd {
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
        /// Also entries whose owner is another live worker.
        #[arg(long)]
        force: bool,
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
    /// The audit trail of API requests (mutating and refused ones), newest first.
    Audit {
        /// Entries per page (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after this entry id (a page's `nextCursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
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
pub enum DlqCmd {
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
pub enum TrimCmd {
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
pub struct StreamArgs {
    /// process, docker or kubernetes.
    #[arg(long, value_parser = parse_platform, default_value = "process")]
    pub platform: Platform,
    /// A node's own stream instead of the platform stream.
    #[arg(long)]
    pub node: Option<String>,
}

impl StreamArgs {
    pub fn target(&self) -> StreamRef {
        StreamRef {
            platform: self.platform,
            node: self.node.clone(),
        }
    }
}

#[derive(Args)]
pub struct SelectArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Entry ids.
    pub ids: Vec<String>,
    /// Every pending entry of this consumer.
    #[arg(long, conflicts_with = "ids")]
    pub consumer: Option<String>,
    /// Every pending entry of the stream.
    #[arg(long, conflicts_with_all = ["ids", "consumer"])]
    pub all: bool,
    /// Only entries idle at least this long.
    #[arg(long, value_parser = ui::parse_duration)]
    pub min_idle: Option<Duration>,
}

impl SelectArgs {
    pub fn selection(&self) -> Selection {
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
pub struct DlqSelect {
    /// process, docker or kubernetes.
    #[arg(long, value_parser = parse_platform, default_value = "process")]
    pub platform: Platform,
    /// Dead-letter ids.
    pub ids: Vec<String>,
    /// Every dead letter of the platform.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
}

impl DlqSelect {
    pub fn selection(&self) -> DlqSelection {
        DlqSelection {
            platform: self.platform,
            ids: self.ids.clone(),
            all: self.all,
        }
    }
}

/// Flags of destructive commands.
#[derive(Args)]
pub struct Safety {
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

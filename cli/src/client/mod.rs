//! The client commands: `draas instances …`, `draas operations get`, `draas apply`,
//! `draas diff` and `draas get`, which talk only to the REST API (never to Redis).
//!
//! - [`target`]: which API and token (`--api`/`DRAAS_API`, `DRAAS_TOKEN`, the config file,
//!   the `draas up` context).
//! - [`http`]: requests, the API's errors, exit codes.
//! - [`output`]: tables, `-o json|yaml`, spinners, confirmations.
//! - [`instances`], [`edit`], [`watch`] (logs and events), [`operations`].
//! - [`document`], [`files`], [`plan`], [`apply`]: the DrasiInstance document and `apply`.
//!
//! Exit codes: 0 done, 1 failed (an operation, a write, bad input), 2 usage, 3 not found,
//! 4 conflict (409, 412), 5 unauthorised or forbidden, 6 API unreachable or failing (5xx).

mod apply;
mod document;
mod edit;
mod files;
mod http;
mod instances;
mod operations;
mod output;
mod plan;
mod target;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use http::Api;
pub use http::ClientError;
use output::Format;

/// How to reach the API; every client command takes these.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// The DRaaS API [default: `api:` of ~/.config/draas/config.yaml, else the running
    /// `draas up`'s, else http://127.0.0.1:8080]. The token comes from DRAAS_TOKEN, else
    /// `token:` of that file, else the `draas up` administrator token (for its own API only).
    #[arg(long, env = "DRAAS_API", value_name = "URL", global = true)]
    api: Option<String>,
    /// The `draas up` data directory (or its context.json) whose API and token to use
    /// [default: $DRAAS_DATA_DIR, else .draas].
    #[arg(long, env = "DRAAS_CONTEXT", value_name = "PATH", global = true)]
    context: Option<PathBuf>,
}

impl Connection {
    fn api(&self) -> Result<Api, ClientError> {
        let given = target::Given {
            api: self.api.clone(),
            token: std::env::var("DRAAS_TOKEN").ok(),
            context: self.context.clone(),
        };
        let target = target::resolve(&given)?;
        Api::new(&target.api, target.token)
    }
}

#[derive(Args)]
pub struct InstancesArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: InstancesCmd,
}

#[derive(Subcommand)]
enum InstancesCmd {
    /// List instances: name, id, platform, state, desired state, generation, age.
    #[command(alias = "ls")]
    List {
        /// Only instances with these labels: key=value[,key=value…].
        #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
        selector: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// One instance; `-o json` as the API shows it, `-o yaml` as a document `apply` accepts.
    Get {
        /// Name or id.
        name: String,
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Create the instances of DrasiInstance documents; refused (exit 4) for a name that exists.
    Create {
        /// A YAML or JSON file (many documents allowed), a directory, or - for stdin.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Follow the start an instance's desiredState asks for to its end.
        #[arg(long)]
        wait: bool,
    },
    /// Edit an instance's document in $EDITOR (default vi) and apply it.
    Edit {
        name: String,
        #[arg(long)]
        wait: bool,
    },
    /// Start an instance.
    Start(Lifecycle),
    /// Stop an instance.
    Stop(Lifecycle),
    /// Restart an instance.
    Restart(Lifecycle),
    /// Delete an instance (asks first on a terminal; --yes in scripts).
    Delete {
        name: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long)]
        wait: bool,
    },
    /// The instance's last log lines; -f follows them until Ctrl-C.
    Logs {
        name: String,
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines to show first (1 to 10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        tail: u32,
    },
    /// The instance's events (recent history); --follow keeps printing new ones.
    Events {
        name: String,
        #[arg(long, short = 'f')]
        follow: bool,
        /// `json`: one event per line as the API sends it.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Args)]
struct Lifecycle {
    /// Name or id.
    name: String,
    /// Follow the operation to its end (exit 1 when it fails).
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
pub struct OperationsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: OperationsCmd,
}

#[derive(Subcommand)]
enum OperationsCmd {
    /// An operation; --wait follows it to its end (exit 1 when it failed).
    Get {
        id: String,
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    conn: Connection,
    /// A YAML or JSON file (many documents allowed), a directory (its *.yaml, *.yml, *.json),
    /// or - for stdin; repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR"
    )]
    files: Vec<PathBuf>,
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
    /// Delete the instances matching --selector that no document names.
    #[arg(long, requires = "selector")]
    prune: bool,
    /// The instances --prune may delete: key=value[,key=value…].
    #[arg(
        short = 'l',
        long = "selector",
        value_name = "SELECTOR",
        requires = "prune"
    )]
    selector: Option<String>,
    /// Delete without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Follow the starts and stops the writes cause to their ends.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    conn: Connection,
    /// As for apply.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR"
    )]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    conn: Connection,
    /// Name or id.
    name: String,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

pub async fn instances(args: InstancesArgs) -> anyhow::Result<()> {
    let api = args.conn.api()?;
    let done = match args.command {
        InstancesCmd::List { selector, output } => {
            let selector = selector.as_deref().map(instances::selector).transpose()?;
            instances::list(&api, selector.as_deref().unwrap_or_default(), output).await
        }
        InstancesCmd::Get { name, output } => instances::get(&api, &name, output).await,
        InstancesCmd::Create { files, wait } => instances::create(&api, &files, wait).await,
        InstancesCmd::Edit { name, wait } => edit::edit(&api, &name, wait).await,
        InstancesCmd::Start(l) => instances::lifecycle(&api, &l.name, "start", l.wait).await,
        InstancesCmd::Stop(l) => instances::lifecycle(&api, &l.name, "stop", l.wait).await,
        InstancesCmd::Restart(l) => instances::lifecycle(&api, &l.name, "restart", l.wait).await,
        InstancesCmd::Delete { name, yes, wait } => {
            match output::confirm(&format!("Delete instance {name}?"), yes)? {
                true => instances::lifecycle(&api, &name, "delete", wait).await,
                false => {
                    eprintln!("Nothing deleted.");
                    Ok(())
                }
            }
        }
        InstancesCmd::Logs { name, follow, tail } => {
            let id = instance_id(&api, &name).await?;
            watch::logs(&api, &id, tail, follow).await
        }
        InstancesCmd::Events {
            name,
            follow,
            output,
        } => {
            let id = instance_id(&api, &name).await?;
            watch::events(&api, &id, follow, output).await
        }
    };
    Ok(done?)
}

/// The id of the instance named (or with id) `name`.
async fn instance_id(api: &Api, name: &str) -> Result<String, ClientError> {
    let view = instances::fetch(api, name).await?;
    Ok(view["id"].as_str().unwrap_or(name).to_owned())
}

pub async fn operations(args: OperationsArgs) -> anyhow::Result<()> {
    let api = args.conn.api()?;
    match args.command {
        OperationsCmd::Get { id, wait, output } => operations::get(&api, &id, wait, output).await?,
    }
    Ok(())
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let api = args.conn.api()?;
    let prune = match (args.prune, args.selector.as_deref()) {
        (true, Some(s)) => Some(instances::selector(s)?),
        _ => None,
    };
    let options = apply::Options {
        paths: args.files,
        dry_run: args.dry_run,
        prune,
        yes: args.yes,
        wait: args.wait,
    };
    apply::apply(&api, options).await?;
    Ok(())
}

pub async fn diff(args: DiffArgs) -> anyhow::Result<()> {
    let api = args.conn.api()?;
    apply::diff(&api, &args.files).await?;
    Ok(())
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let api = args.conn.api()?;
    instances::get(&api, &args.name, args.output).await?;
    Ok(())
}

/// The end of `draas` after an error: one `error: …` line (none for a [`ClientError::Silent`]
/// exit), and the exit code of a [`ClientError`] anywhere in the chain (else 1).
pub fn exit(error: &anyhow::Error) -> ExitCode {
    let client = error.chain().find_map(|e| e.downcast_ref::<ClientError>());
    if !matches!(client, Some(ClientError::Silent(_))) {
        // One line: the error and its causes, no backtrace.
        eprintln!("error: {error:#}");
    }
    ExitCode::from(client.map_or(1, ClientError::exit_code))
}

//! Command-line arguments, compatible with drasi-server where the two overlap:
//! `draas-runtime [-c|--config PATH] [-p|--port N] [run|validate|capabilities [--output PATH]]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "draas-runtime",
    version,
    about = "A drasi-server-compatible Drasi host built from the published drasi crates"
)]
pub struct Cli {
    /// Path to the drasi-server YAML config (required; a missing file is an error).
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Override the config's REST API port.
    #[arg(short, long, global = true, value_name = "N")]
    pub port: Option<u16>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the runtime (the default).
    Run,
    /// Check a config file and exit: 0 when it would start, non-zero naming the problem.
    Validate,
    /// Print the source and reaction kinds this build supports, as JSON (workers advertise it).
    Capabilities {
        /// Write the JSON to this file instead of stdout (for images without a shell, e.g. a
        /// Kubernetes init container writing the worker's `--capabilities-file`).
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

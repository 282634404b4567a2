//! The `draas-runtime` binary: parses the CLI, loads the config, starts the runtime, binds the
//! API once everything runs, and stops gracefully on SIGINT or SIGTERM (exit 0).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use draas_protocol::drasi::DrasiConfig;
use draas_runtime::cli::{Cli, Command};
use draas_runtime::egress::{self, EgressSettings};
use draas_runtime::load::{env_lookup, load_config};
use draas_runtime::{Runtime, output, signals};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Capabilities { output }) = &cli.command {
        let kinds = draas_protocol::capabilities::WorkloadKinds::of_this_model(format!(
            "draas-runtime {}",
            env!("CARGO_PKG_VERSION")
        ));
        let json = serde_json::to_string(&kinds).unwrap_or_default();
        let Some(path) = output else {
            println!("{json}");
            return ExitCode::SUCCESS;
        };
        return match std::fs::write(path, format!("{json}\n")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let Some(path) = cli.config.clone() else {
        eprintln!(
            "error: --config <PATH> is required (draas-runtime never writes a default config)"
        );
        return ExitCode::from(2);
    };
    let mut config = match load_config(&path, &env_lookup) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(port) = cli.port {
        config.port = Some(port.into());
    }
    if matches!(cli.command, Some(Command::Validate)) {
        println!("configuration {} is valid", path.display());
        return ExitCode::SUCCESS;
    }
    let egress = match EgressSettings::from_env(&env_lookup) {
        Ok(egress) => egress,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // From here on, losing the reader of stdout or stderr must not end the process.
    let output = match output::guard() {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("warning: output is not guarded against a vanished reader: {e}");
            None
        }
    };
    init_tracing(config.log_level.as_deref());
    let code = run(config, egress);
    if let Some(output) = output {
        output.finish();
    }
    code
}

fn run(config: DrasiConfig, egress: Option<EgressSettings>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config, egress));
    // Do not wait on tasks or blocking threads the components may have left behind.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: DrasiConfig, egress: Option<EgressSettings>) -> anyhow::Result<()> {
    let shutdown = signals::shutdown_signal().context("installing signal handlers")?;
    if let Some(egress) = egress {
        let listen = egress.listen;
        egress::start(egress)
            .await
            .with_context(|| format!("cannot start the egress proxy on {listen}"))?;
    }
    let runtime = Runtime::start(&config).await?;
    let host = config.host.as_deref().unwrap_or("0.0.0.0");
    let addr = format!("{host}:{}", config.port.clone().unwrap_or(8080.into()));
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            runtime.stop().await;
            return Err(e).with_context(|| format!("cannot listen on {addr}"));
        }
    };
    tracing::info!("REST API listening on http://{addr}");
    runtime
        .serve(listener, async move {
            let signal = shutdown.await;
            tracing::info!("{signal} received, stopping");
        })
        .await?;
    Ok(())
}

/// `RUST_LOG` wins; otherwise `logLevel` (default info) for everything.
fn init_tracing(log_level: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(log_level.unwrap_or("info").to_ascii_lowercase()));
    // drasi-lib installs its own subscriber only if none is set; ours comes first.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi)
        .try_init();
}

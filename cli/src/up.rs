//! `draas up`: the whole system on one machine. A private `redis-server` child (own data
//! directory, AOF on) unless `REDIS_URL` is set, one API node and one process worker in this
//! process. It writes `<data dir>/context.json` ([`crate::context`]) so `draas ops|worker|api`
//! in the same directory find its Redis, and prints an `export REDIS_URL=…` line for other
//! shells.
//!
//! Ctrl-C first stops the worker's running instances through the API ([`crate::stop_all`]),
//! so they are recorded `stopped` and the next `draas up` shows them so (start them again
//! with the API); then it stops the API, the worker, Redis, and removes the context. A second
//! Ctrl-C skips the orderly stops: the worker then kills what is left, and those instances
//! come back `failed`. Nothing is left running either way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use draas_protocol::{Keyspace, Platform};
use tokio::process::{Child, Command};

use crate::context::{self, Context as UpContext};
use crate::{admin_token, data_secret, signals, stop_all};

#[derive(Args)]
pub struct UpArgs {
    /// Address the API listens on.
    #[arg(long, env = "DRAAS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where Redis, the worker and the instances keep their data.
    #[arg(long, env = "DRAAS_DATA_DIR", default_value = ".draas")]
    data_dir: PathBuf,
    /// Use this Redis instead of starting a private one.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// drasi-server compatible executable for instances.
    #[arg(long, env = "DRAAS_RUNTIME")]
    runtime: Option<PathBuf>,
    /// Prefix of every Redis key.
    #[arg(long, env = "DRAAS_PREFIX", default_value = "draas")]
    prefix: String,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    context::check_free(&data_dir, std::process::id())?;
    let (redis_url, mut redis) = match &args.redis_url {
        Some(url) => {
            context::reachable(url).await?;
            (url.clone(), None)
        }
        None => {
            let (url, child) = start_redis(&data_dir.join("redis")).await?;
            (url, Some(child))
        }
    };
    let keys = Keyspace::new(&args.prefix);

    let mut api_config = draas_api::ApiConfig::new(&redis_url);
    api_config.keys = keys.clone();
    api_config.auth = draas_api::auth::AuthMode::Tokens;
    let data_secret = data_secret::ensure(&data_dir)?;
    api_config.data_secret = Some(data_secret.clone());
    let app = draas_api::App::connect(api_config)
        .await
        .context("connecting the API to Redis")?;
    let admin = admin_token::ensure(&app.store, &data_dir).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (set DRAAS_LISTEN to use another address)",
                args.listen
            )
        })?;
    let url = format!("http://{}", listener.local_addr()?);

    let worker_dir = data_dir.join("worker");
    let mut worker_config =
        draas_worker::WorkerConfig::new(&redis_url, Platform::Process, &worker_dir);
    worker_config.keys = keys.clone();
    // A backstop: instances the orderly stop below did not reach are not left running.
    worker_config.stop_instances_on_exit = true;
    worker_config.process.executable = args.runtime.clone().unwrap_or_else(crate::default_runtime);
    // Its data plane on loopback: the API forwards instances' data requests to it.
    worker_config.data_plane = Some(draas_worker::dataplane::DataPlaneConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        advertise: None,
        secret: data_secret,
    });

    let context_path = UpContext {
        redis_url: redis_url.clone(),
        api_url: url.clone(),
        prefix: args.prefix.clone(),
        pid: std::process::id(),
    }
    .write(&data_dir)?;

    let (first, second) = signals::two_stage();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (force_tx, force_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        second.await;
        let _ = force_tx.send(true);
    });
    let signalled = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = tokio::spawn(draas_api::serve(listener, app, signalled(stop_rx.clone())));
    let worker = tokio::spawn(draas_worker::run(
        worker_config,
        signalled(stop_rx.clone()),
        signalled(force_rx.clone()),
    ));

    let shown_redis = draas_bus::connect::redacted(&redis_url);
    println!("DRaaS is up.");
    println!("  API:      {url}");
    println!("  Redis:    {shown_redis}");
    println!("  Data:     {}", data_dir.display());
    let finds_it = match data_dir.parent() {
        Some(parent) if data_dir.ends_with(context::DEFAULT_DIR) => {
            format!("found by draas ops|worker|api run in {}", parent.display())
        }
        _ => format!("use it with --context {}", data_dir.display()),
    };
    println!("  Context:  {}   ({finds_it})", context_path.display());
    if admin.created {
        println!(
            "  Token:    {}   (administrator; shown once, kept in {}, mode 0600)",
            admin.secret,
            admin.path.display()
        );
    } else {
        println!("  Token:    in {}   (administrator)", admin.path.display());
    }
    if redis.is_some() {
        println!("Other shells:  export REDIS_URL={redis_url}");
    }
    println!(
        "Press Ctrl-C to stop everything (running instances are stopped and recorded `stopped`)."
    );

    first.await;
    tokio::select! {
        result = stop_all::run(&url, &admin.secret, &redis_url, &keys, &worker_dir) => {
            if let Err(error) = result {
                eprintln!("could not stop the instances in order: {error:#}");
            }
        }
        () = signalled(force_rx.clone()) => {
            eprintln!("forced: instances still running are killed and will show as failed");
        }
    }
    let _ = stop_tx.send(true);
    let api_result = api.await.context("API task")?;
    let worker_result = worker.await.context("worker task")?;
    if let Some(child) = redis.as_mut() {
        stop_child(child).await;
    }
    UpContext::remove(&data_dir);
    api_result.context("API")?;
    worker_result.context("worker")?;
    println!("DRaaS stopped.");
    Ok(())
}

/// Starts a private redis-server on a free loopback port with AOF on; waits for PING.
async fn start_redis(dir: &Path) -> anyhow::Result<(String, Child)> {
    std::fs::create_dir_all(dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
        .args(["--maxmemory-policy", "noeviction", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .arg("--pidfile")
        .arg(dir.join("redis.pid"))
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server (install it with: apt-get install -y redis-server, or set REDIS_URL)")?;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        {
            return Ok((url, child));
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "redis-server did not answer PING within 10 s; see {}",
                dir.join("redis.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM (Redis flushes its AOF and exits), then SIGKILL after 10 s.
async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

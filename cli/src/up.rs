//! `draas up`: the whole system on one machine. A private `redis-server` child (own data
//! directory, AOF on) unless `REDIS_URL` is set, one API node and one process worker in this
//! process. Ctrl-C stops the API, then the worker (which stops its instances), then Redis, so
//! nothing is left running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use draas_protocol::{Keyspace, Platform};
use tokio::process::{Child, Command};

use crate::signals;

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
    let (redis_url, mut redis) = match &args.redis_url {
        Some(url) => (url.clone(), None),
        None => {
            let (url, child) = start_redis(&data_dir.join("redis")).await?;
            (url, Some(child))
        }
    };
    let keys = Keyspace::new(&args.prefix);

    let mut api_config = draas_api::ApiConfig::new(&redis_url);
    api_config.keys = keys.clone();
    let app = draas_api::App::connect(api_config)
        .await
        .context("connecting the API to Redis")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (set DRAAS_LISTEN to use another address)",
                args.listen
            )
        })?;
    let url = format!("http://{}", listener.local_addr()?);

    let mut worker_config =
        draas_worker::WorkerConfig::new(&redis_url, Platform::Process, data_dir.join("worker"));
    worker_config.keys = keys;
    worker_config.stop_instances_on_exit = true;
    worker_config.process.executable = args.runtime.clone().unwrap_or_else(crate::default_runtime);

    let (first, second) = signals::two_stage();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = tokio::spawn(draas_api::serve(listener, app, stopped(stop_rx.clone())));
    let worker = tokio::spawn(draas_worker::run(
        worker_config,
        stopped(stop_rx.clone()),
        second,
    ));

    println!("DRaaS is up.");
    println!("  API:    {url}   (try: curl {url}/api/v1/platforms)");
    println!("  Redis:  {redis_url}");
    println!("  Data:   {}", data_dir.display());
    println!("Press Ctrl-C to stop everything.");

    first.await;
    let _ = stop_tx.send(true);
    let api_result = api.await.context("API task")?;
    let worker_result = worker.await.context("worker task")?;
    if let Some(child) = redis.as_mut() {
        stop_child(child).await;
    }
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

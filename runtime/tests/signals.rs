//! SIGINT and SIGTERM each stop the runtime gracefully with exit status 0, quickly.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Runtime, TempDir, free_port, pipeline_config};
use nix::sys::signal::Signal;

async fn stops_cleanly_on(signal: Signal) -> Result<()> {
    let dir = TempDir::new("signal");
    let (api_port, source_port) = (free_port(), free_port());
    let mut rt = Runtime::start(
        dir.path(),
        &pipeline_config(api_port, source_port),
        api_port,
    )
    .await?;
    let started = Instant::now();
    let status = rt.signal_and_wait(signal, Duration::from_secs(15))?;
    assert_eq!(status.code(), Some(0), "{signal}: {status}\n{}", rt.logs());
    assert!(
        rt.logs().contains(&format!("{signal} received")),
        "{}",
        rt.logs()
    );
    assert!(rt.logs().contains("instance stopped"), "{}", rt.logs());
    eprintln!("{signal}: exited in {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn sigint_exits_zero() -> Result<()> {
    stops_cleanly_on(Signal::SIGINT).await
}

#[tokio::test]
async fn sigterm_exits_zero() -> Result<()> {
    stops_cleanly_on(Signal::SIGTERM).await
}

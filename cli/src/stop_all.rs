//! On Ctrl-C of `draas up`: stop every instance its worker runs through the ordinary command
//! path (a stop request to its own API), so each ends `stopped`, with its events, before the
//! worker and Redis go. A worker that only killed its children would leave them recorded
//! `running`, and the next `draas up` would find the processes gone and record them `failed`.
//! Instances of other nodes sharing the same Redis are left alone.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use draas_bus::{Store, connect};
use draas_protocol::{InstanceState, Keyspace, Platform};
use uuid::Uuid;

/// Seconds each stop request waits for its operation (a stop takes at most the stop grace).
const STOP_WAIT_SECS: u64 = 30;

/// Stops the running and starting instances placed on the node of `worker_dir`, all at once,
/// through the API at `api` with the administrator `token`. Prints one line per instance.
pub async fn run(
    api: &str,
    token: &str,
    redis_url: &str,
    keys: &Keyspace,
    worker_dir: &Path,
) -> anyhow::Result<()> {
    let node = draas_worker::node::identity(worker_dir).context("reading the node identity")?;
    let store = Store::new(connect::shared(redis_url).await?, keys.clone());
    let mut live = Vec::new();
    for id in store.placed(Platform::Process, &node).await? {
        if let Some(stored) = store.instance(id).await?
            && matches!(
                stored.instance.state,
                InstanceState::Running | InstanceState::Starting
            )
        {
            live.push((id, stored.instance.spec.name));
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    println!("Stopping {} instance(s)...", live.len());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(STOP_WAIT_SECS + 5))
        .build()?;
    let stops = live.iter().map(|(id, name)| {
        let http = &http;
        async move {
            match stop(http, api, token, *id).await {
                Ok(()) => println!("  {name}: stopped"),
                Err(error) => println!("  {name}: not stopped ({error:#})"),
            }
        }
    });
    futures::future::join_all(stops).await;
    Ok(())
}

/// One stop request; succeeds when its operation did.
async fn stop(http: &reqwest::Client, api: &str, token: &str, id: Uuid) -> anyhow::Result<()> {
    let response = http
        .post(format!(
            "{api}/api/v1/instances/{id}/stop?wait={STOP_WAIT_SECS}"
        ))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    match body["state"].as_str() {
        Some("succeeded") => Ok(()),
        Some(state) => anyhow::bail!("operation {state}: {}", body["error"]),
        None => anyhow::bail!("{status}: {}", body["error"]["message"]),
    }
}

//! Honest state under failure: an API restarted while an operation is pending, and an
//! instance process killed from outside.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{ApiNode, System, runtime_binary, scratch, wait_until};
use serde_json::{Value, json};

/// A drasi-server compatible executable that takes two seconds before it execs the runtime,
/// so a start stays in flight long enough to restart the API around it.
fn slow_runtime() -> std::path::PathBuf {
    let path = scratch("slow").join("slow-runtime.sh");
    let script = format!(
        "#!/bin/sh\nsleep 2\nexec {} \"$@\"\n",
        runtime_binary().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_survives_an_api_restart() -> anyhow::Result<()> {
    let mut sys = System::start_with(slow_runtime()).await?;
    let id = sys.create("patient").await;
    let (status, op) = sys
        .post(&format!("/api/v1/instances/{id}/start?wait=0"))
        .await;
    assert_eq!(status, 202, "{op}");
    let op_id = op["id"].as_str().unwrap().to_owned();

    // The API goes away while the start is still running.
    let old = std::mem::replace(
        &mut sys.api,
        ApiNode::start(&sys.redis.url, &sys.keys).await?,
    );
    old.shutdown().await;
    let op = sys.get(&format!("/api/v1/operations/{op_id}")).await.1;
    assert!(
        matches!(op["state"].as_str(), Some("pending" | "running")),
        "start finished too early for this test: {op}"
    );

    // A new API node serves the durable operation, and it completes.
    let done = wait_until(|| async {
        let (status, op) = sys.get(&format!("/api/v1/operations/{op_id}")).await;
        (status == 200 && op["state"] == "succeeded").then_some(op)
    })
    .await?;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(sys.instance(&id).await["state"], "running");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_from_outside_is_reported_failed() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let id = sys.create("victim").await;
    assert_eq!(
        sys.post(&format!("/api/v1/instances/{id}/start")).await.0,
        200
    );
    let pid = sys.instance(&id).await["runtime"]["pid"].as_i64().unwrap();
    common::sigkill(pid);

    let inst = sys.wait_state(&id, "failed").await;
    assert_eq!(inst["runtime"]["exitCode"], 137, "{inst}");
    let message = inst["runtime"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("signal 9"), "{inst}");
    assert!(
        inst["runtime"].get("pid").is_none(),
        "a dead process has no pid: {inst}"
    );

    // From failed, the instance can be started again.
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_never_gets_ready_fails_the_start_with_its_log() -> anyhow::Result<()> {
    let path = scratch("broken").join("broken-runtime.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\necho 'cannot open the widget store' >&2\nexit 3\n",
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    let sys = System::start_with(path).await?;
    let id = sys.create("broken").await;
    let (status, op) = sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["state"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "start_failed");
    let message = op["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot open the widget store"),
        "the log tail belongs in the error: {message}"
    );
    let inst: Value = sys.instance(&id).await;
    assert_eq!(inst["state"], "failed");
    Ok(())
}

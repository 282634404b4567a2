//! What this worker's workload can run, asked of the workload itself at start-up:
//! `<runtime> capabilities` (draas-runtime prints its kinds as JSON). A workload that does not
//! answer that way (drasi-server, a wrapper script) advertises nothing, and the API cannot
//! judge its kinds at create. Only the process platform asks: a container image is not run
//! just to ask it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use draas_protocol::capabilities::WorkloadKinds;

/// How long the workload has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The kinds `executable` says it supports, if it says.
pub async fn probe(executable: &Path) -> Option<WorkloadKinds> {
    let mut command = tokio::process::Command::new(executable);
    command
        .arg("capabilities")
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(ASK_TIMEOUT, command.output())
        .await
        .ok()?
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let kinds: WorkloadKinds = serde_json::from_slice(&output.stdout).ok()?;
    tracing::info!(message = "workload capabilities", workload = %kinds.workload, sources = ?kinds.sources, reactions = ?kinds.reactions);
    Some(kinds)
}

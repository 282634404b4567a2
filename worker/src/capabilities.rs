//! What this worker's workload can run, asked of the workload itself at start-up:
//! `<runtime> capabilities` (draas-runtime prints its kinds as JSON). A workload that does not
//! answer that way (drasi-server, a wrapper script) advertises nothing (one log line says
//! why), and the API cannot judge its kinds at create. Only the process platform asks: a
//! container image is not run just to ask it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use draas_protocol::capabilities::WorkloadKinds;

/// How long the workload has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The kinds `executable` says it supports, if it says; when it does not, one line says why
/// and that kinds are then not checked at create.
pub async fn probe(executable: &Path) -> Option<WorkloadKinds> {
    match ask(executable).await {
        Ok(kinds) => {
            tracing::info!(message = "workload capabilities", workload = %kinds.workload, sources = ?kinds.sources, reactions = ?kinds.reactions);
            Some(kinds)
        }
        Err(reason) => {
            tracing::info!(message = "the workload does not say what it runs; advertising no kinds, so the API accepts every kind and a missing one fails at start", executable = %executable.display(), reason = %reason);
            None
        }
    }
}

async fn ask(executable: &Path) -> Result<WorkloadKinds, String> {
    let mut command = tokio::process::Command::new(executable);
    command
        .arg("capabilities")
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(ASK_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("`capabilities` gave no answer within {ASK_TIMEOUT:?}"))?
        .map_err(|e| format!("`capabilities` could not run: {e}"))?;
    if !output.status.success() {
        return Err(format!("`capabilities` exited with {}", output.status));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`capabilities` printed no kinds as JSON: {e}"))
}

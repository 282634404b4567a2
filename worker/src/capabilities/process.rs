//! Asking the process platform's executable what it runs: `<runtime> capabilities` with a
//! clean environment, within [`ASK_TIMEOUT`]; its stdout is the answer.

use std::path::Path;
use std::process::Stdio;

use draas_protocol::capabilities::WorkloadKinds;

use super::{ASK_TIMEOUT, parse};

/// The kinds `executable` says it supports, or why it said nothing.
pub(super) async fn ask(executable: &Path) -> Result<WorkloadKinds, String> {
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
    parse(&output.stdout).map_err(|e| format!("`capabilities` printed no kinds: {e}"))
}

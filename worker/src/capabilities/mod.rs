//! What this worker's workload can run, advertised as `kinds` in its registration: the API
//! refuses a config whose kinds no live worker's workload has (`api/src/kinds.rs`).
//!
//! Where the kinds come from, first that applies:
//! - [`file`]: `--capabilities-file PATH`, the JSON `draas-runtime capabilities` prints,
//!   written by the operator (the official drasi-server and the plugins installed) or by a
//!   Kubernetes init container. Advertised as it is; a file that cannot be read or is not
//!   that format stops the worker at start.
//! - [`process`]: `<runtime> capabilities`, asked of the executable.
//! - [`docker`]: the image asked the same way, in a throwaway container with no network.
//! - Kubernetes: the worker cannot run the image itself; without the file it advertises
//!   nothing.
//!
//! A workload that does not answer (drasi-server has no `capabilities` command, a wrapper
//! script, an image that is not there yet) advertises nothing: one log line says why, and the
//! API then accepts every kind, so a missing one fails at start. A probe never stops the
//! worker.

mod docker;
mod file;
mod process;

use std::path::Path;
use std::time::Duration;

use draas_protocol::capabilities::WorkloadKinds;
use serde_json::Value;

use crate::driver::docker::DockerDriver;
pub use file::FileError;

/// How long a workload has to answer `capabilities`.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The workload a worker runs, to be asked what it supports when no file says.
pub enum Workload<'a> {
    /// The executable of the process platform.
    Process(&'a Path),
    /// The Docker driver, whose client and image the question uses.
    Docker(&'a DockerDriver),
    /// Kubernetes: nothing to ask from here.
    Kubernetes,
}

/// The kinds `--capabilities-file` declares, read and checked; `None` without the flag.
pub fn declared(path: Option<&Path>) -> Result<Option<WorkloadKinds>, FileError> {
    let Some(path) = path else { return Ok(None) };
    let kinds = file::read(path)?;
    tracing::info!(message = "workload capabilities from the capabilities file", file = %path.display(), workload = %kinds.workload, sources = ?kinds.sources, reactions = ?kinds.reactions);
    Ok(Some(kinds))
}

/// What this worker advertises: the declared kinds when a file gave them, else the
/// workload's answer; `None` (with one log line saying why) when it has none.
pub async fn advertised(
    declared: Option<WorkloadKinds>,
    workload: Workload<'_>,
) -> Option<WorkloadKinds> {
    if declared.is_some() {
        return declared;
    }
    let (asked, reason) = match workload {
        Workload::Process(executable) => (
            format!("executable {}", executable.display()),
            process::ask(executable).await,
        ),
        Workload::Docker(driver) => (
            format!("image {}", driver.config().image),
            docker::ask(driver).await,
        ),
        Workload::Kubernetes => {
            tracing::info!(
                message = "a kubernetes worker cannot run its image to ask what it runs; advertising no kinds, so the API accepts every kind and a missing one fails at start. Pass --capabilities-file (deploy/kubernetes/worker-kubernetes.yaml writes it with an init container)"
            );
            return None;
        }
    };
    match reason {
        Ok(kinds) => {
            tracing::info!(message = "workload capabilities", workload = %kinds.workload, asked = %asked, sources = ?kinds.sources, reactions = ?kinds.reactions);
            Some(kinds)
        }
        Err(reason) => {
            tracing::info!(message = "the workload does not say what it runs; advertising no kinds, so the API accepts every kind and a missing one fails at start (--capabilities-file declares them)", asked = %asked, reason = %reason);
            None
        }
    }
}

/// `capabilities` JSON as `draas-runtime` prints it, checked field by field:
/// `{"workload": "NAME VERSION", "sources": [KIND, …], "reactions": [KIND, …]}`. Other keys
/// are ignored (a newer workload may say more).
pub fn parse(bytes: &[u8]) -> Result<WorkloadKinds, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(object) = &value else {
        return Err("not a JSON object".into());
    };
    match object.get("workload") {
        Some(Value::String(name)) if !name.trim().is_empty() => {}
        Some(Value::String(_)) => return Err("`workload` is empty".into()),
        Some(_) => return Err("`workload` is not a string".into()),
        None => return Err("`workload` is missing".into()),
    }
    for field in ["sources", "reactions"] {
        let Some(list) = object.get(field) else {
            return Err(format!("`{field}` is missing"));
        };
        let Value::Array(kinds) = list else {
            return Err(format!("`{field}` is not a list of kinds"));
        };
        for (i, kind) in kinds.iter().enumerate() {
            match kind {
                Value::String(k) if !k.trim().is_empty() => {}
                Value::String(_) => return Err(format!("`{field}[{i}]` is empty")),
                _ => return Err(format!("`{field}[{i}]` is not a string")),
            }
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_field_at_fault() {
        let ok = parse(
            br#"{"workload": "lean 1.0", "sources": ["mock"], "reactions": ["log"], "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(ok.workload, "lean 1.0");
        assert_eq!(
            (ok.sources, ok.reactions),
            (vec!["mock".to_owned()], vec!["log".to_owned()])
        );
        for (text, problem) in [
            ("", "not JSON"),
            ("[]", "not a JSON object"),
            (
                r#"{"sources": [], "reactions": []}"#,
                "`workload` is missing",
            ),
            (
                r#"{"workload": " ", "sources": [], "reactions": []}"#,
                "`workload` is empty",
            ),
            (
                r#"{"workload": 1, "sources": [], "reactions": []}"#,
                "`workload` is not a string",
            ),
            (
                r#"{"workload": "w", "reactions": []}"#,
                "`sources` is missing",
            ),
            (
                r#"{"workload": "w", "sources": "mock", "reactions": []}"#,
                "`sources` is not a list",
            ),
            (
                r#"{"workload": "w", "sources": ["mock", 3], "reactions": []}"#,
                "`sources[1]` is not a string",
            ),
            (
                r#"{"workload": "w", "sources": [], "reactions": [""]}"#,
                "`reactions[0]` is empty",
            ),
        ] {
            let error = parse(text.as_bytes()).unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[tokio::test]
    async fn a_declared_set_is_advertised_without_asking() {
        let declared = WorkloadKinds {
            workload: "declared 1".into(),
            sources: vec!["mock".into()],
            reactions: vec![],
        };
        // The executable does not exist: asking it would fail.
        let from_file = advertised(
            Some(declared.clone()),
            Workload::Process(Path::new("/nonexistent/draas-runtime")),
        )
        .await;
        assert_eq!(from_file, Some(declared));
        // Nothing declared and nothing to ask.
        assert_eq!(advertised(None, Workload::Kubernetes).await, None);
    }
}

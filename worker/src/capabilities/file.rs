//! `--capabilities-file`: the kinds a workload runs, declared in a file instead of asked. A
//! file that cannot be read or is not what `draas-runtime capabilities` prints is an error
//! naming the file and the problem, never a silent "advertise nothing".

use std::path::{Path, PathBuf};

use draas_protocol::capabilities::WorkloadKinds;

/// The format the file must have, said in every error about its content.
const EXPECTED: &str = r#"{"workload": "NAME VERSION", "sources": [KIND, ...], "reactions": [KIND, ...]}, as `draas-runtime capabilities` prints it"#;

/// Why a capabilities file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("--capabilities-file {}: cannot read it: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--capabilities-file {}: {problem}; expected {EXPECTED}", .path.display())]
    Invalid { path: PathBuf, problem: String },
}

/// Reads and checks the file at `path`.
pub(super) fn read(path: &Path) -> Result<WorkloadKinds, FileError> {
    let bytes = std::fs::read(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    super::parse(&bytes).map_err(|problem| FileError::Invalid {
        path: path.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, content: Option<&str>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "draas-capabilities-file-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        path
    }

    #[test]
    fn a_file_is_read_or_refused_naming_it_and_the_problem() {
        let good = scratch(
            "kinds.json",
            Some(
                r#"{"workload": "drasi-server 0.2.2", "sources": ["http", "mock"], "reactions": ["log"]}"#,
            ),
        );
        let kinds = read(&good).unwrap();
        assert_eq!(kinds.workload, "drasi-server 0.2.2");
        assert_eq!(kinds.sources, ["http", "mock"]);

        let missing = scratch("absent.json", None);
        let error = read(&missing).unwrap_err().to_string();
        assert!(
            error.contains(&missing.display().to_string()) && error.contains("cannot read it"),
            "{error}"
        );

        let invalid = scratch(
            "bad.json",
            Some(r#"{"workload": "x", "sources": ["http"]}"#),
        );
        let error = read(&invalid).unwrap_err().to_string();
        assert!(
            error.contains(&invalid.display().to_string())
                && error.contains("`reactions` is missing")
                && error.contains("draas-runtime capabilities"),
            "{error}"
        );
    }
}

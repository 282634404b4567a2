//! Where the API-contract tools live: the virtualenv of `tests/schemathesis/setup.sh`.
//! `DRAAS_SCHEMATHESIS` (the path of its `schemathesis`) wins; then the workspace's
//! `target/schemathesis-venv`; then `schemathesis` on `PATH`. Under CI (`CI=true`) a missing
//! tool is a failure, never a skip.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The `schemathesis` executable, if one can be found.
pub fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DRAAS_SCHEMATHESIS") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace");
    let default = workspace.join("target/schemathesis-venv/bin/schemathesis");
    if default.is_file() {
        return Some(default);
    }
    on_path("schemathesis")
}

/// The Python of the virtualenv (the one beside `schemathesis`), else `python3` on `PATH`.
pub fn python() -> Option<PathBuf> {
    schemathesis()
        .and_then(|s| s.parent().map(|dir| dir.join("python")))
        .filter(|p| p.is_file())
        .or_else(|| on_path("python3"))
}

/// Whether this run is CI's, where every tool must be there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What to say when a tool is missing.
pub const INSTALL: &str = "install the API-contract tools with `bash tests/schemathesis/setup.sh` \
     (a virtualenv in target/schemathesis-venv), or point DRAAS_SCHEMATHESIS at a \
     schemathesis executable";

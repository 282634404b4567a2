//! Adoption: after a worker restart, find the instance processes an earlier worker on this
//! node left running (pid file + liveness + the command line naming the instance's config),
//! so they are neither launched twice nor reported lost.

use std::path::Path;

use draas_protocol::drasi::{DrasiConfig, Endpoint};
use uuid::Uuid;

use super::child::alive;
use super::{CONFIG_FILE, PID_FILE};

/// A live instance process found on disk.
pub(super) struct Found {
    pub id: Uuid,
    pub pid: u32,
    pub endpoints: Vec<Endpoint>,
}

/// Scans `root` (`<data dir>/instances`) for live instance processes.
pub(super) fn scan(root: &Path, host: &str) -> Vec<Found> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter_map(|dir| inspect(&dir.path(), host))
        .collect()
}

/// The live process of the instance whose directory is `dir`, if one runs.
pub(super) fn inspect(dir: &Path, host: &str) -> Option<Found> {
    let id: Uuid = dir.file_name()?.to_str()?.parse().ok()?;
    let config_path = dir.join(CONFIG_FILE);
    let needle = config_path.to_str()?.to_owned();
    let recorded: Option<u32> = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    // The pid must still be our instance: alive, and started with this instance's config (a
    // recycled pid belongs to some other program). A worker that died between spawning and
    // writing the pid file leaves no pid file: then the process table is searched.
    let pid = recorded
        .filter(|pid| runs(*pid, &needle))
        .or_else(|| search(&needle))?;
    std::fs::write(dir.join(PID_FILE), pid.to_string()).ok()?;
    let config = DrasiConfig::from_yaml_str(&std::fs::read_to_string(&config_path).ok()?).ok()?;
    // Every listener was assigned when it started.
    let endpoints = config.assigned_endpoints(host)?;
    Some(Found { id, pid, endpoints })
}

/// Whether `pid` is alive and its command line names `config`.
fn runs(pid: u32, config: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    alive(pid)
        && cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == config.as_bytes())
}

/// A live process started with `config`, found in /proc.
fn search(config: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| runs(*pid, config))
}

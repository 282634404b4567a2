//! Tracked instance processes: the pid, how to learn that it exited, and the endpoints it
//! serves. A process this worker spawned is reaped with `wait`; one adopted from an earlier
//! worker on this node (not our child any more) is watched by polling `kill(pid, 0)`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use draas_protocol::drasi::Endpoint;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::sync::watch;
use uuid::Uuid;

use super::{PID_FILE, logs};
use crate::driver::{DriverEvent, Exit};

/// How a process ended: exit code and signal, when known.
pub(super) type ExitState = Option<(Option<i32>, Option<i32>)>;

/// One instance process this driver knows about.
#[derive(Clone)]
pub(super) struct Tracked {
    pub pid: u32,
    /// Set while an exit is expected (stopping, or not yet ready): the monitor is not told.
    pub expecting_exit: Arc<AtomicBool>,
    pub exited: watch::Receiver<ExitState>,
    pub endpoints: Vec<Endpoint>,
}

impl Tracked {
    pub fn api_url(&self) -> String {
        self.endpoints
            .iter()
            .find(|e| e.name == "api")
            .map(|e| e.url.clone())
            .unwrap_or_default()
    }
}

/// The table of tracked processes, shared with the reaper tasks.
pub(super) type Table = Arc<Mutex<std::collections::HashMap<Uuid, Tracked>>>;

/// Where reapers report.
#[derive(Clone)]
pub(super) struct Reaping {
    pub table: Table,
    pub exits: crate::driver::Events,
    pub root: PathBuf,
}

impl Reaping {
    /// Registers a tracked process and returns the sender its reaper resolves.
    pub fn track(
        &self,
        id: Uuid,
        pid: u32,
        endpoints: Vec<Endpoint>,
        expecting_exit: bool,
    ) -> (Tracked, watch::Sender<ExitState>) {
        let (tx, rx) = watch::channel(None);
        let tracked = Tracked {
            pid,
            expecting_exit: Arc::new(AtomicBool::new(expecting_exit)),
            exited: rx,
            endpoints,
        };
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tracked.clone());
        (tracked, tx)
    }

    /// Reaps a child this worker spawned.
    pub fn reap_child(
        &self,
        id: Uuid,
        tracked: &Tracked,
        mut child: tokio::process::Child,
        tx: watch::Sender<ExitState>,
    ) {
        let this = self.clone();
        let tracked = tracked.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let state = match &status {
                Ok(s) => (s.code(), std::os::unix::process::ExitStatusExt::signal(s)),
                Err(_) => (None, None),
            };
            this.exited(id, &tracked, tx, state).await;
        });
    }

    /// Watches a process adopted from an earlier worker; its exit status cannot be known.
    pub fn watch_adopted(&self, id: Uuid, tracked: &Tracked, tx: watch::Sender<ExitState>) {
        let this = self.clone();
        let tracked = tracked.clone();
        tokio::spawn(async move {
            while alive(tracked.pid) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            this.exited(id, &tracked, tx, (None, None)).await;
        });
    }

    async fn exited(
        &self,
        id: Uuid,
        tracked: &Tracked,
        tx: watch::Sender<ExitState>,
        (code, signal): (Option<i32>, Option<i32>),
    ) {
        let _ = tx.send(Some((code, signal)));
        {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            if table.get(&id).is_some_and(|t| t.pid == tracked.pid) {
                table.remove(&id);
            }
        }
        let dir = self.root.join(id.to_string());
        let _ = std::fs::remove_file(dir.join(PID_FILE));
        if !tracked.expecting_exit.load(Ordering::SeqCst) {
            let log_tail = logs::tail(&dir, 20).unwrap_or_default();
            let _ = self.exits.send(DriverEvent::Exited(Exit {
                instance: id,
                pid: Some(tracked.pid),
                code,
                signal,
                log_tail,
                reason: None,
                seen_at: None,
                still_running: false,
            }));
        }
    }
}

/// Whether a process with this pid exists and has not ended. A zombie (ended, not yet reaped:
/// an orphan whose new parent does not reap, as PID 1 of some containers) counts as ended.
pub(super) fn alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| kill(Pid::from_raw(pid), None).is_ok()) && !zombie(pid)
}

/// Whether `/proc/<pid>/stat` says the process is a zombie (state `Z`) or dead (`X`).
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.get(stat.rfind(')')? + 1..)?;
            after
                .split_whitespace()
                .next()
                .map(|s| s == "Z" || s == "X")
        })
        .unwrap_or(false)
}

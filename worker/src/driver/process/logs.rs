//! Per-instance log files. An instance's stdout and stderr are one file, `instance.log`,
//! opened for appending and handed to the process itself: its output never passes through
//! the worker, so a worker that dies (or is slow) neither loses lines nor blocks or kills the
//! instance, and adopted instances keep their logs.
//!
//! The size is bounded by copy-and-truncate rotation (as logrotate's `copytruncate`): past the
//! cap the file is copied to `instance.log.1` and truncated; the process's appends continue at
//! the new end. Lines written between the copy and the truncation are lost, a window of
//! microseconds once per rotation. Rotation runs in the background for every tracked instance,
//! spawned and adopted alike.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::child::Table;

/// File name of an instance's current log.
pub const LOG_FILE: &str = "instance.log";
/// How often log sizes are checked.
const ROTATE_EVERY: Duration = Duration::from_secs(1);

/// Opens (creating) the log in `dir` for appending, for the instance's stdout and stderr.
pub fn open(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))
}

/// Rotates the log in `dir` when it is over `max_bytes`; returns whether it did.
pub fn rotate(dir: &Path, max_bytes: u64) -> std::io::Result<bool> {
    let path = dir.join(LOG_FILE);
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= max_bytes {
        return Ok(false);
    }
    std::fs::copy(&path, dir.join(format!("{LOG_FILE}.1")))?;
    OpenOptions::new().write(true).open(&path)?.set_len(0)?;
    Ok(true)
}

/// Checks every tracked instance's log once a second while the table lives.
pub(super) fn rotate_in_background(table: &Table, root: &Path, max_bytes: u64) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let table = std::sync::Arc::downgrade(table);
    let root: PathBuf = root.to_path_buf();
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(ROTATE_EVERY).await;
            let Some(table) = table.upgrade() else { return };
            let dirs: Vec<PathBuf> = table
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .map(|id| root.join(id.to_string()))
                .collect();
            drop(table);
            let _ = tokio::task::spawn_blocking(move || {
                for dir in dirs {
                    if let Err(error) = rotate(&dir, max_bytes) {
                        tracing::warn!(message = "log rotation failed", dir = %dir.display(), %error);
                    }
                }
            })
            .await;
        }
    });
}

/// The last `lines` lines of the log in `dir` (reads at most the final 256 KiB).
pub fn tail(dir: &Path, lines: usize) -> std::io::Result<String> {
    const WINDOW: u64 = 256 * 1024;
    let mut file = match File::open(dir.join(LOG_FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn an_appending_writer_continues_after_rotation() {
        let dir = std::env::temp_dir().join(format!("draas-logs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // The writer stands for the instance: its own append-mode descriptor.
        let mut writer = open(&dir).unwrap();
        for i in 0..30 {
            writeln!(writer, "line {i}").unwrap();
        }
        assert!(!rotate(&dir, 1000).unwrap(), "under the cap");
        assert!(rotate(&dir, 100).unwrap());
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(), 0);
        assert!(tail(&dir.clone(), 1).unwrap().is_empty());
        let old = std::fs::read_to_string(dir.join("instance.log.1")).unwrap();
        assert!(old.ends_with("line 29\n"), "{old}");
        writeln!(writer, "line 30").unwrap();
        assert_eq!(
            tail(&dir, 5).unwrap(),
            "line 30",
            "appends start at the new end"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

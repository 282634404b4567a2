//! Bounded per-instance log files: stdout and stderr are drained line by line into
//! `instance.log`, rotated to `instance.log.1` at a size cap, so a chatty instance can neither
//! block on a full pipe nor fill the disk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// File name of an instance's current log.
pub const LOG_FILE: &str = "instance.log";

/// A size-capped log file shared by the stdout and stderr drains.
pub struct LogSink {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<(File, u64)>,
    drains: tokio_util::task::TaskTracker,
}

impl LogSink {
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Arc<Self>> {
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Arc::new(LogSink {
            path,
            max_bytes,
            state: Mutex::new((file, size)),
            drains: Default::default(),
        }))
    }

    /// Waits until every drained stream has closed, so the log holds all the process wrote.
    pub async fn flushed(&self) {
        self.drains.close();
        self.drains.wait().await;
    }

    fn write_line(&self, line: &[u8]) {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if guard.1 + line.len() as u64 > self.max_bytes {
            let rotated = self.path.with_extension("log.1");
            let reopened = std::fs::rename(&self.path, &rotated).and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            });
            match reopened {
                Ok(file) => *guard = (file, 0),
                Err(error) => {
                    tracing::warn!(message = "log rotation failed", path = %self.path.display(), %error)
                }
            }
        }
        if guard.0.write_all(line).is_ok() {
            guard.1 += line.len() as u64;
        }
    }

    /// Copies `stream` into the log, line by line, until it closes.
    pub fn drain(self: &Arc<Self>, stream: impl AsyncRead + Unpin + Send + 'static) {
        let sink = Arc::clone(self);
        self.drains.spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::with_capacity(256);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => sink.write_line(&line),
                }
            }
        });
    }
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
    use super::*;

    #[test]
    fn rotates_at_cap_and_tails() {
        let dir = std::env::temp_dir().join(format!("draas-logs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let sink = LogSink::open(&dir, 100).unwrap();
        for i in 0..30 {
            sink.write_line(format!("line {i}\n").as_bytes());
        }
        let current = std::fs::metadata(dir.join(LOG_FILE)).unwrap().len();
        assert!(current <= 100, "current log is {current} bytes");
        assert!(dir.join("instance.log.1").exists());
        assert_eq!(tail(&dir, 2).unwrap(), "line 28\nline 29");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

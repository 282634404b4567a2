//! Which Redis a component uses, and the context file that makes `draas up`'s Redis findable.
//!
//! `draas up` writes `<data dir>/context.json` (its Redis URL, API URL, key prefix and pid,
//! readable by the owner only) and removes it when it stops. `draas ops`, `draas worker` and
//! `draas api` given no `--redis-url`/`REDIS_URL` read the context of `--context` (or
//! `DRAAS_CONTEXT`), else of `$DRAAS_DATA_DIR`, else of `.draas` (the default data directory
//! of `draas up`), and only then fall back to `redis://127.0.0.1:6379`. They log which URL
//! they use and where it came from, and check it answers within a few seconds before
//! starting, so an unreachable Redis is one line of error, never a minute of retries.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use draas_bus::connect;
use serde::{Deserialize, Serialize};

use crate::Common;

/// The context file's name inside a data directory.
pub const FILE: &str = "context.json";
/// The data directory `draas up` uses unless told otherwise.
pub const DEFAULT_DIR: &str = ".draas";
/// The Redis used when nothing else names one.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "draas";
/// How long a starting program waits for Redis to answer.
const CONNECT_BUDGET: Duration = Duration::from_secs(4);

/// What a running `draas up` tells the other commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub redis_url: String,
    pub api_url: String,
    pub prefix: String,
    /// The `draas up` process; a context whose process is gone is stale.
    pub pid: u32,
}

#[derive(Debug)]
pub enum ContextError {
    Missing(PathBuf),
    Stale {
        path: PathBuf,
        pid: u32,
    },
    Busy {
        path: PathBuf,
        pid: u32,
    },
    WorkerDirInUse {
        path: PathBuf,
        pid: u32,
    },
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextError::Missing(path) => write!(
                f,
                "no `draas up` context at {} (start `draas up` there, or pass --redis-url)",
                path.display()
            ),
            ContextError::Stale { path, pid } => write!(
                f,
                "the `draas up` that wrote {} (pid {pid}) is no longer running",
                path.display()
            ),
            ContextError::Busy { path, pid } => write!(
                f,
                "another `draas up` (pid {pid}) is running on this data directory ({})",
                path.display()
            ),
            ContextError::WorkerDirInUse { path, pid } => write!(
                f,
                "this data directory is the worker's of the running `draas up` (pid {pid}, {}); \
                 give this worker its own with --data-dir",
                path.display()
            ),
            ContextError::Read { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
            ContextError::Parse { path, source } => {
                write!(
                    f,
                    "{} is not a `draas up` context: {source}",
                    path.display()
                )
            }
            ContextError::Write { path, source } => {
                write!(f, "writing {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ContextError {}

/// Redis did not answer within the start-up budget.
#[derive(Debug)]
pub struct Unreachable {
    /// Redacted: never carries a password.
    pub url: String,
    pub reason: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot connect to Redis at {}: {}",
            self.url, self.reason
        )
    }
}

impl std::error::Error for Unreachable {}

impl Context {
    /// Writes the context into `data_dir` (owner-only: the URL may carry a password), refusing
    /// when another live `draas up` owns that directory. Returns the file's path.
    pub fn write(&self, data_dir: &Path) -> Result<PathBuf, ContextError> {
        let path = data_dir.join(FILE);
        check_free(data_dir, self.pid)?;
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        written.map_err(|source| ContextError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Removes the context in `data_dir` if this process wrote it.
    pub fn remove(data_dir: &Path) {
        let path = data_dir.join(FILE);
        if let Ok(Some(context)) = read(&path)
            && context.pid == std::process::id()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Refuses a data directory whose context names a live process other than `pid`: two
/// `draas up` on one directory would share a node identity and a Redis data directory.
pub fn check_free(data_dir: &Path, pid: u32) -> Result<(), ContextError> {
    let path = data_dir.join(FILE);
    match read(&path)? {
        Some(other) if other.pid != pid && alive(other.pid) => Err(ContextError::Busy {
            path,
            pid: other.pid,
        }),
        _ => Ok(()),
    }
}

/// Refuses a worker data directory that a live `draas up` uses for its own worker (its
/// `worker/` subdirectory): a second worker there would share its node identity.
pub fn check_not_ups_worker(worker_dir: &Path) -> Result<(), ContextError> {
    let Some(up_dir) = std::fs::canonicalize(worker_dir)
        .ok()
        .filter(|dir| dir.ends_with("worker"))
        .and_then(|dir| dir.parent().map(Path::to_owned))
    else {
        return Ok(());
    };
    match check_free(&up_dir, std::process::id()) {
        Err(ContextError::Busy { path, pid }) => Err(ContextError::WorkerDirInUse { path, pid }),
        other => other,
    }
}

/// The context at `path`, or `None` when there is no file.
fn read(path: &Path) -> Result<Option<Context>, ContextError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ContextError::Parse {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ContextError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `--context` may name a data directory or the file itself.
fn context_file(given: &Path) -> PathBuf {
    if given.is_dir() {
        given.join(FILE)
    } else {
        given.to_owned()
    }
}

impl Common {
    /// Settles the Redis URL and key prefix (flag or environment, else a live `draas up`
    /// context, else the defaults), logs the choice in one line, then checks that Redis
    /// answers within a few seconds.
    pub async fn resolve(&mut self) -> anyhow::Result<()> {
        let (context, from) = self.find_context()?;
        let source = match (&self.redis_url_arg, &context) {
            (Some(url), _) => {
                self.redis_url = url.clone();
                "--redis-url or REDIS_URL".to_owned()
            }
            (None, Some(context)) => {
                self.redis_url = context.redis_url.clone();
                format!("the `draas up` context {}", from.display())
            }
            (None, None) => {
                self.redis_url = DEFAULT_REDIS.to_owned();
                format!(
                    "the default; no --redis-url, REDIS_URL or live {}",
                    from.display()
                )
            }
        };
        self.prefix = match (&self.prefix_arg, &context) {
            (Some(prefix), _) => prefix.clone(),
            (None, Some(context)) => context.prefix.clone(),
            (None, None) => DEFAULT_PREFIX.to_owned(),
        };
        tracing::info!(
            message = "using redis",
            url = %connect::redacted(&self.redis_url),
            prefix = %self.prefix,
            from = %source
        );
        reachable(self.redis()).await?;
        Ok(())
    }

    /// The live context this command should follow, and the file it was looked for in. An
    /// explicit `--context` must exist and be live (a `--redis-url` given as well still names
    /// the Redis); the implicit ones are skipped when missing or stale, and not read at all
    /// when a Redis URL is given.
    fn find_context(&self) -> Result<(Option<Context>, PathBuf), ContextError> {
        if let Some(given) = &self.context {
            let path = context_file(given);
            return match read(&path)? {
                None => Err(ContextError::Missing(path)),
                Some(c) if !alive(c.pid) => Err(ContextError::Stale { path, pid: c.pid }),
                Some(c) => Ok((Some(c), path)),
            };
        }
        let dir = std::env::var_os("DRAAS_DATA_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from);
        let path = dir.join(FILE);
        if self.redis_url_arg.is_some() {
            // Another Redis than up's: its prefix is no guide either.
            return Ok((None, path));
        }
        match read(&path) {
            Ok(Some(c)) if alive(c.pid) => Ok((Some(c), path)),
            Ok(Some(c)) => {
                tracing::info!(message = "ignoring a stale context", path = %path.display(), pid = c.pid);
                Ok((None, path))
            }
            Ok(None) => Ok((None, path)),
            Err(error) => {
                tracing::warn!(message = "ignoring an unreadable context", %error);
                Ok((None, path))
            }
        }
    }
}

/// Checks that `url` answers PING within the start-up budget.
pub async fn reachable(url: impl Into<connect::RedisTarget>) -> Result<(), Unreachable> {
    let url = url.into();
    connect::check(&url, CONNECT_BUDGET)
        .await
        .map_err(|error| Unreachable {
            url: connect::redacted(&url),
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("draas-ctx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn context(pid: u32) -> Context {
        Context {
            redis_url: "redis://:pw@127.0.0.1:1234".into(),
            api_url: "http://127.0.0.1:8080".into(),
            prefix: "p".into(),
            pid,
        }
    }

    #[test]
    fn a_context_round_trips_privately_and_is_removed_by_its_writer() {
        let dir = scratch();
        let mine = context(std::process::id());
        let path = mine.write(&dir).unwrap();
        assert_eq!(read(&path).unwrap(), Some(mine));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        Context::remove(&dir);
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_live_context_of_another_process_is_not_overwritten() {
        let dir = scratch();
        // pid 1 is always alive.
        context(1).write(&dir).unwrap();
        let error = context(std::process::id()).write(&dir).unwrap_err();
        assert!(
            matches!(error, ContextError::Busy { pid: 1, .. }),
            "{error}"
        );
        // Nor removed by a process that did not write it.
        Context::remove(&dir);
        assert!(dir.join(FILE).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

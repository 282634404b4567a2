//! The process driver: each instance is a child process (`draas-runtime` or any
//! drasi-server compatible binary) in its own working directory under
//! `<data dir>/instances/<id>/`, with its own ports, config file, log and pid file.
//!
//! Stop is SIGINT, then SIGKILL after the grace period (drasi-server exits at once on SIGTERM
//! without stopping anything). Children run in their own process group, so a Ctrl-C aimed at
//! the worker's terminal does not reach them.

mod logs;
mod ports;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use draas_bus::clock::now;
use draas_protocol::{Instance, RuntimeInfo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::{Driver, DriverError, Exit};
use crate::config::ProcessConfig;
use logs::LogSink;

/// Name of the rendered config inside an instance's working directory.
pub const CONFIG_FILE: &str = "config.yaml";
/// Name of the pid file inside an instance's working directory.
pub const PID_FILE: &str = "instance.pid";

/// How a tracked child ended: exit code or signal.
type ExitState = Option<(Option<i32>, Option<i32>)>;

struct Child {
    pid: u32,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    exited: watch::Receiver<ExitState>,
}

/// Runs instances as local child processes.
pub struct ProcessDriver {
    config: ProcessConfig,
    root: PathBuf,
    children: Arc<Mutex<HashMap<Uuid, Child>>>,
    ports: ports::PortAllocator,
    exits: mpsc::UnboundedSender<Exit>,
    http: reqwest::Client,
}

impl ProcessDriver {
    /// A driver keeping instances under `<data_dir>/instances`, reporting unexpected exits
    /// on `exits`.
    pub fn new(
        config: ProcessConfig,
        data_dir: &std::path::Path,
        exits: mpsc::UnboundedSender<Exit>,
    ) -> Self {
        ProcessDriver {
            config,
            root: data_dir.join("instances"),
            children: Arc::default(),
            ports: ports::PortAllocator::default(),
            exits,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.root.join(id.to_string())
    }

    async fn wait_ready(
        &self,
        url: &str,
        exited: &mut watch::Receiver<ExitState>,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.config.readiness_timeout;
        let health = format!("{url}/health");
        loop {
            if let Some((code, signal)) = *exited.borrow() {
                return Err(format!(
                    "process exited before it was ready (code {code:?}, signal {signal:?})"
                ));
            }
            if let Ok(resp) = self.http.get(&health).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "no 200 from {health} within {:?}",
                    self.config.readiness_timeout
                ));
            }
            // Poll again soon, or as soon as the process exits.
            let _ = tokio::time::timeout(Duration::from_millis(50), exited.changed()).await;
        }
    }

    fn spawn_reaper(
        &self,
        id: Uuid,
        mut child: tokio::process::Child,
        stopping: Arc<std::sync::atomic::AtomicBool>,
        tx: watch::Sender<ExitState>,
    ) {
        let children = Arc::clone(&self.children);
        let exits = self.exits.clone();
        let dir = self.dir(id);
        let pid = child.id();
        tokio::spawn(async move {
            let status = child.wait().await;
            let (code, signal) = match &status {
                Ok(s) => (s.code(), std::os::unix::process::ExitStatusExt::signal(s)),
                Err(_) => (None, None),
            };
            let _ = tx.send(Some((code, signal)));
            {
                let mut map = children.lock().unwrap_or_else(|p| p.into_inner());
                if map.get(&id).map(|c| Some(c.pid)) == Some(pid) {
                    map.remove(&id);
                }
            }
            let _ = std::fs::remove_file(dir.join(PID_FILE));
            if !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                let log_tail = logs::tail(&dir, 20).unwrap_or_default();
                let _ = exits.send(Exit {
                    instance: id,
                    pid,
                    code,
                    signal,
                    log_tail,
                });
            }
        });
    }

    fn signal(pid: u32, signal: Signal) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

impl Driver for ProcessDriver {
    async fn start(&self, instance: &Instance) -> Result<RuntimeInfo, DriverError> {
        let id = instance.id;
        if let Some(pid) = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|c| c.pid)
        {
            return Err(DriverError::NotReady {
                reason: format!("a process (pid {pid}) already runs this instance"),
                log_tail: String::new(),
            });
        }
        let dir = self.dir(id);
        tokio::fs::create_dir_all(&dir).await?;
        let mut config = instance.spec.config.clone();
        let endpoints = config.assign_ports(&self.config.host, &mut || {
            self.ports.allocate(&self.config.host)
        })?;
        let api = endpoints
            .iter()
            .find(|e| e.name == "api")
            .map(|e| e.url.clone())
            .unwrap_or_default();
        let config_path = dir.join(CONFIG_FILE);
        tokio::fs::write(&config_path, config.to_yaml()).await?;

        let sink = LogSink::open(&dir, self.config.log_max_bytes)?;
        let mut child = tokio::process::Command::new(&self.config.executable)
            .arg("--config")
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| DriverError::Launch {
                executable: self.config.executable.display().to_string(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        if let Some(out) = child.stdout.take() {
            sink.drain(out);
        }
        if let Some(err) = child.stderr.take() {
            sink.drain(err);
        }
        tokio::fs::write(dir.join(PID_FILE), pid.to_string()).await?;
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, mut exited) = watch::channel(None);
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Child {
                    pid,
                    stopping: Arc::clone(&stopping),
                    exited: exited.clone(),
                },
            );
        // While not ready, an exit is the start's failure, not the monitor's news.
        stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        self.spawn_reaper(id, child, Arc::clone(&stopping), tx);

        if let Err(reason) = self.wait_ready(&api, &mut exited).await {
            let _ = self.stop(id).await;
            let log_tail = logs::tail(&dir, 20).unwrap_or_default();
            return Err(DriverError::NotReady { reason, log_tail });
        }
        stopping.store(false, std::sync::atomic::Ordering::SeqCst);
        if exited.borrow().is_some() {
            let log_tail = logs::tail(&dir, 20).unwrap_or_default();
            return Err(DriverError::NotReady {
                reason: "process exited right after it became ready".into(),
                log_tail,
            });
        }
        let now = now();
        Ok(RuntimeInfo {
            pid: Some(pid),
            endpoint: Some(api),
            endpoints,
            started_at: Some(now),
            last_health_at: Some(now),
            ..RuntimeInfo::default()
        })
    }

    async fn stop(&self, id: Uuid) -> Result<Option<i32>, DriverError> {
        let tracked = {
            let map = self.children.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&id)
                .map(|c| (c.pid, Arc::clone(&c.stopping), c.exited.clone()))
        };
        let Some((pid, stopping, mut exited)) = tracked else {
            return Ok(None);
        };
        stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        Self::signal(pid, Signal::SIGINT);
        let graceful =
            tokio::time::timeout(self.config.stop_grace, exited.wait_for(Option::is_some))
                .await
                .is_ok();
        if !graceful {
            tracing::warn!(message = "instance ignored SIGINT; killing", instance = %id, pid);
            Self::signal(pid, Signal::SIGKILL);
            let _ = exited.wait_for(Option::is_some).await;
        }
        let code = (*exited.borrow()).and_then(|(code, signal)| code.or(signal.map(|s| 128 + s)));
        Ok(code)
    }

    async fn remove(&self, id: Uuid) -> Result<(), DriverError> {
        self.stop(id).await?;
        match tokio::fs::remove_dir_all(self.dir(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn logs(&self, id: Uuid, lines: usize) -> Result<String, DriverError> {
        let dir = self.dir(id);
        Ok(tokio::task::spawn_blocking(move || logs::tail(&dir, lines))
            .await
            .map_err(std::io::Error::other)??)
    }

    async fn stop_all(&self) {
        let ids: Vec<Uuid> = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        futures::future::join_all(ids.into_iter().map(|id| self.stop(id))).await;
    }
}

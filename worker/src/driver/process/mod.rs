//! The process driver: each instance is a child process (`draas-runtime` or any
//! drasi-server compatible binary) in its own working directory under
//! `<data dir>/instances/<id>/`, with its own ports, config file, log and pid file.
//!
//! - Start is idempotent: if a process already runs the instance (launched by an interrupted
//!   earlier attempt, or adopted from an earlier worker on this node), it is waited for, not
//!   launched again.
//! - Stop is SIGINT, then SIGKILL after the grace period (drasi-server exits at once on SIGTERM
//!   without stopping anything).
//! - Children run in their own process group, so a Ctrl-C aimed at the worker's terminal does
//!   not reach them, and they outlive a crashed worker until the next one adopts them.

mod adopt;
mod child;
mod logs;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use draas_bus::clock::now;
use draas_protocol::drasi::DrasiConfig;
use draas_protocol::{EgressPolicy, Instance, RuntimeInfo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;
use uuid::Uuid;

use super::ready::{self, Readiness};
use super::{Driver, DriverError, launch};
use crate::config::ProcessConfig;
use child::{ExitState, Reaping, Tracked};

/// Name of the rendered config inside an instance's working directory.
pub const CONFIG_FILE: &str = "config.yaml";
/// Name of the pid file inside an instance's working directory.
pub const PID_FILE: &str = "instance.pid";

/// Runs instances as local child processes.
pub struct ProcessDriver {
    config: ProcessConfig,
    reaping: Reaping,
    ports: super::ports::PortAllocator,
    http: reqwest::Client,
}

impl ProcessDriver {
    /// A driver keeping instances under `<data_dir>/instances`, reporting unexpected exits
    /// on `exits`.
    pub fn new(config: ProcessConfig, data_dir: &Path, exits: super::Events) -> Self {
        let reaping = Reaping {
            table: Default::default(),
            exits,
            root: data_dir.join("instances"),
        };
        logs::rotate_in_background(&reaping.table, &reaping.root, config.log_max_bytes);
        ProcessDriver {
            config,
            reaping,
            ports: super::ports::PortAllocator::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    fn adopt_found(&self) -> Vec<Uuid> {
        adopt::scan(&self.reaping.root, &self.config.host)
            .into_iter()
            .map(|found| {
                tracing::info!(message = "adopted a running instance", instance = %found.id, pid = found.pid);
                let (tracked, tx) = self.reaping.track(found.id, found.pid, found.endpoints, false);
                self.reaping.watch_adopted(found.id, &tracked, tx);
                found.id
            })
            .collect()
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.reaping.root.join(id.to_string())
    }

    fn tracked(&self, id: Uuid) -> Option<Tracked> {
        self.reaping
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    #[tracing::instrument(name = "readiness", skip_all)]
    async fn wait_ready(
        &self,
        url: &str,
        config: &DrasiConfig,
        exited: &mut watch::Receiver<ExitState>,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.config.readiness_timeout;
        let mut gap = ready::FIRST_PROBE_GAP;
        loop {
            if let Some((code, signal)) = *exited.borrow() {
                return Err(format!(
                    "process exited before it was ready (code {code:?}, signal {signal:?})"
                ));
            }
            let waiting = match ready::check(&self.http, url, config).await {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(reason) => return Err(reason),
                Readiness::Waiting(reason) => reason,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "not ready within {:?}: {waiting}",
                    self.config.readiness_timeout
                ));
            }
            // Poll again soon (sooner while the start is young), or as soon as it exits.
            let _ = tokio::time::timeout(gap, exited.changed()).await;
            gap = (gap * 2).min(ready::MAX_PROBE_GAP);
        }
    }

    #[tracing::instrument(name = "process.spawn", skip_all)]
    async fn launch(&self, instance: &Instance) -> Result<Tracked, DriverError> {
        let id = instance.id;
        let dir = self.dir(id);
        tokio::fs::create_dir_all(&dir).await?;
        // The instance's log is also its liveness lock: the launched process inherits the
        // locked file as its stdout and stderr, so the lock is held for exactly as long as a
        // copy of the instance (or a fork of one not yet exec'd) lives, whatever happens to
        // the worker that launched it. A lock held by someone else means a copy runs: adopt
        // it, never launch a second.
        let log = logs::open(&dir)?;
        if let Some(running) = self.lock_or_adopt(&log, id).await? {
            return Ok(running);
        }
        let host = &self.config.host;
        let mut config = instance.spec.config.clone();
        let endpoints = config.assign_ports(host, &mut || self.ports.allocate(host))?;
        let yaml = launch::render(instance, &mut config, &self.config.egress)?;
        let proxy = match self.config.egress {
            EgressPolicy::Allow => None,
            _ => Some(format!("{host}:{}", self.ports.allocate(host)?)),
        };
        let config_path = dir.join(CONFIG_FILE);
        tokio::fs::write(&config_path, yaml).await?;
        // The instance writes its log file itself: nothing of its output depends on this
        // worker staying alive.
        let mut command = tokio::process::Command::new(&self.config.executable);
        command
            .arg("--config")
            .arg(&config_path)
            .args(&self.config.runtime_args)
            .current_dir(&dir)
            .env_clear()
            .envs(self.passed_env())
            .envs(launch::environment(
                &instance.spec.env,
                &self.config.egress,
                proxy.as_deref(),
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = command.spawn().map_err(|source| DriverError::Launch {
            executable: self.config.executable.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        tokio::fs::write(dir.join(PID_FILE), pid.to_string()).await?;
        // Until it is ready, an exit is the start's failure, not the monitor's news.
        let (tracked, tx) = self.reaping.track(id, pid, endpoints, true);
        self.reaping.reap_child(id, &tracked, child, tx);
        Ok(tracked)
    }

    /// Takes the instance's log lock (`None`: no copy lives, launch one), or, while a copy
    /// this worker does not track holds it (launched by a worker that died, possibly not yet
    /// exec'd), waits (bounded) until that copy shows in the process table and watches it as
    /// adopted. A copy that exits meanwhile frees the lock, and the launch goes ahead.
    async fn lock_or_adopt(
        &self,
        log: &std::fs::File,
        id: Uuid,
    ) -> Result<Option<Tracked>, DriverError> {
        let dir = self.dir(id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match log.try_lock() {
                Ok(()) => return Ok(None),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
            let (d, host) = (dir.clone(), self.config.host.clone());
            let found = tokio::task::spawn_blocking(move || adopt::inspect(&d, &host))
                .await
                .map_err(std::io::Error::other)?;
            if let Some(found) = found {
                tracing::info!(message = "adopted a running copy instead of launching another", instance = %id, pid = found.pid);
                let (tracked, tx) = self.reaping.track(id, found.pid, found.endpoints, true);
                self.reaping.watch_adopted(id, &tracked, tx);
                return Ok(Some(tracked));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Config(format!(
                    "a process of instance {id} holds its log lock but cannot be found; \
                     not launching a second copy"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The variables of the worker's environment the operator lets through.
    fn passed_env(&self) -> Vec<(String, std::ffi::OsString)> {
        self.config
            .pass_env
            .iter()
            .filter_map(|name| Some((name.clone(), std::env::var_os(name)?)))
            .collect()
    }

    fn signal(pid: u32, signal: Signal) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

impl Driver for ProcessDriver {
    async fn adopt(&self) -> Vec<Uuid> {
        self.adopt_found()
    }

    fn node_bound(&self) -> bool {
        true
    }

    async fn start(&self, instance: &Instance) -> Result<RuntimeInfo, DriverError> {
        let id = instance.id;
        let mut tracked = match self.tracked(id) {
            Some(running) => {
                tracing::info!(message = "instance process already running; not launching again", instance = %id, pid = running.pid);
                running
            }
            None => self.launch(instance).await?,
        };
        let api = tracked.api_url();
        tracked.expecting_exit.store(true, Ordering::SeqCst);
        let ready = self
            .wait_ready(&api, &instance.spec.config, &mut tracked.exited)
            .await;
        tracked.expecting_exit.store(false, Ordering::SeqCst);
        let ready = ready.and_then(|()| match *tracked.exited.borrow() {
            Some(_) => Err("process exited right after it became ready".to_owned()),
            None => Ok(()),
        });
        if let Err(reason) = ready {
            let _ = self.stop(id).await;
            let log_tail = logs::tail(&self.dir(id), 20).unwrap_or_default();
            return Err(DriverError::NotReady { reason, log_tail });
        }
        let now = now();
        Ok(RuntimeInfo {
            pid: Some(tracked.pid),
            endpoint: Some(api),
            endpoints: tracked.endpoints.clone(),
            started_at: Some(now),
            last_health_at: Some(now),
            ..RuntimeInfo::default()
        })
    }

    async fn stop(&self, id: Uuid) -> Result<Option<i32>, DriverError> {
        let Some(mut tracked) = self.tracked(id) else {
            return Ok(None);
        };
        tracked.expecting_exit.store(true, Ordering::SeqCst);
        Self::signal(tracked.pid, Signal::SIGINT);
        let graceful = tokio::time::timeout(
            self.config.stop_grace,
            tracked.exited.wait_for(Option::is_some),
        )
        .await
        .is_ok();
        if !graceful {
            tracing::warn!(message = "instance ignored SIGINT; killing", instance = %id, pid = tracked.pid);
            Self::signal(tracked.pid, Signal::SIGKILL);
            let killed = tokio::time::timeout(
                Duration::from_secs(10),
                tracked.exited.wait_for(Option::is_some),
            )
            .await;
            if killed.is_err() {
                return Err(DriverError::Config(format!(
                    "process {} of instance {id} did not end within 10 s of SIGKILL",
                    tracked.pid
                )));
            }
        }
        let code =
            (*tracked.exited.borrow()).and_then(|(code, signal)| code.or(signal.map(|s| 128 + s)));
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
            .reaping
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        futures::future::join_all(ids.into_iter().map(|id| self.stop(id))).await;
    }
}

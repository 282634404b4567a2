//! The docker driver: one container per instance on a Docker daemon, through bollard
//! (`DOCKER_HOST` or the default socket, API version negotiated).
//!
//! - Containers are named `draas-<id>`, labelled with the instance id, its name, its
//!   endpoints and `managed-by`; any worker on the same daemon can find and adopt them.
//! - The rendered config is bind-mounted read-only at `/app/config/server.yaml`; each instance
//!   gets its own data volume at `/app/data`.
//! - Stop is the container's stop signal, SIGINT, with a grace period, then SIGKILL.
//! - Start is idempotent: a running container for the instance is adopted, not duplicated.
//! - [`watch`] follows the daemon's event stream (die, oom, destroy) and a periodic survey, and
//!   reports exits nobody asked for.

mod spec;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use draas_bus::clock::now;
use draas_protocol::drasi::{DrasiConfig, Endpoint};
use draas_protocol::{EgressPolicy, Instance, RuntimeInfo};
use futures::StreamExt;
use uuid::Uuid;

use super::ready::{self, Readiness};
use super::{Driver, DriverError, DriverEvent, Events, launch};
use crate::config::{DockerConfig, DockerNetwork, ProcessConfig};
pub use spec::{LABEL_ID, LABEL_MANAGED, container_name, volume_name};

/// Runs instances as containers.
pub struct DockerDriver {
    docker: Docker,
    config: DockerConfig,
    timing: ProcessConfig,
    root: PathBuf,
    ports: super::ports::PortAllocator,
    http: reqwest::Client,
    events: Events,
    /// This deployment's name (the key prefix), the value of the managed-by label.
    deployment: String,
    /// Containers this worker is removing on purpose (their destroy is no news).
    removing: Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
}

fn docker_error(e: DockerError) -> DriverError {
    DriverError::Docker(e.to_string())
}

fn not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerDriver {
    /// Connects to the daemon (`DOCKER_HOST` or the default socket), negotiates the API
    /// version and starts watching its events.
    pub async fn connect(
        deployment: &str,
        config: DockerConfig,
        timing: ProcessConfig,
        data_dir: &Path,
        events: Events,
    ) -> Result<Self, DriverError> {
        let docker = Docker::connect_with_defaults().map_err(docker_error)?;
        let docker = docker.negotiate_version().await.map_err(docker_error)?;
        docker
            .ping()
            .await
            .map_err(|e| DriverError::Docker(format!("the Docker daemon does not answer: {e}")))?;
        let driver = DockerDriver {
            docker,
            config,
            timing,
            root: data_dir.join("instances"),
            ports: Default::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            events,
            removing: Arc::default(),
            deployment: deployment.to_owned(),
        };
        watch::spawn(
            driver.docker.clone(),
            deployment,
            driver.events.clone(),
            Arc::clone(&driver.removing),
        );
        Ok(driver)
    }

    /// The daemon's client (also used to ask the image what it runs: `capabilities`).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The driver's settings: the image instances that name none run, and more.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// This deployment's name (the key prefix), the value of the managed-by label.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    fn note(&self, instance: Uuid, message: String) {
        let _ = self.events.send(DriverEvent::Note { instance, message });
    }

    /// Makes sure `image` is present, pulling it (with progress events) when allowed.
    #[tracing::instrument(name = "image.check", skip_all)]
    async fn ensure_image(&self, instance: Uuid, image: &str) -> Result<(), DriverError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(docker_error(e)),
        }
        if !self.config.pull {
            return Err(DriverError::Image {
                image: image.into(),
                reason: "not present locally and pulling is off".into(),
            });
        }
        self.note(instance, format!("pulling image {image}"));
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut pull = self.docker.create_image(Some(options), None, None);
        let mut last_status = String::new();
        while let Some(progress) = pull.next().await {
            let info = progress.map_err(|e| DriverError::Image {
                image: image.into(),
                reason: format!("not present locally and the pull failed: {e}"),
            })?;
            if let Some(status) = info.status
                && status != last_status
            {
                self.note(instance, format!("pull {image}: {status}"));
                last_status = status;
            }
        }
        self.note(instance, format!("pulled image {image}"));
        Ok(())
    }

    /// The endpoints recorded on a running container, if it exists and runs.
    async fn running_endpoints(
        &self,
        id: Uuid,
    ) -> Result<Option<(String, Vec<Endpoint>)>, DriverError> {
        let inspect = match self
            .docker
            .inspect_container(&container_name(id), None)
            .await
        {
            Ok(i) => i,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(docker_error(e)),
        };
        let running = inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            self.remove_container(id).await?;
            return Ok(None);
        }
        let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
        let endpoints = labels
            .get(spec::LABEL_ENDPOINTS)
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default();
        Ok(Some((inspect.id.unwrap_or_default(), endpoints)))
    }

    #[tracing::instrument(name = "container.create", skip_all)]
    async fn create(&self, instance: &Instance) -> Result<(String, Vec<Endpoint>), DriverError> {
        let id = instance.id;
        // A tenant's `image` runs only when the operator allows it.
        let image = self
            .config
            .allowed_images
            .choose(instance.spec.image.as_deref(), &self.config.image)
            .map_err(DriverError::Config)?;
        self.ensure_image(id, &image).await?;
        let dir = self.root.join(id.to_string());
        tokio::fs::create_dir_all(&dir).await?;
        let mut config = instance.spec.config.clone();
        let host = self.timing.host.clone();
        let mut endpoints =
            spec::assign(&mut config, id, &self.config.network, &host, &mut || {
                self.ports.allocate(&host)
            })?;
        let yaml = launch::render(instance, &mut config, &self.timing.egress)?;
        let config_file = dir.join("server.yaml");
        tokio::fs::write(&config_file, yaml).await?;
        let proxy = match (&self.timing.egress, &self.config.network) {
            (EgressPolicy::Allow, _) => None,
            (_, DockerNetwork::Host) => Some(format!("{host}:{}", self.ports.allocate(&host)?)),
            _ => Some(format!("127.0.0.1:{}", launch::EGRESS_PROXY_INNER_PORT)),
        };
        let env = launch::environment(&instance.spec.env, &self.timing.egress, proxy.as_deref());
        let volume = VolumeCreateRequest {
            name: Some(volume_name(id)),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_owned(), self.deployment.clone()),
                (LABEL_ID.to_owned(), id.to_string()),
            ])),
            ..Default::default()
        };
        self.docker
            .create_volume(volume)
            .await
            .map_err(docker_error)?;
        let grace = self.timing.stop_grace.as_secs().max(1) as i64;
        let body = spec::container(
            &self.deployment,
            instance,
            &self.config.network,
            &endpoints,
            &spec::Run {
                image: &image,
                config_file: &config_file.to_string_lossy(),
                env: &env,
                stop_grace_secs: grace,
                args: &self.timing.runtime_args,
            },
        );
        let options = CreateContainerOptionsBuilder::new()
            .name(&container_name(id))
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(docker_error)?;
        self.docker
            .start_container(&created.id, None)
            .await
            .map_err(docker_error)?;
        if self.config.network == DockerNetwork::Bridge {
            endpoints = self.published(&created.id, endpoints).await?;
        }
        Ok((created.id, endpoints))
    }

    /// Replaces in-container ports with the host ports Docker published them on.
    async fn published(
        &self,
        container: &str,
        endpoints: Vec<Endpoint>,
    ) -> Result<Vec<Endpoint>, DriverError> {
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(docker_error)?;
        let ports = inspect
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default();
        Ok(endpoints
            .into_iter()
            .map(|e| {
                let inner = super::ports::port_of(&e.url).map(|p| format!("{p}/tcp"));
                let host_port = inner
                    .and_then(|p| ports.get(&p).cloned().flatten())
                    .and_then(|b| b.first().and_then(|b| b.host_port.clone()));
                match host_port {
                    Some(port) => Endpoint {
                        url: format!("http://127.0.0.1:{port}"),
                        ..e
                    },
                    None => e,
                }
            })
            .collect())
    }

    #[tracing::instrument(name = "readiness", skip_all)]
    async fn wait_ready(&self, id: Uuid, api: &str, config: &DrasiConfig) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.timing.readiness_timeout;
        loop {
            let waiting = match ready::check(&self.http, api, config).await {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(reason) => return Err(reason),
                Readiness::Waiting(reason) => reason,
            };
            let inspect = self
                .docker
                .inspect_container(&container_name(id), None)
                .await;
            let state = inspect.ok().and_then(|i| i.state);
            if !state.as_ref().and_then(|s| s.running).unwrap_or(false) {
                let code = state.and_then(|s| s.exit_code);
                return Err(format!(
                    "container exited before it was ready (code {code:?})"
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "not ready within {:?}: {waiting}",
                    self.timing.readiness_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn remove_container(&self, id: Uuid) -> Result<(), DriverError> {
        self.removing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let removed = self
            .docker
            .remove_container(&container_name(id), Some(options))
            .await;
        match removed {
            Err(e) if !not_found(&e) => Err(docker_error(e)),
            _ => Ok(()),
        }
    }

    async fn tail(&self, id: Uuid, lines: usize) -> Result<String, DriverError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(&container_name(id), Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(out) => text.push_str(&String::from_utf8_lossy(&out.into_bytes())),
                Err(e) if not_found(&e) => return Ok(String::new()),
                Err(e) => return Err(docker_error(e)),
            }
        }
        Ok(text.trim_end().to_owned())
    }
}

impl Driver for DockerDriver {
    async fn adopt(&self) -> Vec<Uuid> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{LABEL_MANAGED}={}", self.deployment)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(false)
            .filters(&filters)
            .build();
        let running = self
            .docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default();
        running
            .into_iter()
            .filter_map(|c| c.labels?.get(LABEL_ID)?.parse().ok())
            .inspect(|id| tracing::info!(message = "found a running container", instance = %id))
            .collect()
    }

    fn node_bound(&self) -> bool {
        false
    }

    async fn start(&self, instance: &Instance) -> Result<RuntimeInfo, DriverError> {
        let id = instance.id;
        self.removing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let (container, endpoints) = match self.running_endpoints(id).await? {
            Some(found) => {
                tracing::info!(message = "container already running; adopting it", instance = %id);
                found
            }
            None => self.create(instance).await?,
        };
        let api = endpoints
            .iter()
            .find(|e| e.name == "api")
            .map(|e| e.url.clone())
            .unwrap_or_default();
        if let Err(reason) = self.wait_ready(id, &api, &instance.spec.config).await {
            let log_tail = self.tail(id, 20).await.unwrap_or_default();
            let _ = self.stop(id).await;
            return Err(DriverError::NotReady { reason, log_tail });
        }
        let at = now();
        Ok(RuntimeInfo {
            container_id: Some(container),
            endpoint: Some(api),
            endpoints,
            started_at: Some(at),
            last_health_at: Some(at),
            ..RuntimeInfo::default()
        })
    }

    async fn stop(&self, id: Uuid) -> Result<Option<i32>, DriverError> {
        let grace = self.timing.stop_grace.as_secs().max(1) as i32;
        let options = StopContainerOptionsBuilder::new().t(grace).build();
        match self
            .docker
            .stop_container(&container_name(id), Some(options))
            .await
        {
            Err(e) if not_found(&e) => return Ok(None),
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            })
            | Ok(()) => {}
            Err(e) => return Err(docker_error(e)),
        }
        let inspect = self
            .docker
            .inspect_container(&container_name(id), None)
            .await
            .map_err(docker_error)?;
        Ok(inspect.state.and_then(|s| s.exit_code).map(|c| c as i32))
    }

    async fn remove(&self, id: Uuid) -> Result<(), DriverError> {
        self.stop(id).await?;
        self.remove_container(id).await?;
        match self
            .docker
            .remove_volume(
                &volume_name(id),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Err(e) if !not_found(&e) => return Err(docker_error(e)),
            _ => {}
        }
        match tokio::fs::remove_dir_all(self.root.join(id.to_string())).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn logs(&self, id: Uuid, lines: usize) -> Result<String, DriverError> {
        self.tail(id, lines).await
    }

    async fn stop_all(&self) {
        for id in self.adopt().await {
            let _ = self.stop(id).await;
        }
    }
}

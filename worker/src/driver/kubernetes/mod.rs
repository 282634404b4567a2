//! The kubernetes driver: one ConfigMap, Deployment, Service and data volume claim per
//! instance in one namespace, through kube-rs (in-cluster config or a kubeconfig, `Config::infer`).
//!
//! - Every object is applied with server-side apply under the field manager `draas`
//!   (forced), so repeating a command is harmless and a restarted worker converges.
//! - Start applies the objects with one replica and waits until the Deployment's current
//!   generation has a ready pod (the pod's readiness probe is `/health`); a pod that cannot
//!   come up (image pull error, crash loop, bad container config) fails the start at once,
//!   with the reason and the log tail, and the Deployment is scaled back to zero. A pod left
//!   crash-looping by an earlier run is replaced first: a start is a fresh try.
//! - Stop scales to zero (a forced apply of `spec.replicas: 0` under the field manager
//!   `draas-stop`) and waits until the pods are gone. The pod's `preStop` hook sends SIGINT
//!   first, because drasi-server stops gracefully only on SIGINT.
//! - Delete removes the objects with foreground propagation and waits until they are gone.
//! - Instance data (`/app/data`) lives on a PersistentVolumeClaim `draas-<id>-data`
//!   (`--data-size`, `--storage-class`), kept across stop and start, deleted with the
//!   instance; without a size, in an `emptyDir`.
//! - [`watch`] follows the instance pods and Deployments and reports what Kubernetes says.
//! - [`address`]: where the worker reaches an instance for the data plane (its Service).
//!
//! Instances are not node bound: any worker of the platform can run any command.

mod address;
mod spec;
mod status;
mod watch;

use std::time::Duration;

use draas_bus::clock::now;
use draas_protocol::{Instance, RuntimeInfo};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PropagationPolicy};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{Driver, DriverError, Events};
use crate::config::{KubernetesConfig, ProcessConfig};
pub use spec::{LABEL_ID, LABEL_MANAGED, object_name};

/// Field manager of everything the driver applies.
pub const FIELD_MANAGER: &str = "draas";
/// Field manager that owns `spec.replicas` while an instance is stopped.
pub const STOP_MANAGER: &str = "draas-stop";
/// How often a waiting command looks at the objects again.
const POLL: Duration = Duration::from_millis(250);

/// Runs instances as Deployments.
pub struct KubernetesDriver {
    client: Client,
    config: KubernetesConfig,
    timing: ProcessConfig,
    /// This DRaaS deployment's name (the key prefix), the value of the managed-by label.
    deployment: String,
}

fn kube_error(e: kube::Error) -> DriverError {
    DriverError::Kubernetes(e.to_string())
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether `text` is a valid label value (the deployment name is one).
fn valid_label_value(text: &str) -> bool {
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl KubernetesDriver {
    /// Connects with the in-cluster config or a kubeconfig, checks that the namespace can be
    /// read, and starts watching the instance pods.
    pub async fn connect(
        deployment: &str,
        config: KubernetesConfig,
        timing: ProcessConfig,
        events: Events,
    ) -> Result<Self, DriverError> {
        if !valid_label_value(deployment) {
            return Err(DriverError::Kubernetes(format!(
                "the key prefix `{deployment}` names the deployment in a label, so it must be at \
                 most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric"
            )));
        }
        let kube_config = match &config.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    DriverError::Kubernetes(format!("kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .map_err(|e| {
                        DriverError::Kubernetes(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            None => kube::Config::infer().await.map_err(|e| {
                DriverError::Kubernetes(format!(
                    "no cluster configuration (in-cluster or kubeconfig): {e}"
                ))
            })?,
        };
        let client = Client::try_from(kube_config).map_err(kube_error)?;
        let driver = KubernetesDriver {
            client,
            config,
            timing,
            deployment: deployment.to_owned(),
        };
        driver
            .api::<Deployment>()
            .list(&ListParams::default().labels(&driver.managed()).limit(1))
            .await
            .map_err(|e| {
                DriverError::Kubernetes(format!(
                    "cannot list deployments in namespace `{}`: {e}",
                    driver.config.namespace
                ))
            })?;
        watch::spawn(
            driver.api::<Pod>(),
            driver.api::<Deployment>(),
            driver.managed(),
            driver.deployment.clone(),
            events,
        );
        Ok(driver)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned,
        K: std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// The label selector of everything this deployment manages.
    fn managed(&self) -> String {
        format!("{LABEL_MANAGED}={}", self.deployment)
    }

    #[tracing::instrument(name = "kubernetes.apply", skip_all)]
    async fn apply<K>(&self, object: &K, manager: &str) -> Result<K, DriverError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned,
        K: Serialize + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        let params = PatchParams::apply(manager).force();
        self.api::<K>()
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(kube_error)
    }

    async fn deployment_of(&self, id: Uuid) -> Result<Option<Deployment>, DriverError> {
        self.api::<Deployment>()
            .get_opt(&object_name(id))
            .await
            .map_err(kube_error)
    }

    /// The instance's pods. Filtered by label here too, so only its own pods ever count.
    async fn pods(&self, id: Uuid) -> Result<Vec<Pod>, DriverError> {
        let list = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&spec::selector_query(&self.deployment, id)))
            .await
            .map_err(kube_error)?;
        let want = spec::selector(&self.deployment, id);
        Ok(list
            .items
            .into_iter()
            .filter(|p| {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                want.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect())
    }

    /// Waits until the Deployment's current generation has a ready pod. A pod that cannot
    /// come up ends the wait at once.
    #[tracing::instrument(name = "readiness", skip_all)]
    async fn wait_ready(&self, id: Uuid) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + self.timing.readiness_timeout;
        loop {
            let deployment = self.deployment_of(id).await.map_err(|e| e.to_string())?;
            let Some(deployment) = deployment else {
                return Err("its Deployment was deleted while it started".into());
            };
            let pods = self.pods(id).await.map_err(|e| e.to_string())?;
            let seen: Vec<_> = pods.iter().map(|p| status::observe(p, now())).collect();
            if let Some(stuck) = seen.iter().find(|o| status::hopeless(o)) {
                return Err(format!(
                    "pod {} cannot start: {}",
                    stuck.name.as_deref().unwrap_or("?"),
                    stuck.describe()
                ));
            }
            if status::rolled_out(&deployment) {
                let ready = seen
                    .iter()
                    .find(|o| o.phase == draas_protocol::ObservedPhase::Running);
                return Ok(ready.and_then(|o| o.name.clone()).unwrap_or_default());
            }
            if tokio::time::Instant::now() >= deadline {
                let pods = seen
                    .iter()
                    .map(|o| format!("{}: {}", o.name.as_deref().unwrap_or("?"), o.describe()));
                let pods: Vec<_> = pods.collect();
                return Err(format!(
                    "no ready pod within {:?} ({})",
                    self.timing.readiness_timeout,
                    if pods.is_empty() {
                        "no pod was created".into()
                    } else {
                        pods.join("; ")
                    }
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the instance has no pods; returns the exit code a pod reported on its way.
    async fn wait_no_pods(&self, id: Uuid) -> Result<Option<i32>, DriverError> {
        // The grace period covers the preStop hook and the exit; allow twice that, plus time
        // for the controllers.
        let deadline =
            tokio::time::Instant::now() + self.timing.stop_grace * 2 + Duration::from_secs(30);
        let mut code = None;
        loop {
            let mut pods = self.pods(id).await?;
            // Pods that ended (evicted, or stopped by a node shutdown) run nothing; the
            // ReplicaSet leaves them behind when it scales down.
            pods.retain(|p| !status::ended(p));
            if pods.is_empty() {
                return Ok(code);
            }
            code = pods.iter().find_map(status::terminated_code).or(code);
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Kubernetes(format!(
                    "{} pod(s) of instance {id} are still there after the stop deadline",
                    pods.len()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn scale_to_zero(&self, id: Uuid) -> Result<(), DriverError> {
        let scale = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": object_name(id), "namespace": self.config.namespace },
            "spec": { "replicas": 0 },
        });
        let params = PatchParams::apply(STOP_MANAGER).force();
        let applied = self
            .api::<Deployment>()
            .patch(&object_name(id), &params, &Patch::Apply(&scale))
            .await;
        match applied {
            Ok(_) => Ok(()),
            // Gone between our read and this apply (which then tries to create a partial
            // Deployment and is refused): nothing is left to stop.
            Err(e) if self.deployment_of(id).await?.is_none() => {
                tracing::debug!(message = "deployment vanished while scaling to zero", instance = %id, error = %e);
                Ok(())
            }
            Err(e) => Err(kube_error(e)),
        }
    }

    async fn tail(&self, id: Uuid, lines: usize, previous: bool) -> Result<String, DriverError> {
        let mut pods = self.pods(id).await?;
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
        let Some(pod) = pods.last() else {
            return Ok(String::new());
        };
        let params = LogParams {
            container: Some(spec::CONTAINER.to_owned()),
            tail_lines: Some(lines as i64),
            previous,
            ..LogParams::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        match self.api::<Pod>().logs(&name, &params).await {
            Ok(text) => Ok(text.trim_end().to_owned()),
            Err(e) if not_found(&e) => Ok(String::new()),
            Err(e) => Err(kube_error(e)),
        }
    }

    async fn exists<K>(&self, id: Uuid) -> Result<bool, DriverError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned,
        K: std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        self.exists_named::<K>(&object_name(id)).await
    }

    async fn exists_named<K>(&self, name: &str) -> Result<bool, DriverError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned,
        K: std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let found = self.api::<K>().get_opt(name).await;
        Ok(found.map_err(kube_error)?.is_some())
    }

    async fn delete<K>(&self, id: Uuid) -> Result<(), DriverError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned,
        K: std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        self.delete_named::<K>(&object_name(id)).await
    }

    async fn delete_named<K>(&self, name: &str) -> Result<(), DriverError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned,
        K: std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        match self.api::<K>().delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(kube_error(e)),
        }
    }
}

impl Driver for KubernetesDriver {
    async fn adopt(&self) -> Vec<Uuid> {
        let listed = self
            .api::<Deployment>()
            .list(&ListParams::default().labels(&self.managed()))
            .await;
        let deployments = match listed {
            Ok(list) => list.items,
            Err(error) => {
                tracing::warn!(message = "cannot list deployments to adopt", %error);
                return Vec::new();
            }
        };
        deployments
            .into_iter()
            .filter(|d| status::desired_replicas(d) > 0)
            .filter_map(|d| {
                let labels = d.metadata.labels?;
                (labels.get(LABEL_MANAGED)? == &self.deployment)
                    .then(|| labels.get(LABEL_ID)?.parse().ok())?
            })
            .inspect(|id| tracing::info!(message = "found a running deployment", instance = %id))
            .collect()
    }

    fn node_bound(&self) -> bool {
        false
    }

    async fn start(&self, instance: &Instance) -> Result<RuntimeInfo, DriverError> {
        let id = instance.id;
        // A tenant's `image` runs only when the operator allows it.
        let image = self
            .config
            .allowed_images
            .choose(instance.spec.image.as_deref(), &self.config.image)
            .map_err(DriverError::Config)?;
        let shape = spec::Shape {
            deployment: &self.deployment,
            namespace: &self.config.namespace,
            image: &image,
            image_pull_policy: &self.config.image_pull_policy,
            stop_grace_secs: self.timing.stop_grace.as_secs().max(1) as i64,
            sigint_hook: self.config.sigint_hook,
            data_size: self.config.data_size.as_deref(),
            storage_class: self.config.storage_class.as_deref(),
            egress: &self.timing.egress,
            args: &self.timing.runtime_args,
        };
        let objects = spec::objects(instance, &shape)?;
        // What the pod mounts first.
        self.apply(&objects.config_map, FIELD_MANAGER).await?;
        if let Some(volume) = &objects.volume {
            self.apply(volume, FIELD_MANAGER).await?;
        }
        self.apply(&objects.service, FIELD_MANAGER).await?;
        self.apply(&objects.deployment, FIELD_MANAGER).await?;
        // A pod left crash-looping (or stuck) by an earlier run would fail this start at once:
        // replace it, as a start means a fresh try. The Deployment creates a new one.
        for pod in self.pods(id).await? {
            if status::hopeless(&status::observe(&pod, now())) {
                let name = pod.metadata.name.unwrap_or_default();
                match self
                    .api::<Pod>()
                    .delete(&name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(kube_error(e)),
                }
            }
        }
        let pod = match self.wait_ready(id).await {
            Ok(pod) => pod,
            Err(reason) => {
                let log_tail = self.tail(id, 20, false).await.unwrap_or_default();
                if let Err(error) = self.scale_to_zero(id).await {
                    tracing::warn!(message = "could not scale a failed start to zero", instance = %id, %error);
                }
                return Err(DriverError::NotReady { reason, log_tail });
            }
        };
        let endpoints = objects.endpoints;
        let api = endpoints
            .iter()
            .find(|e| e.name == "api")
            .map(|e| e.url.clone());
        let at = now();
        Ok(RuntimeInfo {
            pod: Some(pod).filter(|p| !p.is_empty()),
            endpoint: api,
            endpoints,
            started_at: Some(at),
            last_health_at: Some(at),
            ..RuntimeInfo::default()
        })
    }

    async fn stop(&self, id: Uuid) -> Result<Option<i32>, DriverError> {
        let Some(deployment) = self.deployment_of(id).await? else {
            return Ok(None);
        };
        if status::desired_replicas(&deployment) > 0 {
            self.scale_to_zero(id).await?;
        }
        self.wait_no_pods(id).await
    }

    async fn remove(&self, id: Uuid) -> Result<(), DriverError> {
        // A stop that cannot finish (a pod stuck on a lost node) must not keep the objects:
        // the foreground deletion below removes what is left.
        if let Err(error) = self.stop(id).await {
            tracing::warn!(message = "stop before delete did not finish; deleting anyway", instance = %id, %error);
        }
        self.delete::<Deployment>(id).await?;
        self.delete::<Service>(id).await?;
        self.delete::<ConfigMap>(id).await?;
        self.delete_named::<PersistentVolumeClaim>(&spec::volume_name(id))
            .await?;
        // Foreground deletion keeps each object (with a `foregroundDeletion` finalizer) until
        // the garbage collector has removed its dependents: wait until all three are gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = [
                self.exists::<Deployment>(id).await?.then_some("Deployment"),
                self.exists::<Service>(id).await?.then_some("Service"),
                self.exists::<ConfigMap>(id).await?.then_some("ConfigMap"),
                self.exists_named::<PersistentVolumeClaim>(&spec::volume_name(id))
                    .await?
                    .then_some("PersistentVolumeClaim"),
            ];
            let left: Vec<&str> = left.into_iter().flatten().collect();
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Kubernetes(format!(
                    "{} of instance {id} still there a minute after deletion",
                    left.join(", ")
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn logs(&self, id: Uuid, lines: usize) -> Result<String, DriverError> {
        self.tail(id, lines, false).await
    }

    async fn endpoint(&self, instance: &Instance, name: &str) -> Result<String, DriverError> {
        self.service_endpoint(instance, name).await
    }

    async fn stop_all(&self) {
        for id in self.adopt().await {
            if let Err(error) = self.stop(id).await {
                tracing::warn!(message = "could not stop instance", instance = %id, %error);
            }
        }
    }
}

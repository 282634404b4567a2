//! The kubernetes tests' harness: Redis, the real API and a kubernetes worker against kmock
//! (`KubeSystem`), and the helpers the tests share (a driver of their own, a worker, the pod
//! template of a Deployment).

#![allow(dead_code)]

use crate::common::kmock::{KubeApi, NAMESPACE};
use crate::common::{
    ApiNode, RedisServer, System, WorkerNode, runtime_binary, scratch, wait_until,
};
use draas_protocol::{Keyspace, Platform};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

pub struct KubeSystem {
    pub sys: System,
    pub kube: KubeApi,
    pub client: kube::Client,
}

impl KubeSystem {
    pub async fn start() -> anyhow::Result<Self> {
        let kube = KubeApi::start()?;
        let redis = RedisServer::start()?;
        let keys = crate::common::fresh_keys("k");
        let worker = worker(&redis, &keys, &kube).await?;
        // The operator lets tenants name images (an unpullable one is tested below).
        let api = ApiNode::start_tuned(&redis.url, &keys, |c| {
            c.allowed_images = draas_protocol::image::ImagePolicy::new(["*"]);
        })
        .await?;
        let client = kube.client().await;
        let sys = System {
            redis,
            keys,
            api,
            worker,
            http: reqwest::Client::new(),
        };
        let this = KubeSystem { sys, kube, client };
        this.wait_workers(1).await?;
        Ok(this)
    }

    pub async fn wait_workers(&self, n: u64) -> anyhow::Result<()> {
        let url = self.sys.url("/api/v1/platforms");
        wait_until(|| async {
            let v = crate::common::get_json(&self.sys.http, &url).await?;
            let items = v["items"].as_array()?;
            let k8s = items.iter().find(|p| p["platform"] == "kubernetes")?;
            (k8s["workers"] == n).then_some(())
        })
        .await
    }

    pub async fn create(&self, name: &str, extra: Value) -> String {
        let mut body = json!({"name": name, "platform": "kubernetes", "config": crate::common::sensor_config()});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, inst) = self.sys.post_json("/api/v1/instances", &body).await;
        assert_eq!(status, 201, "{inst}");
        inst["id"].as_str().unwrap().to_owned()
    }

    /// A lifecycle request whose operation must succeed.
    pub async fn succeed(&self, id: &str, action: &str) -> Value {
        let (status, op) = self
            .sys
            .post(&format!("/api/v1/instances/{id}/{action}"))
            .await;
        assert_eq!(
            (status, op["state"].clone()),
            (200, json!("succeeded")),
            "{op}"
        );
        op
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    pub async fn deployment(&self, id: &str) -> Option<Deployment> {
        self.api::<Deployment>()
            .get_opt(&format!("draas-{id}"))
            .await
            .unwrap()
    }

    pub async fn pods(&self, id: &str) -> Vec<Pod> {
        let all = self
            .api::<Pod>()
            .list(&ListParams::default())
            .await
            .unwrap();
        all.items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("io.draas.instance.id"))
                    == Some(&id.to_owned())
            })
            .collect()
    }

    /// Waits until the instance's stored observation has `phase`.
    pub async fn wait_observed(&self, id: &str, phase: &str) -> Value {
        let result = wait_until(|| async {
            let inst = self.sys.instance(id).await;
            (inst["runtime"]["observed"]["phase"] == phase).then_some(inst)
        })
        .await;
        result.unwrap_or_else(|_| panic!("never observed {phase}"))
    }

    /// The requests the server saw for `path_part`, by method.
    pub fn requests(&self, method: &str, path_part: &str) -> Vec<Value> {
        self.kube
            .requests()
            .into_iter()
            .filter(|r| {
                r["method"] == method && r["path"].as_str().unwrap_or("").contains(path_part)
            })
            .collect()
    }
}

/// The pod template of the instance's Deployment.
pub async fn dep_template_spec(k: &KubeSystem, id: &str) -> k8s_openapi::api::core::v1::PodSpec {
    let dep = k.deployment(id).await.unwrap();
    dep.spec.unwrap().template.spec.unwrap()
}

/// The kubernetes driver itself, on the test's fake cluster.
pub async fn driver(k: &KubeSystem) -> draas_worker::driver::kubernetes::KubernetesDriver {
    let mut config =
        draas_worker::WorkerConfig::new("redis://unused", Platform::Kubernetes, "/unused");
    config.kubernetes.kubeconfig = Some(k.kube.kubeconfig.clone());
    config.kubernetes.namespace = NAMESPACE.to_owned();
    config.kubernetes.image = "draas-runtime:test".to_owned();
    // As the test's workers have it: a different grace period is a different pod template.
    config.process.stop_grace = std::time::Duration::from_secs(5);
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    draas_worker::driver::kubernetes::KubernetesDriver::connect(
        k.sys.keys.prefix(),
        config.kubernetes,
        config.process,
        events,
    )
    .await
    .unwrap()
}

pub async fn worker(
    redis: &RedisServer,
    keys: &Keyspace,
    kube: &KubeApi,
) -> anyhow::Result<WorkerNode> {
    worker_tuned(redis, keys, kube, |_| {}).await
}

/// A kubernetes worker as [`worker`] makes it, with `tune` applied last.
pub async fn worker_tuned(
    redis: &RedisServer,
    keys: &Keyspace,
    kube: &KubeApi,
    tune: impl FnOnce(&mut draas_worker::WorkerConfig),
) -> anyhow::Result<WorkerNode> {
    let kubeconfig = kube.kubeconfig.clone();
    WorkerNode::start_tuned(
        &redis.url,
        keys,
        runtime_binary(),
        scratch("k8s-worker"),
        |c| {
            c.platform = Platform::Kubernetes;
            c.kubernetes.kubeconfig = Some(kubeconfig);
            c.kubernetes.namespace = NAMESPACE.to_owned();
            c.kubernetes.image = "draas-runtime:test".to_owned();
            c.kubernetes.allowed_images = draas_protocol::image::ImagePolicy::new(["*"]);
            c.stop_instances_on_exit = false;
            c.process.readiness_timeout = std::time::Duration::from_secs(20);
            tune(c);
        },
    )
    .await
}

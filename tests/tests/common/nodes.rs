//! The DRaaS parts the tests run in-process on loopback: an API node, a worker (each with
//! the data plane on, sharing one secret), and `System`, the two on a private Redis.

use std::path::PathBuf;
use std::time::Duration;

use draas_protocol::{Keyspace, Platform};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{
    DEADLINE, RedisServer, fresh_keys, get_json, kill_instances_under, runtime_binary, scratch,
    sensor_config, status_json, wait_until,
};

/// The data-plane secret the tests' API nodes and workers share.
pub fn data_secret() -> draas_protocol::dataplane::DataSecret {
    draas_protocol::dataplane::DataSecret::new("test-data-plane-secret-0123456789abcdef")
        .expect("a valid secret")
}

/// A running API node (in-process, on loopback).
pub struct ApiNode {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ApiNode {
    pub async fn start(redis_url: &str, keys: &Keyspace) -> anyhow::Result<Self> {
        Self::start_tuned(redis_url, keys, |_| {}).await
    }

    /// Starts an API node with its configuration adjusted by `tune`.
    pub async fn start_tuned(
        redis_url: &str,
        keys: &Keyspace,
        tune: impl FnOnce(&mut draas_api::ApiConfig),
    ) -> anyhow::Result<Self> {
        let mut config = draas_api::ApiConfig::new(redis_url);
        config.keys = keys.clone();
        config.default_wait = Duration::from_secs(30);
        // Tests poll quickly through one anonymous caller: no rate limit unless a test sets one.
        config.rate_limit = None;
        config.failed_auth_limit = None;
        config.data_secret = Some(data_secret());
        tune(&mut config);
        let app = draas_api::App::connect(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(draas_api::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Ok(ApiNode {
            url,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, task).await;
        }
    }
}

impl Drop for ApiNode {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A running worker (in-process).
pub struct WorkerNode {
    pub data_dir: PathBuf,
    crashed: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), draas_worker::WorkerError>>>,
}

impl WorkerNode {
    pub async fn start(
        redis_url: &str,
        keys: &Keyspace,
        executable: PathBuf,
    ) -> anyhow::Result<Self> {
        Self::start_tuned(redis_url, keys, executable, scratch("worker"), |_| {}).await
    }

    /// Starts a worker on `data_dir` (its node identity lives there) with `tune` applied.
    pub async fn start_tuned(
        redis_url: &str,
        keys: &Keyspace,
        executable: PathBuf,
        data_dir: PathBuf,
        tune: impl FnOnce(&mut draas_worker::WorkerConfig),
    ) -> anyhow::Result<Self> {
        let mut config = draas_worker::WorkerConfig::new(redis_url, Platform::Process, &data_dir);
        config.keys = keys.clone();
        config.stop_instances_on_exit = true;
        config.drain_deadline = Duration::from_secs(20);
        config.process.executable = executable;
        config.process.stop_grace = Duration::from_secs(5);
        // Every test worker serves the data plane on a free loopback port.
        config.data_plane = Some(draas_worker::dataplane::DataPlaneConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            secret: data_secret(),
        });
        tune(&mut config);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(draas_worker::run(
            config,
            async move {
                let _ = rx.await;
            },
            std::future::pending(),
        ));
        Ok(WorkerNode {
            data_dir,
            crashed: false,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The worker vanishes mid-flight, like a SIGKILL: no drain, no deregistration. The
    /// instance processes it started keep running.
    pub fn crash(mut self) {
        self.crashed = true;
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, task).await;
        }
    }
}

impl Drop for WorkerNode {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // A test must not leave instance processes behind; a crashed worker's survive on
        // purpose (the next worker on the node adopts them).
        if !self.crashed {
            if let Some(task) = self.task.take() {
                task.abort();
            }
            kill_instances_under(&self.data_dir);
        }
    }
}

/// Redis + API + one process worker, with a fresh key prefix.
pub struct System {
    pub redis: RedisServer,
    pub keys: Keyspace,
    pub api: ApiNode,
    pub worker: WorkerNode,
    pub http: reqwest::Client,
}

impl System {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(runtime_binary()).await
    }

    pub async fn start_with(executable: PathBuf) -> anyhow::Result<Self> {
        Self::start_tuned(executable, |_| {}).await
    }

    /// Like `start_with`, with the worker's configuration adjusted by `tune`.
    pub async fn start_tuned(
        executable: PathBuf,
        tune: impl FnOnce(&mut draas_worker::WorkerConfig),
    ) -> anyhow::Result<Self> {
        Self::start_configured(executable, tune, |_| {}).await
    }

    /// Like `start_tuned`, with the API's configuration adjusted by `tune_api` too.
    pub async fn start_configured(
        executable: PathBuf,
        tune: impl FnOnce(&mut draas_worker::WorkerConfig),
        tune_api: impl FnOnce(&mut draas_api::ApiConfig),
    ) -> anyhow::Result<Self> {
        let redis = RedisServer::start()?;
        let keys = fresh_keys("t");
        let worker =
            WorkerNode::start_tuned(&redis.url, &keys, executable, scratch("worker"), tune).await?;
        let api = ApiNode::start_tuned(&redis.url, &keys, tune_api).await?;
        let http = reqwest::Client::new();
        let system = System {
            redis,
            keys,
            api,
            worker,
            http,
        };
        let url = system.api.url.clone();
        let http = system.http.clone();
        wait_until(|| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let v = get_json(&http, &format!("{url}/api/v1/platforms")).await?;
                (v["items"][0]["available"] == true).then_some(())
            }
        })
        .await?;
        Ok(system)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.url)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("request");
        status_json(resp).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    /// Creates an instance from `sensor_config()` under `name`; returns its id.
    pub async fn create(&self, name: &str) -> String {
        let (status, body) = self
            .post_json(
                "/api/v1/instances",
                &json!({"name": name, "platform": "process", "config": sensor_config()}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn instance(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/instances/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the instance is in `state`.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let result = wait_until(|| async move {
            let inst = self.instance(id).await;
            (inst["state"] == state).then_some(inst)
        })
        .await;
        match result {
            Ok(inst) => inst,
            Err(_) => panic!(
                "instance {id} never reached {state}: {}",
                self.instance(id).await
            ),
        }
    }
}

//! An in-memory Kubernetes API for the kubernetes-platform contract tests: `kmock` (PyPI)
//! wrapped by `tests/kmock/kmock_server.py`, which adds what kmock lacks and a real server
//! does (server-side apply creating objects, resource versions, foreground deletion, pod logs)
//! and plays the Deployment controller and kubelet. It runs as a child process on loopback,
//! is reached over real HTTP through a kubeconfig, and is killed by PID on drop.
//!
//! No real API server can be had on the test machines: these tests pin the driver's contract
//! with the API (what it applies, scales, deletes and watches), not a cluster's behaviour.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use serde_json::Value;

use super::{scratch, terminate, wait_sync};

/// The namespace the tests' instances live in.
pub const NAMESPACE: &str = "draas-test";

/// A running fake API server.
pub struct KubeApi {
    pub url: String,
    pub kubeconfig: PathBuf,
    requests: PathBuf,
    child: Child,
}

impl KubeApi {
    pub fn start() -> anyhow::Result<Self> {
        let dir = scratch("kmock");
        let port_file = dir.join("port");
        let requests = dir.join("requests.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kmock/kmock_server.py");
        let log = std::fs::File::create(dir.join("kmock.log"))?;
        let child = Command::new("python3")
            .arg(&script)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--requests-file")
            .arg(&requests)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting python3 tests/kmock/kmock_server.py (needs `pip install kmock`)")?;
        let mut api = KubeApi {
            url: String::new(),
            kubeconfig: dir.join("kubeconfig"),
            requests,
            child,
        };
        let port = wait_sync(|| {
            if let Ok(Some(status)) = api.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("kmock.log")).unwrap_or_default();
                panic!("kmock_server.py exited ({status}):\n{log}");
            }
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse::<u16>()
                .ok()
        })
        .context("kmock_server.py never wrote its port")?;
        api.url = format!("http://127.0.0.1:{port}");
        std::fs::write(&api.kubeconfig, kubeconfig(&api.url))?;
        Ok(api)
    }

    /// A client for the test itself (to play the kubelet, or to look at objects).
    pub async fn client(&self) -> kube::Client {
        let file = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Every request the server saw so far: method, path, query, contentType, body.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.requests)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kmock
  cluster:
    server: {server}
users:
- name: test
  user: {{}}
contexts:
- name: kmock
  context:
    cluster: kmock
    user: test
    namespace: {NAMESPACE}
current-context: kmock
"
    )
}

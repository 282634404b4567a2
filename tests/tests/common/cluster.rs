//! A local six-node Redis Cluster (three masters, three replicas) on loopback: real
//! `redis-server --cluster-enabled yes` processes joined by `redis-cli --cluster create`,
//! killed by PID on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use super::{free_port, scratch, wait_sync};

pub struct RedisCluster {
    /// Every node, comma-separated: what `--redis-url` takes for a cluster.
    pub url: String,
    pub ports: Vec<u16>,
    children: Vec<Child>,
    _dir: PathBuf,
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    pub fn start() -> anyhow::Result<Self> {
        let dir = scratch("redis-cluster");
        let ports: Vec<u16> = (0..6).map(|_| cluster_port()).collect();
        let mut children = Vec::new();
        for port in &ports {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir)?;
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("redis-server must be installed")?;
            children.push(child);
        }
        let cluster = RedisCluster {
            url: ports
                .iter()
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            ports,
            children,
            _dir: dir,
        };
        for port in &cluster.ports {
            wait_sync(|| (cluster.cli(*port, &["PING"]) == "PONG").then_some(()))?;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("redis-cli must be installed")?;
        if !created.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&created.stdout)
            );
        }
        // Every node must agree the cluster is up and every slot is served.
        for port in &cluster.ports {
            wait_sync(|| {
                let info = cluster.cli(*port, &["CLUSTER", "INFO"]);
                (info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384"))
                    .then_some(())
            })?;
        }
        Ok(cluster)
    }

    /// `redis-cli -p <port> <args>`, its output trimmed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// The masters' ports.
    pub fn masters(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|p| self.cli(*p, &["ROLE"]).starts_with("master"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

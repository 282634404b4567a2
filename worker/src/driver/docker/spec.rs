//! What a container for an instance looks like: name, labels, mounts, network, limits and
//! the rendered Drasi config. Pure functions, so the shape is checked by unit tests.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use draas_protocol::Instance;
use draas_protocol::drasi::{DrasiConfig, Endpoint};
use uuid::Uuid;

use crate::config::DockerNetwork;
use crate::driver::ports::{self, port_of};
pub use crate::driver::{LABEL_ID, LABEL_MANAGED};

/// Label holding the instance name.
pub const LABEL_NAME: &str = "io.draas.instance.name";
/// Label holding the endpoints (JSON), so any worker can adopt the container.
pub const LABEL_ENDPOINTS: &str = "io.draas.endpoints";
/// Where the config is mounted; the official image reads `/app/config/server.yaml`.
pub const CONFIG_PATH: &str = "/app/config/server.yaml";
/// The working directory; drasi-server keeps its state under `./data`.
pub const WORKDIR: &str = "/app";
/// First port used inside the container when it has its own network namespace.
pub const INNER_PORT: u16 = 8080;

pub fn container_name(id: Uuid) -> String {
    format!("draas-{id}")
}

pub fn volume_name(id: Uuid) -> String {
    format!("draas-{id}-data")
}

/// Assigns listen addresses for `network`: host ports from `alloc` on the host network,
/// fixed ports from 8080 on 0.0.0.0 otherwise. Returns the endpoints as seen from the host
/// (bridge endpoints get their published ports after start).
pub fn assign(
    config: &mut DrasiConfig,
    id: Uuid,
    network: &DockerNetwork,
    host: &str,
    alloc: &mut dyn FnMut() -> std::io::Result<u16>,
) -> std::io::Result<Vec<Endpoint>> {
    match network {
        DockerNetwork::Host => config.assign_ports(host, alloc),
        DockerNetwork::Bridge | DockerNetwork::Named(_) => {
            let reach = match network {
                DockerNetwork::Named(_) => container_name(id),
                _ => host.to_owned(),
            };
            Ok(ports::fixed(config, INNER_PORT, &reach))
        }
    }
}

/// What a container runs besides the instance: image, config file, environment, stop grace,
/// the workload's fixed extra arguments.
pub struct Run<'a> {
    pub image: &'a str,
    pub config_file: &'a str,
    pub env: &'a [(String, String)],
    pub stop_grace_secs: i64,
    pub args: &'a [String],
}

/// The container create body.
pub fn container(
    deployment: &str,
    instance: &Instance,
    network: &DockerNetwork,
    endpoints: &[Endpoint],
    run: &Run<'_>,
) -> ContainerCreateBody {
    let Run {
        image,
        config_file,
        env,
        stop_grace_secs,
        args,
    } = *run;
    let id = instance.id;
    let labels = HashMap::from([
        (LABEL_ID.to_owned(), id.to_string()),
        (LABEL_NAME.to_owned(), instance.spec.name.clone()),
        (LABEL_MANAGED.to_owned(), deployment.to_owned()),
        (
            LABEL_ENDPOINTS.to_owned(),
            serde_json::to_string(endpoints).unwrap_or_default(),
        ),
    ]);
    let inner_ports: Vec<String> = match network {
        DockerNetwork::Host => Vec::new(),
        _ => endpoints
            .iter()
            .filter_map(|e| port_of(&e.url))
            .map(|p| format!("{p}/tcp"))
            .collect(),
    };
    let port_bindings = (*network == DockerNetwork::Bridge).then(|| {
        inner_ports
            .iter()
            .map(|p| {
                let binding = PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                };
                (p.clone(), Some(vec![binding]))
            })
            .collect()
    });
    let resources = instance
        .spec
        .resources
        .clone()
        .unwrap_or(draas_protocol::Resources {
            memory_mb: None,
            cpu_millis: None,
        });
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(
            ["--config".to_owned(), CONFIG_PATH.to_owned()]
                .into_iter()
                .chain(args.iter().cloned())
                .collect(),
        ),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some(WORKDIR.to_owned()),
        labels: Some(labels),
        // drasi-server stops gracefully only on SIGINT.
        stop_signal: Some("SIGINT".to_owned()),
        stop_timeout: Some(stop_grace_secs),
        exposed_ports: (!inner_ports.is_empty()).then(|| inner_ports.clone()),
        host_config: Some(HostConfig {
            binds: Some(vec![
                format!("{config_file}:{CONFIG_PATH}:ro"),
                format!("{}:{WORKDIR}/data", volume_name(id)),
            ]),
            network_mode: Some(match network {
                DockerNetwork::Host => "host".to_owned(),
                DockerNetwork::Bridge => "bridge".to_owned(),
                DockerNetwork::Named(name) => name.clone(),
            }),
            port_bindings,
            memory: resources.memory_mb.map(|mb| (mb * 1024 * 1024) as i64),
            nano_cpus: resources.cpu_millis.map(|m| (m * 1_000_000) as i64),
            init: Some(true),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// The port of an `http://host:port` URL.
#[cfg(test)]
mod tests {
    use super::*;
    use draas_protocol::{
        InstanceSpec, InstanceState, Platform, Resources, RestartPolicy, RuntimeInfo, Timestamp,
    };

    fn instance() -> Instance {
        let config = DrasiConfig::from_json_value(serde_json::json!({
            "sources": [{"kind": "http", "id": "in"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "in"}]}],
        }))
        .unwrap();
        Instance {
            id: Uuid::from_u128(7),
            tenant: "default".into(),
            spec: InstanceSpec {
                name: "boxed".into(),
                description: None,
                platform: Platform::Docker,
                labels: Default::default(),
                config,
                restart_policy: RestartPolicy::default(),
                image: None,
                resources: Some(Resources {
                    memory_mb: Some(256),
                    cpu_millis: Some(500),
                }),
                env: Default::default(),
                desired_state: None,
            },
            state: InstanceState::Starting,
            generation: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            runtime: RuntimeInfo::default(),
        }
    }

    #[test]
    fn bridge_publishes_every_listener_on_loopback() {
        let inst = instance();
        let mut config = inst.spec.config.clone();
        let endpoints = assign(
            &mut config,
            inst.id,
            &DockerNetwork::Bridge,
            "127.0.0.1",
            &mut || unreachable!(),
        )
        .unwrap();
        assert_eq!(
            endpoints.iter().map(|e| e.url.as_str()).collect::<Vec<_>>(),
            ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
        );
        let body = container(
            "draas",
            &inst,
            &DockerNetwork::Bridge,
            &endpoints,
            &Run {
                image: "img:1",
                config_file: "/cfg.yaml",
                env: &[("NO_COLOR".to_owned(), "1".to_owned())],
                stop_grace_secs: 10,
                args: &["--plugins-dir".to_owned(), "/plugins".to_owned()],
            },
        );
        assert_eq!(body.env.as_deref(), Some(&["NO_COLOR=1".to_owned()][..]));
        let host = body.host_config.unwrap();
        let bindings = host.port_bindings.unwrap();
        assert_eq!(bindings.len(), 2);
        assert_eq!(
            bindings["8080/tcp"].as_ref().unwrap()[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(host.memory, Some(256 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(
            host.binds.unwrap(),
            [
                "/cfg.yaml:/app/config/server.yaml:ro".to_owned(),
                "draas-00000000-0000-0000-0000-000000000007-data:/app/data".to_owned()
            ]
        );
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(
            body.cmd.unwrap(),
            [
                "--config",
                "/app/config/server.yaml",
                "--plugins-dir",
                "/plugins"
            ]
        );
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_ID], "00000000-0000-0000-0000-000000000007");
        assert_eq!(labels[LABEL_MANAGED], "draas");
    }

    #[test]
    fn host_network_uses_host_ports_and_publishes_nothing() {
        let inst = instance();
        let mut config = inst.spec.config.clone();
        let mut next = 40_000;
        let endpoints = assign(
            &mut config,
            inst.id,
            &DockerNetwork::Host,
            "127.0.0.1",
            &mut || {
                next += 1;
                Ok(next)
            },
        )
        .unwrap();
        assert_eq!(endpoints[0].url, "http://127.0.0.1:40001");
        let body = container(
            "draas",
            &inst,
            &DockerNetwork::Host,
            &endpoints,
            &Run {
                image: "img:1",
                config_file: "/cfg.yaml",
                env: &[],
                stop_grace_secs: 10,
                args: &[],
            },
        );
        assert_eq!(
            body.host_config.as_ref().unwrap().network_mode.as_deref(),
            Some("host")
        );
        assert!(body.host_config.unwrap().port_bindings.is_none());
        assert!(body.exposed_ports.is_none());
    }

    #[test]
    fn named_network_reaches_the_container_by_name() {
        let inst = instance();
        let mut config = inst.spec.config.clone();
        let endpoints = assign(
            &mut config,
            inst.id,
            &DockerNetwork::Named("drasi".into()),
            "127.0.0.1",
            &mut || unreachable!(),
        )
        .unwrap();
        assert_eq!(
            endpoints[0].url,
            "http://draas-00000000-0000-0000-0000-000000000007:8080"
        );
    }
}

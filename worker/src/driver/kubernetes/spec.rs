//! What an instance looks like on Kubernetes: the ConfigMap with its rendered config, the
//! Deployment that runs it, the Service that reaches it and the claim of its data volume. Pure functions, checked by golden
//! tests (`golden/*.json`, rewritten with `UPDATE_GOLDEN=1`) that CI also validates against
//! the official Kubernetes schemas.

use std::collections::BTreeMap;

use draas_protocol::drasi::{DrasiConfig, Endpoint};
use draas_protocol::{EgressPolicy, Instance};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::driver::ports::{self, port_of};
use crate::driver::{DriverError, launch};
pub use crate::driver::{LABEL_ID, LABEL_MANAGED};

/// Annotation holding the instance name (names need not be valid label values).
pub const ANNOTATION_NAME: &str = "io.draas.instance.name";
/// Annotation holding the endpoints (JSON), so any worker can adopt the instance.
pub const ANNOTATION_ENDPOINTS: &str = "io.draas.endpoints";
/// Pod-template annotation with the config's digest: a new config rolls the pod.
pub const ANNOTATION_CONFIG: &str = "io.draas.config-sha256";
/// The container's name.
pub const CONTAINER: &str = "drasi";
/// Where the config is mounted; the official image reads `/app/config/server.yaml`.
pub const CONFIG_DIR: &str = "/app/config";
/// The config file's key in the ConfigMap.
pub const CONFIG_KEY: &str = "server.yaml";
/// The first port inside the pod; the REST API takes it.
pub const API_PORT: u16 = 8080;
/// SIGINT to the server (PID 1), then wait for it to exit; the kubelet's SIGTERM follows.
pub const SIGINT_HOOK: &str = "kill -INT 1; while kill -0 1 2>/dev/null; do sleep 0.2; done";

/// Name of every object of the instance.
pub fn object_name(id: Uuid) -> String {
    format!("draas-{id}")
}

/// Everything that shapes the objects besides the instance.
pub struct Shape<'a> {
    pub deployment: &'a str,
    pub namespace: &'a str,
    pub image: &'a str,
    pub image_pull_policy: &'a str,
    pub stop_grace_secs: i64,
    pub sigint_hook: bool,
    /// Size of the instance's data volume (a PersistentVolumeClaim); `None`: an `emptyDir`.
    pub data_size: Option<&'a str>,
    /// Storage class of the data volume; `None`: the cluster's default.
    pub storage_class: Option<&'a str>,
    /// The workload's fixed arguments after `--config <file>`.
    pub args: &'a [String],
    /// The operator's egress policy, enforced by the runtime's egress proxy in the pod.
    pub egress: &'a EgressPolicy,
}

/// The rendered objects of one instance.
pub struct Objects {
    pub config_map: ConfigMap,
    /// The data volume's claim, unless the data lives in an `emptyDir`.
    pub volume: Option<PersistentVolumeClaim>,
    pub deployment: Deployment,
    pub service: Service,
    pub endpoints: Vec<Endpoint>,
}

/// Name of the instance's data volume claim.
pub fn volume_name(id: Uuid) -> String {
    format!("draas-{id}-data")
}

/// Labels selecting the instance's objects and pods.
pub fn selector(deployment: &str, id: Uuid) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ID.to_owned(), id.to_string()),
        (LABEL_MANAGED.to_owned(), deployment.to_owned()),
    ])
}

/// The selector as a `labelSelector` query.
pub fn selector_query(deployment: &str, id: Uuid) -> String {
    format!("{LABEL_ID}={id},{LABEL_MANAGED}={deployment}")
}

/// The in-cluster address of the instance's Service.
pub fn service_host(id: Uuid, namespace: &str) -> String {
    format!("{}.{namespace}.svc", object_name(id))
}

/// Renders the instance's objects. The config listens on fixed ports from 8080 (a pod has its
/// own network namespace); endpoints are the Service's in-cluster addresses.
pub fn objects(instance: &Instance, shape: &Shape<'_>) -> Result<Objects, DriverError> {
    let id = instance.id;
    let name = object_name(id);
    let mut config: DrasiConfig = instance.spec.config.clone();
    let endpoints = ports::fixed(&mut config, API_PORT, &service_host(id, shape.namespace));
    let yaml = launch::render(instance, &mut config, shape.egress)?;
    let proxy = format!("127.0.0.1:{}", launch::EGRESS_PROXY_INNER_PORT);
    let env: Vec<_> = launch::environment(&instance.spec.env, shape.egress, Some(&proxy))
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let digest = format!("{:x}", Sha256::digest(yaml.as_bytes()));
    let mut labels = selector(shape.deployment, id);
    labels.insert("app.kubernetes.io/name".into(), "drasi-server".into());
    labels.insert("app.kubernetes.io/instance".into(), name.clone());
    labels.insert("app.kubernetes.io/managed-by".into(), "draas".into());
    let annotations = json!({
        ANNOTATION_NAME: instance.spec.name,
        ANNOTATION_ENDPOINTS: serde_json::to_string(&endpoints).unwrap_or_default(),
    });
    let metadata = json!({
        "name": name,
        "namespace": shape.namespace,
        "labels": labels,
        "annotations": annotations,
    });
    let ports: Vec<_> = endpoints
        .iter()
        .filter_map(|e| {
            let port = port_of(&e.url)?;
            Some((port_name(&e.name, port), port))
        })
        .collect();
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": { CONFIG_KEY: yaml },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector(shape.deployment, id),
            "ports": ports.iter().map(|(name, port)| json!({
                "name": name, "port": port, "targetPort": port, "protocol": "TCP",
            })).collect::<Vec<_>>(),
        },
    });
    let probe = |delay: u32, period: u32| {
        json!({
            "httpGet": { "path": "/health", "port": API_PORT },
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        })
    };
    let args: Vec<String> = ["--config".to_owned(), format!("{CONFIG_DIR}/{CONFIG_KEY}")]
        .into_iter()
        .chain(shape.args.iter().cloned())
        .collect();
    let mut container = json!({
        "name": CONTAINER,
        "image": shape.image,
        "imagePullPolicy": shape.image_pull_policy,
        "args": args,
        "workingDir": "/app",
        "env": env,
        "ports": ports.iter().map(|(name, port)| json!({
            "name": name, "containerPort": port, "protocol": "TCP",
        })).collect::<Vec<_>>(),
        "readinessProbe": probe(0, 2),
        "livenessProbe": probe(10, 10),
        "resources": resources(instance),
        "volumeMounts": [
            { "name": "config", "mountPath": CONFIG_DIR, "readOnly": true },
            { "name": "data", "mountPath": "/app/data" },
        ],
    });
    if shape.sigint_hook {
        container["lifecycle"] = json!({
            "preStop": { "exec": { "command": ["/bin/sh", "-c", SIGINT_HOOK] } },
        });
    }
    let volume = shape.data_size.map(|size| {
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": size } },
        });
        if let Some(class) = shape.storage_class {
            spec["storageClassName"] = json!(class);
        }
        let mut metadata = metadata.clone();
        metadata["name"] = json!(volume_name(id));
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata,
            "spec": spec,
        })
    });
    let data_volume = match &volume {
        Some(_) => {
            json!({ "name": "data", "persistentVolumeClaim": { "claimName": volume_name(id) } })
        }
        None => json!({ "name": "data", "emptyDir": {} }),
    };
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            // One server per instance, ever: the old pod is gone before a new one starts.
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": selector(shape.deployment, id) },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": { ANNOTATION_CONFIG: digest },
                },
                "spec": {
                    "terminationGracePeriodSeconds": shape.stop_grace_secs,
                    "containers": [container],
                    "volumes": [
                        { "name": "config", "configMap": { "name": name } },
                        data_volume,
                    ],
                },
            },
        },
    });
    Ok(Objects {
        config_map: serde_json::from_value(config_map).expect("a valid ConfigMap"),
        volume: volume.map(|v| serde_json::from_value(v).expect("a valid claim")),
        deployment: serde_json::from_value(deployment).expect("a valid Deployment"),
        service: serde_json::from_value(service).expect("a valid Service"),
        endpoints,
    })
}

/// Requests and limits from the spec: the same value for both, so an instance gets what it
/// asked for and never more.
fn resources(instance: &Instance) -> serde_json::Value {
    let mut amounts = serde_json::Map::new();
    if let Some(r) = &instance.spec.resources {
        if let Some(mb) = r.memory_mb {
            amounts.insert("memory".into(), json!(format!("{mb}Mi")));
        }
        if let Some(milli) = r.cpu_millis {
            amounts.insert("cpu".into(), json!(format!("{milli}m")));
        }
    }
    if amounts.is_empty() {
        return json!({});
    }
    json!({ "requests": amounts, "limits": amounts })
}

/// A port name: `api`, else the kind's initial and the port (`s-8081`, `r-8082`). Always a
/// valid IANA service name (at most 15 characters, a letter, no double hyphen) and unique,
/// whatever the component ids look like.
fn port_name(endpoint: &str, port: u16) -> String {
    match endpoint.split_once(':') {
        None if endpoint == "api" => "api".to_owned(),
        Some(("source", _)) => format!("s-{port}"),
        Some(("reaction", _)) => format!("r-{port}"),
        _ => format!("p-{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use draas_protocol::{
        InstanceSpec, InstanceState, Platform, Resources, RestartPolicy, RuntimeInfo, Timestamp,
    };

    fn instance() -> Instance {
        let config = DrasiConfig::from_json_value(json!({
            "id": "sensors",
            "sources": [{"kind": "http", "id": "events"}],
            "queries": [{"id": "hot", "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id", "sources": [{"sourceId": "events"}]}],
            "reactions": [{"kind": "log", "id": "out", "queries": ["hot"]}],
        }))
        .unwrap();
        Instance {
            id: "0190c6a2-7d4e-7b1a-9a3f-2f6c1e0d5b11".parse().unwrap(),
            tenant: "default".into(),
            spec: InstanceSpec {
                name: "sensors".into(),
                description: None,
                platform: Platform::Kubernetes,
                config,
                labels: Default::default(),
                restart_policy: RestartPolicy::default(),
                image: None,
                resources: Some(Resources {
                    memory_mb: Some(256),
                    cpu_millis: Some(500),
                }),
                env: Default::default(),
                desired_state: None,
            },
            state: InstanceState::Created,
            generation: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            runtime: RuntimeInfo::default(),
        }
    }

    fn shape(sigint_hook: bool) -> Shape<'static> {
        Shape {
            deployment: "draas",
            namespace: "drasi",
            image: "ghcr.io/drasi-project/drasi-server:latest",
            image_pull_policy: "IfNotPresent",
            stop_grace_secs: 10,
            sigint_hook,
            data_size: Some("1Gi"),
            storage_class: None,
            egress: &EgressPolicy::DenyLocal,
            args: &[],
        }
    }

    /// Compares `value` with `golden/<name>.json`, or rewrites it under `UPDATE_GOLDEN=1`.
    fn golden(name: &str, value: &impl serde::Serialize) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/driver/kubernetes/golden")
            .join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(value).unwrap() + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
        assert_eq!(text, want, "{name} differs from {}", path.display());
    }

    #[test]
    fn objects_match_the_golden_files() {
        let objects = objects(&instance(), &shape(true)).unwrap();
        golden("configmap", &objects.config_map);
        golden("deployment", &objects.deployment);
        golden("service", &objects.service);
        golden("volume", &objects.volume);
        golden("endpoints", &objects.endpoints);
    }

    #[test]
    fn the_hook_is_optional_and_the_config_digest_follows_the_config() {
        let a = objects(&instance(), &shape(false)).unwrap();
        let pod = a
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        assert!(pod.containers[0].lifecycle.is_none());
        let mut changed = instance();
        changed.spec.config.queries[0].query =
            "MATCH (s:Sensor) WHERE s.temperature > 80 RETURN s.id".into();
        let b = objects(&changed, &shape(false)).unwrap();
        let digest = |o: &Objects| {
            o.deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[ANNOTATION_CONFIG]
                .clone()
        };
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn without_a_data_size_the_data_lives_in_an_empty_dir() {
        let shape = Shape {
            data_size: None,
            ..shape(true)
        };
        let objects = objects(&instance(), &shape).unwrap();
        assert!(objects.volume.is_none());
        let pod = objects.deployment.spec.unwrap().template.spec.unwrap();
        let data = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert!(data.empty_dir.is_some() && data.persistent_volume_claim.is_none());
    }

    #[test]
    fn port_names_are_valid_and_distinct() {
        assert_eq!(port_name("api", 8080), "api");
        assert_eq!(port_name("source:sensor-readings-1", 8081), "s-8081");
        assert_eq!(port_name("source:sensor-readings-2", 8082), "s-8082");
        assert_eq!(port_name("reaction:My__SSE", 8083), "r-8083");
    }
}

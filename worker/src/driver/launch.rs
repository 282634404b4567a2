//! What every platform gives an instance, the same way: the rendered config and the
//! environment. A tenant's config is hostile input, so
//! - the config carries the DRaaS instance id (logs and the runtime's API agree with DRaaS),
//!   and its listeners are the ones the platform assigned;
//! - the environment is built from nothing: the instance's own `env`, `NO_COLOR`, the egress
//!   proxy settings and (process platform only) the variables the operator passes through;
//!   never the worker's environment;
//! - [`render`] checks the config *as the workload will read it*, after `${NAME}`
//!   interpolation with that environment: listeners must still be the assigned ones, literal
//!   outbound URLs and database hosts within the egress policy (judged with the resolved
//!   ports), file paths inside the instance's directory and every port a number, whatever a
//!   variable's value did.

use draas_protocol::drasi::{DrasiConfig, interpolate};
use draas_protocol::env::{self, InstanceEnv};
use draas_protocol::{EgressPolicy, Instance};

use super::DriverError;

/// The egress proxy's port inside an instance's own network namespace (Docker bridge or
/// named networks, Kubernetes pods).
pub const EGRESS_PROXY_INNER_PORT: u16 = 7999;

/// Renders `config` (listeners already assigned) for `instance` and checks the result as the
/// workload will see it. Returns the YAML to write.
pub fn render(
    instance: &Instance,
    config: &mut DrasiConfig,
    egress: &EgressPolicy,
) -> Result<String, DriverError> {
    if config.instances.is_empty() {
        config.id = Some(instance.id.to_string());
    }
    config.clear_plugin_settings();
    let yaml = config.to_yaml();
    let refuse = |message: String| DriverError::Config(env::scrub(&message, &instance.spec.env));
    let seen = interpolate(&yaml, &env::lookup(&instance.spec.env))
        .and_then(|text| DrasiConfig::from_yaml_str(&text))
        .map_err(|e| refuse(format!("the config does not resolve: {e}")))?;
    if seen.listeners() != config.listeners() {
        return Err(refuse(
            "after variable interpolation the config's listeners differ from the ones the \
             platform assigned; listener addresses are the platform's"
                .into(),
        ));
    }
    seen.check_egress(egress)
        .and_then(|()| seen.check_paths())
        .and_then(|()| seen.check_ports_resolved())
        .map_err(|e| refuse(format!("config.{}: {}", e.path, e.message)))?;
    Ok(yaml)
}

/// The whole environment of an instance. `proxy` is the egress proxy's `host:port` as the
/// instance reaches it; with [`EgressPolicy::Allow`] no proxy is set.
pub fn environment(
    spec_env: &InstanceEnv,
    egress: &EgressPolicy,
    proxy: Option<&str>,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = spec_env
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.value()?.to_owned())))
        .collect();
    vars.push(("NO_COLOR".into(), "1".into()));
    if *egress != EgressPolicy::Allow
        && let Some(proxy) = proxy
    {
        let url = format!("http://{proxy}");
        vars.push(("DRAAS_EGRESS".into(), egress.to_string()));
        vars.push(("DRAAS_EGRESS_PROXY".into(), proxy.to_owned()));
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            vars.push((name.into(), url.clone()));
            vars.push((name.to_ascii_lowercase(), url.clone()));
        }
        vars.push(("NO_PROXY".into(), String::new()));
        vars.push(("no_proxy".into(), String::new()));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use draas_protocol::{InstanceSpec, InstanceState, Platform, RuntimeInfo, Timestamp};

    fn instance(config: serde_json::Value, env: serde_json::Value) -> Instance {
        Instance {
            id: uuid::Uuid::from_u128(42),
            tenant: "default".into(),
            spec: InstanceSpec {
                name: "x".into(),
                description: None,
                platform: Platform::Process,
                labels: Default::default(),
                config: DrasiConfig::from_json_value(config).unwrap(),
                restart_policy: Default::default(),
                image: None,
                resources: None,
                env: serde_json::from_value(env).unwrap(),
                desired_state: None,
            },
            state: InstanceState::Starting,
            generation: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            runtime: RuntimeInfo::default(),
        }
    }

    fn launch(inst: &Instance, egress: &EgressPolicy) -> Result<String, DriverError> {
        let mut config = inst.spec.config.clone();
        let mut next = 20_000;
        config
            .assign_ports("127.0.0.1", &mut || {
                next += 1;
                Ok(next)
            })
            .unwrap();
        render(inst, &mut config, egress)
    }

    #[test]
    fn the_rendered_config_carries_the_instance_id_and_resolves() {
        let inst = instance(
            serde_json::json!({"sources": [{"kind": "http", "id": "in"}]}),
            serde_json::json!({}),
        );
        let yaml = launch(&inst, &EgressPolicy::default()).unwrap();
        assert!(yaml.contains(&format!("id: {}", inst.id)), "{yaml}");
    }

    #[test]
    fn a_variable_cannot_move_a_listener_or_aim_outside_the_policy() {
        // A value cannot add a line (the API refuses control characters), but a config whose
        // resolved form differs is refused here too, whatever produced it.
        let inst = instance(
            serde_json::json!({
                "sources": [{"kind": "mock", "id": "m"}],
                "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
                "reactions": [{"kind": "http", "id": "h", "queries": ["q"], "baseUrl": "${TARGET}"}]}),
            serde_json::json!({"TARGET": {"value": "http://169.254.169.254", "secret": true}}),
        );
        let err = launch(&inst, &EgressPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("reactions[0].baseUrl"), "{err}");
        assert!(
            !err.contains("http://169.254.169.254"),
            "a secret value leaked: {err}"
        );
        launch(&inst, &EgressPolicy::Allow).unwrap();
    }

    #[test]
    fn a_database_port_is_checked_as_resolved() {
        let inst = |port: &str| {
            instance(
                serde_json::json!({
                    "port": "${API_PORT:-8080}",
                    "sources": [{"kind": "postgres", "id": "pg", "host": "db.example.com",
                                 "port": "${DB_PORT:-5432}", "database": "d", "user": "u"}]}),
                serde_json::json!({"DB_PORT": {"value": port, "secret": true}}),
            )
        };
        // The rendered config keeps the reference; the workload resolves it.
        let yaml = launch(&inst("6543"), &EgressPolicy::default()).unwrap();
        assert!(yaml.contains("${DB_PORT:-5432}"), "{yaml}");
        for bad in ["s3cr3t", "${OTHER:-1}"] {
            let err = launch(&inst(bad), &EgressPolicy::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("sources[0].port"), "{err}");
            assert!(!err.contains("s3cr3t"), "a secret value leaked: {err}");
        }
    }

    #[test]
    fn the_environment_is_built_from_nothing() {
        let spec_env = serde_json::from_value(serde_json::json!({"A": "1"})).unwrap();
        let vars = environment(&spec_env, &EgressPolicy::default(), Some("127.0.0.1:7999"));
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("NO_COLOR"), Some("1"));
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:7999"));
        assert_eq!(get("DRAAS_EGRESS"), Some("deny-local"));
        assert_eq!(get("HOME"), None);
        let open = environment(&spec_env, &EgressPolicy::Allow, Some("127.0.0.1:7999"));
        assert!(open.iter().all(|(n, _)| !n.contains("PROXY")));
    }
}

//! Bootstrap providers (a source's initial data): the instance's `bootstrapProviders` and each
//! source's `bootstrapProvider` (inline, or the id of one of those) read as the typed model and
//! checked before anything starts ([`check`]), then created through the plugin's descriptor
//! ([`create`]). A `postgres` provider takes every connection key it leaves out from the
//! `postgres` source it serves; for other sources it must name `database` and `user` itself.

use draas_protocol::drasi::{
    BootstrapProviderConfig, BootstrapProviderEntry, BootstrapProviderRef, ConfigError,
    InstanceConfig, SourceConfig,
};
use drasi_lib::bootstrap::BootstrapProvider;
use drasi_plugin_sdk::descriptor::BootstrapPluginDescriptor;

use super::postgres;
use crate::RuntimeError;

/// The provider a source bootstraps from, ready for its plugin. `path` is the key that
/// defines it (the source's `bootstrapProvider`, or the `bootstrapProviders` entry it names).
#[derive(Debug)]
pub struct Resolved {
    pub path: String,
    pub provider: BootstrapProviderConfig,
}

/// Checks every `bootstrapProviders` entry and every source's `bootstrapProvider`.
pub fn check(prefix: &str, inst: &InstanceConfig) -> Result<(), ConfigError> {
    let entries = entries(prefix, inst)?;
    for i in 0..inst.sources.len() {
        for_source(prefix, inst, i, &entries)?;
    }
    Ok(())
}

/// The instance's `bootstrapProviders`, each with its path; ids are unique.
pub fn entries(
    prefix: &str,
    inst: &InstanceConfig,
) -> Result<Vec<(String, BootstrapProviderEntry)>, ConfigError> {
    let mut out: Vec<(String, BootstrapProviderEntry)> = Vec::new();
    for (i, value) in inst.bootstrap_providers.iter().enumerate() {
        let path = at(prefix, &format!("bootstrapProviders[{i}]"));
        let entry = BootstrapProviderEntry::from_value(value, &path)?;
        if out.iter().any(|(_, e)| e.id == entry.id) {
            return Err(ConfigError::new(
                format!("{path}.id"),
                format!("duplicate bootstrap provider id `{}`", entry.id),
            ));
        }
        out.push((path, entry));
    }
    Ok(out)
}

/// The provider source `index` bootstraps from, if any, with the keys it leaves out filled.
pub fn for_source(
    prefix: &str,
    inst: &InstanceConfig,
    index: usize,
    entries: &[(String, BootstrapProviderEntry)],
) -> Result<Option<Resolved>, ConfigError> {
    let source = &inst.sources[index];
    let Some(value) = source.bootstrap_provider() else {
        return Ok(None);
    };
    let key = at(prefix, &format!("sources[{index}].bootstrapProvider"));
    let (path, provider) = match BootstrapProviderRef::from_value(value, &key)? {
        BootstrapProviderRef::Inline(provider) => (key, provider),
        BootstrapProviderRef::Id(id) => {
            let Some((path, entry)) = entries.iter().find(|(_, e)| e.id == id) else {
                let defined: Vec<&str> = entries.iter().map(|(_, e)| e.id.as_str()).collect();
                return Err(ConfigError::new(
                    key,
                    format!(
                        "unknown bootstrap provider `{id}`; defined bootstrap providers: {}",
                        if defined.is_empty() {
                            "(none)".to_owned()
                        } else {
                            defined.join(", ")
                        }
                    ),
                ));
            };
            (path.clone(), entry.provider.clone())
        }
    };
    let provider = match (provider, source) {
        (BootstrapProviderConfig::Postgres(bp), SourceConfig::Postgres(pg)) => {
            BootstrapProviderConfig::Postgres(bp.filled_from(pg))
        }
        (BootstrapProviderConfig::Postgres(bp), _) => {
            for (name, set) in [
                ("database", bp.database.is_some()),
                ("user", bp.user.is_some()),
            ] {
                if !set {
                    return Err(ConfigError::new(
                        format!("{path}.{name}"),
                        format!(
                            "required: only a postgres source supplies it, and source `{}` is {}",
                            source.id(),
                            source.kind()
                        ),
                    ));
                }
            }
            BootstrapProviderConfig::Postgres(bp)
        }
    };
    Ok(Some(Resolved { path, provider }))
}

/// Creates the provider through its plugin's descriptor.
pub async fn create(resolved: &Resolved) -> Result<Box<dyn BootstrapProvider>, RuntimeError> {
    let created = match &resolved.provider {
        BootstrapProviderConfig::Postgres(bp) => {
            // The plugin reads only its own settings; the source's are not passed.
            drasi_bootstrap_postgres::descriptor::PostgresBootstrapDescriptor
                .create_bootstrap_provider(&postgres::bootstrap_body(bp), &serde_json::Value::Null)
                .await
        }
    };
    created.map_err(|e| RuntimeError::Component {
        path: resolved.path.clone(),
        message: format!("{e:#}"),
    })
}

fn at(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}.{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use draas_protocol::drasi::DrasiConfig;

    fn instance(json: serde_json::Value) -> InstanceConfig {
        let config = DrasiConfig::from_json_value(json).unwrap();
        config.effective_instances().remove(0).1
    }

    fn pg(bootstrap: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"kind": "postgres", "id": "pg", "host": "db", "database": "shop",
                           "user": "drasi", "password": "pw", "tables": ["orders"],
                           "bootstrapProvider": bootstrap})
    }

    #[test]
    fn an_inline_provider_is_filled_from_its_source() {
        let inst =
            instance(serde_json::json!({"sources": [pg(serde_json::json!({"kind": "postgres"}))]}));
        let resolved = for_source("", &inst, 0, &entries("", &inst).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(resolved.path, "sources[0].bootstrapProvider");
        let BootstrapProviderConfig::Postgres(bp) = resolved.provider;
        assert_eq!(bp.host.as_deref(), Some("db"));
        assert_eq!(bp.password.as_deref(), Some("pw"));
        assert_eq!(bp.tables, Some(vec!["orders".to_owned()]));
    }

    #[test]
    fn a_provider_by_id_must_exist_and_other_sources_name_the_database() {
        let inst = instance(serde_json::json!({
            "bootstrapProviders": [{"id": "shared", "kind": "postgres", "port": 5433}],
            "sources": [pg(serde_json::json!("shared")), pg(serde_json::json!("nope"))]}));
        let found = entries("", &inst).unwrap();
        let resolved = for_source("", &inst, 0, &found).unwrap().unwrap();
        assert_eq!(resolved.path, "bootstrapProviders[0]");
        let BootstrapProviderConfig::Postgres(bp) = resolved.provider;
        assert_eq!(
            (bp.port, bp.database.as_deref()),
            (Some(5433.into()), Some("shop"))
        );
        let err = for_source("", &inst, 1, &found).unwrap_err();
        assert_eq!(err.path, "sources[1].bootstrapProvider");
        assert!(
            err.message.contains("defined bootstrap providers: shared"),
            "{err}"
        );

        let http = instance(serde_json::json!({"sources": [{"kind": "http", "id": "h",
            "bootstrapProvider": {"kind": "postgres", "database": "d"}}]}));
        let err = check("", &http).unwrap_err();
        assert_eq!(err.path, "sources[0].bootstrapProvider.user", "{err}");
        let dup = instance(serde_json::json!({"bootstrapProviders": [
            {"id": "a", "kind": "postgres"}, {"id": "a", "kind": "postgres"}]}));
        assert_eq!(
            check("", &dup).unwrap_err().path,
            "bootstrapProviders[1].id"
        );
    }
}

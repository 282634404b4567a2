//! What draas-runtime supports beyond the shared config model. Everything else fails with a
//! clear error naming the key; nothing is silently skipped.

use std::path::{Component, Path};

use draas_protocol::drasi::{
    ConfigError, DrasiConfig, InstanceConfig, ReactionConfig, SUPPORTED_BOOTSTRAP_KINDS,
    SUPPORTED_REACTION_KINDS, SUPPORTED_SOURCE_KINDS, SourceConfig,
};

fn at(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}.{rest}")
    }
}

fn unsupported(path: String, what: &str) -> ConfigError {
    ConfigError::new(path, format!("{what} is not supported by draas-runtime"))
}

/// Checks a validated config against what this runtime can run.
pub fn check(config: &DrasiConfig) -> Result<(), ConfigError> {
    for (i, plugin) in config.plugins.iter().enumerate() {
        let builtin = match plugin.category_and_kind() {
            Some(("source", kind)) => SUPPORTED_SOURCE_KINDS.contains(&kind),
            Some(("reaction", kind)) => SUPPORTED_REACTION_KINDS.contains(&kind),
            Some(("bootstrap", kind)) => SUPPORTED_BOOTSTRAP_KINDS.contains(&kind),
            _ => false,
        };
        if !builtin {
            let kinds: Vec<String> = SUPPORTED_SOURCE_KINDS
                .iter()
                .map(|k| format!("source/{k}"))
                .chain(
                    SUPPORTED_REACTION_KINDS
                        .iter()
                        .map(|k| format!("reaction/{k}")),
                )
                .chain(
                    SUPPORTED_BOOTSTRAP_KINDS
                        .iter()
                        .map(|k| format!("bootstrap/{k}")),
                )
                .collect();
            return Err(ConfigError::new(
                format!("plugins[{i}].ref"),
                format!(
                    "plugin `{}` is not built into draas-runtime (plugins cannot be loaded); \
                     built-in kinds: {}",
                    plugin.reference,
                    kinds.join(", ")
                ),
            ));
        }
    }
    for (prefix, instance) in config.effective_instances() {
        check_instance(&prefix, &instance)?;
    }
    Ok(())
}

fn check_instance(prefix: &str, inst: &InstanceConfig) -> Result<(), ConfigError> {
    if inst.enable_archive == Some(true) {
        return Err(unsupported(
            at(prefix, "enableArchive"),
            "the archive index",
        ));
    }
    if inst.secret_store.is_some() {
        return Err(unsupported(at(prefix, "secretStore"), "a secret store"));
    }
    if !inst.identity_providers.is_empty() {
        return Err(unsupported(
            at(prefix, "identityProviders"),
            "identity providers",
        ));
    }
    // Bootstrap providers of the supported kinds, inline or by id.
    crate::components::bootstrap::check(prefix, inst)?;
    if let Some(store) = &inst.state_store {
        check_relative(&at(prefix, "stateStore.path"), &store.path)?;
    }
    for (i, source) in inst.sources.iter().enumerate() {
        let path = |key: &str| at(prefix, &format!("sources[{i}].{key}"));
        if source.identity_provider().is_some() {
            return Err(unsupported(
                path("identityProvider"),
                "an identity provider",
            ));
        }
        if let SourceConfig::Http(http) = source {
            if http.host.is_none() {
                return Err(ConfigError::new(
                    path("host"),
                    "required for an http source",
                ));
            }
            // Every port is a number here: `DrasiConfig::validate` ran on the resolved config.
            match http.port.as_ref().and_then(|p| p.number()) {
                None => {
                    return Err(ConfigError::new(
                        path("port"),
                        "required for an http source",
                    ));
                }
                Some(0) => {
                    return Err(ConfigError::new(
                        path("port"),
                        "must be between 1 and 65535",
                    ));
                }
                Some(_) => {}
            }
        }
        // drasi-lib starts a persistent query only on sources it can replay from the query's
        // checkpoint; an http or grpc source can replay only from its write-ahead log.
        if inst.persist_index == Some(true)
            && matches!(source, SourceConfig::Http(_) | SourceConfig::Grpc(_))
            && !crate::components::durable(source)
        {
            return Err(ConfigError::new(
                path("durability"),
                "persistIndex: true needs `durability: {enabled: true}` on http and grpc \
                 sources (persistent queries replay them from their write-ahead log)",
            ));
        }
        if let SourceConfig::Grpc(grpc) = source {
            if grpc.port.as_ref().is_some_and(|p| *p == 0) {
                return Err(ConfigError::new(
                    path("port"),
                    "must be between 1 and 65535",
                ));
            }
            if grpc.timeout_ms.as_ref().and_then(|t| t.get()) == Some(0) {
                return Err(ConfigError::new(path("timeoutMs"), "must be at least 1"));
            }
        }
    }
    for (i, query) in inst.queries.iter().enumerate() {
        let path = |key: &str| at(prefix, &format!("queries[{i}].{key}"));
        if !query.middleware.is_empty() {
            return Err(unsupported(path("middleware"), "source middleware"));
        }
        if query.storage_backend.is_some() {
            return Err(ConfigError::new(
                path("storageBackend"),
                "only the default in-memory index is supported by draas-runtime",
            ));
        }
    }
    for (i, reaction) in inst.reactions.iter().enumerate() {
        if reaction.identity_provider().is_some() {
            return Err(unsupported(
                at(prefix, &format!("reactions[{i}].identityProvider")),
                "an identity provider",
            ));
        }
        if let ReactionConfig::Sse(sse) = reaction
            && sse.port.as_ref().is_some_and(|p| *p == 0)
        {
            return Err(ConfigError::new(
                at(prefix, &format!("reactions[{i}].port")),
                "must be between 1 and 65535",
            ));
        }
        // draas-runtime's tonic is built without TLS, so an https endpoint could never
        // connect; grpc:// (the plugin's name for http://) and http:// are plain-text HTTP/2.
        if let Some(grpc) = reaction.as_grpc()
            && grpc.endpoint.to_ascii_lowercase().starts_with("https://")
        {
            return Err(ConfigError::new(
                at(prefix, &format!("reactions[{i}].endpoint")),
                format!(
                    "`{}`: TLS (https://) is not supported by draas-runtime's gRPC client; \
                     use grpc://host:port",
                    grpc.endpoint
                ),
            ));
        }
        // drasi-reaction-profiler's report timer panics on a zero interval, and a zero window
        // keeps no samples.
        if let ReactionConfig::Profiler(profiler) = reaction {
            for (key, value) in [
                ("windowSize", &profiler.window_size),
                ("reportIntervalSecs", &profiler.report_interval_secs),
            ] {
                if value.as_ref().and_then(|v| v.get()) == Some(0) {
                    return Err(ConfigError::new(
                        at(prefix, &format!("reactions[{i}].{key}")),
                        "must be at least 1",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// On-disk state must stay under the working directory so that instances with different
/// working directories never collide.
fn check_relative(path_key: &str, path: &str) -> Result<(), ConfigError> {
    let p = Path::new(path);
    let escapes = p.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if path.is_empty() || escapes {
        return Err(ConfigError::new(
            path_key,
            format!(
                "`{path}` must be a relative path inside the working directory \
                 (no `..`, not absolute)"
            ),
        ));
    }
    Ok(())
}

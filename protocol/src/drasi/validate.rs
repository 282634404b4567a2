//! Semantic checks on a parsed [`DrasiConfig`]: unique ids, resolvable references, valid values.

use std::collections::HashSet;

use super::error::join_path;
use super::warnings::ConfigWarning;
use super::{ConfigError, DrasiConfig, InstanceConfig, LOG_LEVELS};

impl DrasiConfig {
    /// Checks what parsing cannot: ids are non-empty and unique per kind, every query source
    /// and every reaction query exists, pipeline steps name declared middleware, `logLevel`
    /// is a known level, every port is a number (run it on a resolved config). (`queryLanguage` and component kinds are checked while parsing.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(level) = &self.log_level
            && !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str())
        {
            return Err(ConfigError::new(
                "logLevel",
                format!(
                    "unknown log level `{level}`; expected one of: {}",
                    LOG_LEVELS.join(", ")
                ),
            ));
        }
        if self.port.as_ref().is_some_and(|port| *port == 0) {
            return Err(ConfigError::new("port", "must be between 1 and 65535"));
        }
        // Checked on the config as the workload reads it: every port is a number by now.
        self.check_ports_resolved()?;
        let mut instance_ids = HashSet::new();
        for (i, instance) in self.instances.iter().enumerate() {
            if let Some(id) = &instance.id
                && !instance_ids.insert(id.as_str())
            {
                return Err(ConfigError::new(
                    format!("instances[{i}].id"),
                    format!("duplicate instance id `{id}`"),
                ));
            }
        }
        for (prefix, instance) in self.effective_instances() {
            validate_instance(&prefix, &instance)?;
        }
        Ok(())
    }

    /// [`DrasiConfig::validate`] plus the rules for configs a user hands to DRaaS: every file
    /// path is relative and stays inside the instance's directory
    /// ([`DrasiConfig::check_paths`]). A drasi-server config is otherwise accepted as it is:
    /// the listener addresses it sets (the top-level `host` and `port` of the REST API, those
    /// of http and grpc sources and sse reactions) are the platform's and get replaced, and the
    /// returned warnings ([`DrasiConfig::warnings`]) say so.
    pub fn validate_user_supplied(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        self.check_paths()?;
        self.validate()?;
        Ok(self.warnings())
    }
}

fn validate_instance(prefix: &str, instance: &InstanceConfig) -> Result<(), ConfigError> {
    let at = |rest: String| join_path(prefix, &rest);

    let mut sources = HashSet::new();
    for (i, source) in instance.sources.iter().enumerate() {
        check_id(
            &at(format!("sources[{i}].id")),
            source.id(),
            "source",
            &mut sources,
        )?;
    }

    let mut queries = HashSet::new();
    for (i, query) in instance.queries.iter().enumerate() {
        check_id(
            &at(format!("queries[{i}].id")),
            &query.id,
            "query",
            &mut queries,
        )?;
        if query.query.trim().is_empty() {
            return Err(ConfigError::new(
                at(format!("queries[{i}].query")),
                "must not be empty",
            ));
        }
        let middleware: HashSet<&str> = query.middleware.iter().map(|m| m.name.as_str()).collect();
        for (j, sub) in query.sources.iter().enumerate() {
            if !sources.contains(sub.source_id.as_str()) {
                return Err(ConfigError::new(
                    at(format!("queries[{i}].sources[{j}].sourceId")),
                    format!(
                        "unknown source `{}`; defined sources: {}",
                        sub.source_id,
                        list(&sources)
                    ),
                ));
            }
            for (k, step) in sub.pipeline.iter().enumerate() {
                if !middleware.contains(step.as_str()) {
                    return Err(ConfigError::new(
                        at(format!("queries[{i}].sources[{j}].pipeline[{k}]")),
                        format!(
                            "unknown middleware `{step}`; declare it under the query's `middleware`"
                        ),
                    ));
                }
            }
        }
    }

    let mut reactions = HashSet::new();
    for (i, reaction) in instance.reactions.iter().enumerate() {
        check_id(
            &at(format!("reactions[{i}].id")),
            reaction.id(),
            "reaction",
            &mut reactions,
        )?;
        for (j, query) in reaction.queries().iter().enumerate() {
            if !queries.contains(query.as_str()) {
                return Err(ConfigError::new(
                    at(format!("reactions[{i}].queries[{j}]")),
                    format!(
                        "unknown query `{query}`; defined queries: {}",
                        list(&queries)
                    ),
                ));
            }
        }
        // A grpc reaction's endpoint must name a host (a `${VAR}` is judged once resolved).
        if let Some(r) = reaction.as_grpc()
            && !r.endpoint.contains("${")
            && let Err(why) = r.outbound_address()
        {
            return Err(ConfigError::new(
                at(format!("reactions[{i}].endpoint")),
                why,
            ));
        }
    }
    Ok(())
}

fn check_id<'a>(
    path: &str,
    id: &'a str,
    what: &str,
    seen: &mut HashSet<&'a str>,
) -> Result<(), ConfigError> {
    if id.trim().is_empty() {
        return Err(ConfigError::new(
            path,
            format!("{what} id must not be empty"),
        ));
    }
    if !seen.insert(id) {
        return Err(ConfigError::new(
            path,
            format!("duplicate {what} id `{id}`"),
        ));
    }
    Ok(())
}

fn list(ids: &HashSet<&str>) -> String {
    if ids.is_empty() {
        return "(none)".to_string();
    }
    let mut ids: Vec<&str> = ids.iter().copied().collect();
    ids.sort_unstable();
    ids.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_configs_keep_file_paths_inside_the_instance() {
        let config = |path: &str| {
            DrasiConfig::from_json_value(serde_json::json!({
                "instances": [{"id": "a", "stateStore": {"kind": "redb", "path": path}}]
            }))
            .unwrap()
        };
        config("state/a.redb").validate_user_supplied().unwrap();
        for bad in ["/tmp/a.redb", "../a.redb"] {
            let err = config(bad).validate_user_supplied().unwrap_err();
            assert_eq!(err.path, "instances[0].stateStore.path", "{bad}");
        }
        // Operators' own configs (read by draas-runtime's checks) are not judged here.
        config("/tmp/a.redb").validate().unwrap();
    }
}

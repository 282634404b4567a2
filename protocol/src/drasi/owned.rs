//! What a tenant's config may not decide: listener addresses (the platform assigns every
//! one), outbound destinations (the operator's [`EgressPolicy`]) and references to variables
//! outside the instance's own environment.
//!
//! - [`DrasiConfig::listeners`]: every listener the config declares, with its path.
//! - [`DrasiConfig::outbound_urls`]: every literal outbound URL, with its path.
//! - [`DrasiConfig::check_egress`]: those URLs against a policy.
//! - [`DrasiConfig::resolve`]: `${NAME}` resolved string by string, naming the field of an
//!   unresolved reference.

use serde_json::Value;

use super::error::join_path;
use super::{ConfigError, DrasiConfig, ReactionConfig, SourceConfig, interpolate};
use crate::egress::EgressPolicy;

/// drasi-reaction-http's base URL when the config names none.
pub const HTTP_REACTION_DEFAULT_BASE_URL: &str = "http://localhost";

/// One listener of a config: its path (`sources[0]`), host and port as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub path: String,
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl DrasiConfig {
    /// The REST API (path ``) and every listening component (http sources, sse reactions).
    pub fn listeners(&self) -> Vec<Listener> {
        let mut out = vec![Listener {
            path: String::new(),
            host: self.host.clone(),
            port: self.port,
        }];
        for (prefix, instance) in self.effective_instances() {
            for (i, source) in instance.sources.iter().enumerate() {
                if let SourceConfig::Http(s) = source {
                    out.push(Listener {
                        path: join_path(&prefix, &format!("sources[{i}]")),
                        host: s.host.clone(),
                        port: s.port,
                    });
                }
            }
            for (i, reaction) in instance.reactions.iter().enumerate() {
                if let ReactionConfig::Sse(r) = reaction {
                    out.push(Listener {
                        path: join_path(&prefix, &format!("reactions[{i}]")),
                        host: r.host.clone(),
                        port: r.port,
                    });
                }
            }
        }
        out
    }

    /// Every outbound URL the config names literally, with the path of its key. A URL whose
    /// host is a template (`{{…}}`) cannot be judged here; the egress proxy judges it when
    /// the request is made.
    pub fn outbound_urls(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (prefix, instance) in self.effective_instances() {
            for (i, reaction) in instance.reactions.iter().enumerate() {
                let ReactionConfig::Http(r) = reaction else {
                    continue;
                };
                let at = |rest: &str| join_path(&prefix, &format!("reactions[{i}].{rest}"));
                let base = r
                    .base_url
                    .clone()
                    .unwrap_or_else(|| HTTP_REACTION_DEFAULT_BASE_URL.to_owned());
                out.push((at("baseUrl"), base.clone()));
                let Some(templates) = &r.output_templates else {
                    continue;
                };
                let routes = templates
                    .routes
                    .iter()
                    .map(|(q, calls)| (format!("routes.{q}"), calls))
                    .chain(
                        templates
                            .default_template
                            .iter()
                            .map(|c| ("defaultTemplate".to_owned(), c)),
                    );
                for (route, calls) in routes {
                    for (op, call) in [
                        ("added", &calls.added),
                        ("updated", &calls.updated),
                        ("deleted", &calls.deleted),
                    ] {
                        let Some(call) = call else { continue };
                        let lower = call.url.to_ascii_lowercase();
                        let url = if lower.starts_with("http://") || lower.starts_with("https://") {
                            call.url.clone()
                        } else {
                            format!("{base}{}", call.url)
                        };
                        out.push((at(&format!("outputTemplates.{route}.{op}.url")), url));
                    }
                }
            }
        }
        out
    }

    /// Checks every literal outbound URL against `policy`, naming the first that breaks it.
    pub fn check_egress(&self, policy: &EgressPolicy) -> Result<(), ConfigError> {
        if *policy == EgressPolicy::Allow {
            return Ok(());
        }
        for (path, text) in self.outbound_urls() {
            let url = match url::Url::parse(&text) {
                Ok(url) => url,
                // A templated URL is only known when the request is made.
                Err(_) if text.contains("{{") => continue,
                Err(e) => return Err(ConfigError::new(path, format!("`{text}`: {e}"))),
            };
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::new(
                    path,
                    format!("`{text}`: only http and https URLs are allowed"),
                ));
            }
            let Some(host) = url.host_str() else {
                return Err(ConfigError::new(path, format!("`{text}` has no host")));
            };
            if host.contains("{{") || host.contains("%7B%7B") {
                continue;
            }
            policy
                .check_host(host)
                .map_err(|why| ConfigError::new(path, format!("`{text}`: {why}")))?;
        }
        Ok(())
    }

    /// Resolves `${NAME}` in every string of the config with `lookup`, the way the runtime
    /// will; an unresolved reference is an error naming the field that holds it.
    pub fn resolve(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut doc = serde_json::to_value(self)
            .map_err(|e| ConfigError::new("", format!("cannot serialize the config: {e}")))?;
        resolve_strings(&mut doc, String::new(), lookup)?;
        DrasiConfig::from_json_value(doc)
    }
}

fn resolve_strings(
    value: &mut Value,
    path: String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains("${") => {
            let resolved = interpolate(text, lookup).map_err(|e| {
                let message = e.message.trim_start_matches("line 1: ").to_owned();
                ConfigError::new(path.clone(), message)
            })?;
            *text = resolved;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_strings(item, format!("{path}[{i}]"), lookup)?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                resolve_strings(item, join_path(&path, key), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> DrasiConfig {
        DrasiConfig::from_json_value(json).unwrap()
    }

    fn http_reaction(base: Option<&str>, url: &str) -> DrasiConfig {
        let mut r = serde_json::json!({"kind": "http", "id": "out", "queries": ["q"],
            "outputTemplates": {"defaultTemplate": {"added": {"url": url, "method": "POST"}}}});
        if let Some(base) = base {
            r["baseUrl"] = base.into();
        }
        config(serde_json::json!({
            "sources": [{"kind": "mock", "id": "m"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
            "reactions": [r]}))
    }

    #[test]
    fn egress_names_the_field_of_a_denied_url() {
        let policy = EgressPolicy::default();
        let err = http_reaction(None, "/x").check_egress(&policy).unwrap_err();
        assert_eq!(err.path, "reactions[0].baseUrl");
        let err = http_reaction(Some("https://example.com"), "http://169.254.169.254/latest")
            .check_egress(&policy)
            .unwrap_err();
        assert_eq!(
            err.path,
            "reactions[0].outputTemplates.defaultTemplate.added.url"
        );
        // The userinfo trick: the host is what follows `@`.
        let err = http_reaction(Some("http://example.com@127.0.0.1:9"), "/x")
            .check_egress(&policy)
            .unwrap_err();
        assert_eq!(err.path, "reactions[0].baseUrl");
        http_reaction(Some("https://example.com"), "/hook/{{after.id}}")
            .check_egress(&policy)
            .unwrap();
        http_reaction(None, "/x")
            .check_egress(&EgressPolicy::Allow)
            .unwrap();
        let err = http_reaction(Some("file:///etc/passwd"), "")
            .check_egress(&policy)
            .unwrap_err();
        assert!(err.message.contains("only http and https"), "{err}");
    }

    #[test]
    fn resolve_names_the_field_of_an_unresolved_reference() {
        let c = config(serde_json::json!({
            "sources": [{"kind": "mock", "id": "m"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN '${GREETING}' AS g, '${X:-d}' AS x",
                         "sources": [{"sourceId": "m"}]}]}));
        let err = c.resolve(&|_| None).unwrap_err();
        assert_eq!(err.path, "queries[0].query");
        assert!(err.message.contains("`GREETING`"), "{err}");
        let ok = c
            .resolve(&|n| (n == "GREETING").then(|| "hi".to_owned()))
            .unwrap();
        assert_eq!(ok.queries[0].query, "MATCH (n) RETURN 'hi' AS g, 'd' AS x");
    }

    #[test]
    fn listeners_cover_api_sources_and_sse_reactions() {
        let c = config(serde_json::json!({
            "sources": [{"kind": "http", "id": "h", "host": "0.0.0.0", "port": 9000}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "h"}]}],
            "reactions": [{"kind": "sse", "id": "s", "queries": ["q"]}]}));
        let l = c.listeners();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].path, "sources[0]");
        assert_eq!(l[1].port, Some(9000));
        assert_eq!(l[2].path, "reactions[0]");
    }
}

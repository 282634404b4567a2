//! What a tenant's config may not decide: listener addresses (the platform assigns every
//! one), outbound destinations (the operator's [`EgressPolicy`]) and references to variables
//! outside the instance's own environment.
//!
//! - [`DrasiConfig::listeners`]: every listener the config declares, with its path.
//! - [`DrasiConfig::outbound_urls`]: every literal outbound URL, with its path.
//! - [`DrasiConfig::check_egress`]: those URLs against a policy.
//! - [`DrasiConfig::resolve`]: `${NAME}` resolved where drasi-server resolves it (the whole
//!   value of a settings field, [`super::references`]), naming the field of an unresolved
//!   reference.
//! - [`DrasiConfig::file_paths`] and [`DrasiConfig::check_paths`]: every file path the config
//!   names must be relative and stay inside the instance's directory.

use serde_json::Value;

use super::error::join_path;
use super::interpolate::{resolve_value, unaccepted_value};
use super::{ConfigError, DrasiConfig, Port, ReactionConfig, SourceConfig};
use crate::egress::EgressPolicy;

/// drasi-reaction-http's base URL when the config names none.
pub const HTTP_REACTION_DEFAULT_BASE_URL: &str = "http://localhost";

/// One listener of a config: its path (`sources[0]`), host and port as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub path: String,
    pub host: Option<String>,
    pub port: Option<Port>,
}

impl DrasiConfig {
    /// The REST API (path ``) and every listening component (http and grpc sources, sse
    /// reactions).
    pub fn listeners(&self) -> Vec<Listener> {
        let mut out = vec![Listener {
            path: String::new(),
            host: self.host.clone(),
            port: self.port.clone(),
        }];
        for (prefix, instance) in self.effective_instances() {
            for (i, source) in instance.sources.iter().enumerate() {
                let (host, port) = match source {
                    SourceConfig::Http(s) => (&s.host, &s.port),
                    SourceConfig::Grpc(s) => (&s.host, &s.port),
                    _ => continue,
                };
                out.push(Listener {
                    path: join_path(&prefix, &format!("sources[{i}]")),
                    host: host.clone(),
                    port: port.clone(),
                });
            }
            for (i, reaction) in instance.reactions.iter().enumerate() {
                if let ReactionConfig::Sse(r) = reaction {
                    out.push(Listener {
                        path: join_path(&prefix, &format!("reactions[{i}]")),
                        host: r.host.clone(),
                        port: r.port.clone(),
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
                let Some(r) = reaction.as_http() else {
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
        // Direct connections (postgres sources, bootstrap providers, stored-procedure
        // reactions, grpc reactions' endpoints) are judged by their literal host the same way.
        for address in self.outbound_addresses() {
            if address.host.contains("{{") {
                continue;
            }
            policy.check_host(&address.host).map_err(|why| {
                ConfigError::new(
                    address.key,
                    format!("`{}:{}`: {why}", address.host, address.port),
                )
            })?;
        }
        Ok(())
    }

    /// Resolves the config's `${NAME}` references with `lookup`, by the rules the runtime and
    /// the worker use ([`super::interpolate`]: whole values of settings fields only); an
    /// unresolved reference is an error naming the field that holds it. A reference whose
    /// value the field does not accept (a port or a timeout that is not a number) is an error
    /// naming the field and the reference, never the value (it may be a secret). Every port
    /// and every other settings field of the result holds a value, no reference.
    pub fn resolve(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let written = serde_json::to_value(self)
            .map_err(|e| ConfigError::new("", format!("cannot serialize the config: {e}")))?;
        let mut doc = written.clone();
        resolve_value(&mut doc, lookup)?;
        let resolved = DrasiConfig::from_json_value(doc.clone())
            .map_err(|e| unaccepted_value(e, &written, &doc))?;
        resolved.check_ports_resolved()?;
        Ok(resolved)
    }
}

/// Keys of plugin-defined (verbatim) settings whose values are file paths: names ending in
/// one of these, any case (`filePaths`, `certFile`, `dataDir`, `path`).
const PATH_KEY_ENDINGS: &[&str] = &["path", "paths", "dir", "directory", "file", "files"];

impl DrasiConfig {
    /// Every file path the config names, with the path of its key: `solutionsDir`, each
    /// instance's `stateStore.path`, and, inside the settings kept verbatim for plugins
    /// (secret stores, identity and bootstrap providers), every string under a key that names
    /// a path, file or directory.
    pub fn file_paths(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(dir) = &self.solutions_dir {
            out.push(("solutionsDir".to_owned(), dir.clone()));
        }
        for (prefix, inst) in self.effective_instances() {
            let at = |rest: &str| join_path(&prefix, rest);
            if let Some(store) = &inst.state_store {
                out.push((at("stateStore.path"), store.path.clone()));
            }
            if let Some(secrets) = &inst.secret_store {
                verbatim_paths(secrets, at("secretStore"), false, &mut out);
            }
            for (key, list) in [
                ("identityProviders", &inst.identity_providers),
                ("bootstrapProviders", &inst.bootstrap_providers),
            ] {
                for (i, v) in list.iter().enumerate() {
                    verbatim_paths(v, at(&format!("{key}[{i}]")), false, &mut out);
                }
            }
            for (i, source) in inst.sources.iter().enumerate() {
                if let Some(v) = source.bootstrap_provider() {
                    let key = at(&format!("sources[{i}].bootstrapProvider"));
                    verbatim_paths(v, key, false, &mut out);
                }
            }
        }
        out
    }

    /// Checks that every file path of the config is relative and has no `..`, so whatever
    /// runs the instance resolves it inside the instance's own directory; the first that is
    /// not is an error naming its key (`stateStore.path`).
    pub fn check_paths(&self) -> Result<(), ConfigError> {
        for (key, path) in self.file_paths() {
            check_confined(&key, &path)?;
        }
        Ok(())
    }
}

/// Collects the strings under path-naming keys of a verbatim value (`named`: the value sits
/// under such a key, so its strings are paths).
fn verbatim_paths(value: &Value, at: String, named: bool, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) if named => out.push((at, text.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                verbatim_paths(item, format!("{at}[{i}]"), named, out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let lower = key.to_ascii_lowercase();
                let names_path = PATH_KEY_ENDINGS.iter().any(|e| lower.ends_with(e));
                verbatim_paths(item, join_path(&at, key), names_path, out);
            }
        }
        _ => {}
    }
}

/// A path that stays inside the directory it is resolved against: not empty, not absolute
/// (nor `~`, which some programs expand to a home directory), no `..` component, no NUL.
pub fn check_confined(key: &str, path: &str) -> Result<(), ConfigError> {
    let why = if path.trim().is_empty() {
        Some("must not be empty")
    } else if path.starts_with('/') || path.starts_with('\\') || path.starts_with('~') {
        Some("must be relative to the instance's directory, not absolute")
    } else if path.split(['/', '\\']).any(|c| c == "..") {
        Some("must stay inside the instance's directory: `..` is not allowed")
    } else if path.contains('\0') {
        Some("must not contain NUL")
    } else {
        None
    };
    match why {
        Some(why) => Err(ConfigError::new(key, format!("`{path}` {why}"))),
        None => Ok(()),
    }
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
    fn egress_judges_database_hosts_by_field() {
        let config = |host: &str| {
            DrasiConfig::from_json_value(serde_json::json!({
                "sources": [{"kind": "postgres", "id": "pg", "host": host, "database": "d",
                             "user": "u", "tables": ["t"]}],
                "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "pg"}]}]}))
            .unwrap()
        };
        let err = config("127.0.0.1")
            .check_egress(&EgressPolicy::default())
            .unwrap_err();
        assert_eq!(err.path, "sources[0].host");
        assert!(err.message.contains("127.0.0.1:5432"), "{err}");
        config("db.example.com")
            .check_egress(&EgressPolicy::default())
            .unwrap();
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
            "queries": [{"id": "q", "query": "MATCH (n) RETURN '${GREETING}' AS g",
                         "sources": [{"sourceId": "m"}]}],
            "reactions": [{"kind": "http", "id": "h", "queries": ["q"],
                           "baseUrl": "${BASE:-https://example.com}", "token": "${TOKEN}"}]}));
        let err = c.resolve(&|_| None).unwrap_err();
        assert_eq!(err.path, "reactions[0].token");
        assert!(err.message.contains("`TOKEN`"), "{err}");
        let ok = c
            .resolve(&|n| (n == "TOKEN").then(|| "t".to_owned()))
            .unwrap();
        let http = ok.reactions[0].as_http().unwrap();
        assert_eq!(
            (http.base_url.as_deref(), http.token.as_deref()),
            (Some("https://example.com"), Some("t"))
        );
        // A query's text is no settings field: kept as written, never an error.
        assert_eq!(ok.queries[0].query, "MATCH (n) RETURN '${GREETING}' AS g");
    }

    #[test]
    fn file_paths_must_stay_inside_the_instance_directory() {
        for ok in ["state/db.redb", "db.redb", "./a/b", "a..b/c"] {
            check_confined("k", ok).unwrap();
        }
        for bad in [
            "/etc/x",
            "../x",
            "a/../../x",
            "a/..",
            "~/x",
            "",
            "\\\\srv\\x",
            "a\\..\\b",
        ] {
            let err = check_confined("stateStore.path", bad).unwrap_err();
            assert_eq!(err.path, "stateStore.path", "{bad}");
        }
    }

    #[test]
    fn file_paths_cover_state_stores_solutions_and_plugin_settings() {
        let c = config(serde_json::json!({
            "solutionsDir": "solutions",
            "secretStore": {"kind": "file", "filePath": "secrets.json", "name": "/not-a-path"},
            "instances": [
                {"id": "a", "stateStore": {"kind": "redb", "path": "a.redb"}},
                {"id": "b", "bootstrapProviders": [{"kind": "scriptfile", "filePaths": ["x", "/y"]}],
                 "sources": [{"kind": "mock", "id": "m",
                              "bootstrapProvider": {"kind": "scriptfile", "dataDir": "d"}}]}]}));
        let keys: Vec<String> = c.file_paths().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "solutionsDir",
                "instances[0].stateStore.path",
                "instances[1].bootstrapProviders[0].filePaths[0]",
                "instances[1].bootstrapProviders[0].filePaths[1]",
                "instances[1].sources[0].bootstrapProvider.dataDir",
            ]
        );
        assert_eq!(
            c.check_paths().unwrap_err().path,
            "instances[1].bootstrapProviders[0].filePaths[1]"
        );
        let top = config(serde_json::json!({"stateStore": {"kind": "redb", "path": "/var/lib/x"}}));
        assert_eq!(top.check_paths().unwrap_err().path, "stateStore.path");
    }

    #[test]
    fn egress_judges_grpc_reaction_endpoints() {
        let config = |endpoint: &str| {
            DrasiConfig::from_json_value(serde_json::json!({
                "sources": [{"kind": "mock", "id": "m"}],
                "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
                "reactions": [{"kind": "grpc", "id": "g", "queries": ["q"], "endpoint": endpoint}]}))
            .unwrap()
        };
        let err = config("grpc://127.0.0.1:50052")
            .check_egress(&EgressPolicy::default())
            .unwrap_err();
        assert_eq!(err.path, "reactions[0].endpoint");
        assert!(err.message.contains("127.0.0.1:50052"), "{err}");
        config("grpc://collector.example.com:50052")
            .check_egress(&EgressPolicy::default())
            .unwrap();
    }

    #[test]
    fn grpc_sources_are_listeners() {
        let c = config(serde_json::json!({
            "sources": [{"kind": "grpc", "id": "g", "host": "0.0.0.0", "port": 50051}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "g"}]}]}));
        let l = c.listeners();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].path, "sources[0]");
        assert_eq!(l[1].port, Some(Port::Number(50051)));
        let mut c = c;
        let mut next = 41000;
        let endpoints = c
            .assign_ports("127.0.0.1", &mut || {
                next += 1;
                Ok(next)
            })
            .unwrap();
        assert_eq!(endpoints[1].name, "source:g");
        assert_eq!(endpoints[1].url, "http://127.0.0.1:41002");
        let SourceConfig::Grpc(g) = &c.sources[0] else {
            panic!("a grpc source")
        };
        assert_eq!(
            (g.host.as_deref(), g.port.clone()),
            (Some("127.0.0.1"), Some(Port::Number(41002)))
        );
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
        assert_eq!(l[1].port, Some(Port::Number(9000)));
        assert_eq!(l[2].path, "reactions[0]");
    }
}

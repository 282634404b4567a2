//! What DRaaS decides instead of a tenant's config, said to the tenant. A drasi-server config
//! is accepted as it is; the settings the platform owns are replaced, and each replaced field
//! is named in a [`ConfigWarning`]; so is every field holding a `${NAME}` that is kept as
//! written because it is not where drasi-server resolves one (inside a longer value, or in a
//! field that is not a settings field; [`super::interpolate`]). A pure function of the
//! config, so every read of an instance computes the same warnings from the stored spec and
//! nothing more is stored.

use serde::{Deserialize, Serialize};

use super::DrasiConfig;
use super::error::join_path;
use super::interpolate::reference;
use super::references::{Role, walk};

/// One field of a config that DRaaS replaces. `field` names it as it appears in an instance
/// (`config.sources[0].port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigWarning {
    /// The field, as an instance shows it (`config.sources[0].port`).
    pub field: String,
    /// What DRaaS does instead.
    pub message: String,
}

const HOST: &str = "replaced by the address the platform assigns; DRaaS owns every listen address";
const PORT: &str = "replaced by the port the platform assigns; DRaaS owns every listen address";
const ID: &str = "replaced by the instance's DRaaS id, which the runtime reports as its id";
const KEPT: &str = "is kept as written, not resolved: drasi-server resolves a `${NAME}` \
                    reference only when it is the whole value of a settings field";

impl DrasiConfig {
    /// The fields this config sets that DRaaS replaces, in document order: the host and port
    /// of every listener (the REST API's top-level `host`/`port`, http and grpc sources and sse
    /// reactions, under `instances` too: the platform assigns them all), and the top-level
    /// `id` of a single-instance config (the runtime runs under the DRaaS instance id), and the
    /// plugin management keys (the operator's: [`super::plugins`]), then every field holding
    /// a `${NAME}` kept as written ([`DrasiConfig::literal_references`]).
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        let field = |path: &str, key: &str| format!("config.{}", join_path(path, key));
        if self.instances.is_empty() && self.id.is_some() {
            out.push(ConfigWarning {
                field: field("", "id"),
                message: ID.to_owned(),
            });
        }
        for key in self.plugin_settings() {
            out.push(ConfigWarning {
                field: field("", key),
                message: super::plugins::IGNORED.to_owned(),
            });
        }
        for listener in self.listeners() {
            if listener.host.is_some() {
                out.push(ConfigWarning {
                    field: field(&listener.path, "host"),
                    message: HOST.to_owned(),
                });
            }
            if listener.port.is_some() {
                out.push(ConfigWarning {
                    field: field(&listener.path, "port"),
                    message: PORT.to_owned(),
                });
            }
        }
        out.extend(self.literal_references());
        out
    }

    /// Every field holding something that looks like a reference (`${NAME}` or
    /// `${NAME:-default}`, a name of ASCII letters, digits and `_`) that is not resolved
    /// because of where it is: inside a longer value of a settings field (`"http://${HOST}"`),
    /// or in a field that is not one (a template, an id). A query's text is left out (Cypher
    /// writes `'${x}'` and `$param` for its own purposes), and so are `${{…}}` (a template
    /// expression) and the plugin-defined settings [`super::references`] does not enter.
    pub fn literal_references(&self) -> Vec<ConfigWarning> {
        let Ok(mut doc) = serde_json::to_value(self) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let _ = walk(&mut doc, &mut |path, value, role| {
            let Some(text) = value.as_str() else {
                return Ok(());
            };
            let why = match role {
                Role::Query => return Ok(()),
                Role::Setting(_) if reference(text).is_some() => return Ok(()),
                Role::Setting(_) => "here it is inside a longer value",
                Role::Plain => "this field is not a settings field",
            };
            if let Some(found) = looks_like_reference(text) {
                out.push(ConfigWarning {
                    field: format!("config.{path}"),
                    message: format!("`{found}` {KEPT}; {why}"),
                });
            }
            Ok(())
        });
        out
    }
}

/// The first `${NAME}` / `${NAME:-default}` of `text` (drasi-server's `validate` reads these
/// as references: a name of ASCII letters, digits and `_`); never a `${{…}}`.
fn looks_like_reference(text: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(at) = text[from..].find("${") {
        let start = from + at;
        let after = &text[start + 2..];
        from = start + 2;
        if after.starts_with('{') {
            continue;
        }
        let end = after.find('}')?;
        let inner = &after[..end];
        let name = inner.split_once(":-").map_or(inner, |(name, _)| name);
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Some(&text[start..start + 2 + end + 1]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(yaml: &str) -> Vec<String> {
        let config = DrasiConfig::from_yaml_str(yaml).unwrap();
        config.warnings().into_iter().map(|w| w.field).collect()
    }

    #[test]
    fn every_listener_address_a_config_sets_is_named() {
        let yaml = "id: mine\nhost: 0.0.0.0\nport: 8080\n\
                    sources:\n  - {kind: http, id: h, host: 0.0.0.0, port: 9000}\n  - {kind: mock, id: m}\n\
                    reactions:\n  - {kind: sse, id: s, queries: [], port: 8081}\n  - {kind: log, id: l, queries: []}\n";
        assert_eq!(
            fields(yaml),
            [
                "config.id",
                "config.host",
                "config.port",
                "config.sources[0].host",
                "config.sources[0].port",
                "config.reactions[0].port",
            ]
        );
        let config = DrasiConfig::from_yaml_str(yaml).unwrap();
        let port = &config.warnings()[4];
        assert_eq!(
            port.message,
            "replaced by the port the platform assigns; DRaaS owns every listen address"
        );
        assert_eq!(
            serde_json::to_value(port).unwrap(),
            serde_json::json!({"field": "config.sources[0].port", "message": port.message})
        );
    }

    #[test]
    fn instances_are_named_by_their_index_and_keep_their_ids() {
        let yaml = "id: server\nport: 8080\ninstances:\n  - id: a\n    sources: [{kind: mock, id: m}]\n  \
                    - id: b\n    sources: [{kind: http, id: h, host: '${HOST}'}]\n";
        assert_eq!(
            fields(yaml),
            ["config.port", "config.instances[1].sources[0].host"]
        );
    }

    #[test]
    fn a_config_that_leaves_listeners_to_the_platform_has_no_warnings() {
        assert_eq!(
            fields(
                "sources: [{kind: http, id: h}]\nreactions: [{kind: sse, id: s, queries: []}]\n"
            ),
            Vec::<String>::new()
        );
    }
}

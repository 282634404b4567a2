//! Rendering a [`DrasiConfig`] as the YAML drasi-server accepts, and assigning listen ports.

use serde::{Deserialize, Serialize};

use super::{DrasiConfig, Port, QueryConfig, ReactionConfig, SourceConfig};

/// A network endpoint an instance listens on once started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Endpoint {
    /// `api`, `source:<id>` or `reaction:<id>`.
    pub name: String,
    /// `http://host:port`.
    pub url: String,
}

/// A visit of one listener: its endpoint name, host and port.
type ListenerVisit<'a> =
    dyn FnMut(String, &mut Option<String>, &mut Option<Port>) -> std::io::Result<()> + 'a;

impl DrasiConfig {
    /// Renders YAML for drasi-server (or draas-runtime): camelCase keys, lowercase `logLevel`,
    /// an explicit `queryLanguage` on every query (Cypher when unset, DRaaS's default, because
    /// drasi-server would assume GQL) and `autoStart: true` on queries that do not say
    /// otherwise (drasi-server would not start them). Only modelled keys are ever emitted.
    pub fn to_yaml(&self) -> String {
        let mut doc = self.clone();
        // A `${VAR}` reference is kept as written: its name is case-sensitive.
        if let Some(level) = &mut doc.log_level
            && super::interpolate::reference(level).is_none()
        {
            *level = level.to_ascii_lowercase();
        }
        doc.queries.iter_mut().for_each(make_explicit);
        for instance in &mut doc.instances {
            instance.queries.iter_mut().for_each(make_explicit);
        }
        // Every modelled value serializes: maps have string keys and numbers are finite.
        serde_yaml::to_string(&doc).expect("DrasiConfig always serializes to YAML")
    }

    /// Assigns every listen address, which the platform owns: the top-level `host`/`port`
    /// (the REST API) and the `host`/`port` of every listening component (http and grpc
    /// sources, sse reactions). Whatever the config said is replaced: a tenant never chooses an interface
    /// or a port. `alloc` supplies free ports. Returns every endpoint the instance will
    /// listen on.
    pub fn assign_ports(
        &mut self,
        host: &str,
        alloc: &mut dyn FnMut() -> std::io::Result<u16>,
    ) -> std::io::Result<Vec<Endpoint>> {
        let mut endpoints = Vec::new();
        self.each_listener(&mut |name, h, p| {
            let port = alloc()?;
            *h = Some(host.to_string());
            *p = Some(Port::Number(port));
            endpoints.push(endpoint(name, host, port, host));
            Ok(())
        })?;
        Ok(endpoints)
    }

    /// The endpoints of a config whose listeners were assigned already (a rendered config),
    /// reached through `host` where a listener binds a wildcard. `None` if one is missing.
    pub fn assigned_endpoints(&self, host: &str) -> Option<Vec<Endpoint>> {
        let mut endpoints = Vec::new();
        self.clone()
            .each_listener(&mut |name, h, p| {
                let (Some(bind), Some(port)) = (h.as_deref(), p.as_ref().and_then(Port::number))
                else {
                    return Err(std::io::Error::other("listener without an address"));
                };
                endpoints.push(endpoint(name, bind, port, host));
                Ok(())
            })
            .ok()?;
        Some(endpoints)
    }

    /// Calls `f` with the name (`api`, `source:<id>`, `reaction:<id>`), host and port of every
    /// listener, in a fixed order.
    fn each_listener(&mut self, f: &mut ListenerVisit<'_>) -> std::io::Result<()> {
        f("api".to_string(), &mut self.host, &mut self.port)?;
        let mut visit = |sources: &mut Vec<SourceConfig>,
                         reactions: &mut Vec<ReactionConfig>|
         -> std::io::Result<()> {
            for source in sources {
                match source {
                    SourceConfig::Http(s) => {
                        f(format!("source:{}", s.id), &mut s.host, &mut s.port)?;
                    }
                    SourceConfig::Grpc(s) => {
                        f(format!("source:{}", s.id), &mut s.host, &mut s.port)?;
                    }
                    _ => {}
                }
            }
            for reaction in reactions {
                if let ReactionConfig::Sse(r) = reaction {
                    f(format!("reaction:{}", r.id), &mut r.host, &mut r.port)?;
                }
            }
            Ok(())
        };
        visit(&mut self.sources, &mut self.reactions)?;
        for instance in &mut self.instances {
            visit(&mut instance.sources, &mut instance.reactions)?;
        }
        Ok(())
    }
}

fn make_explicit(query: &mut QueryConfig) {
    query.query_language = Some(query.effective_language());
    query.auto_start = Some(query.effective_auto_start());
}

/// A client URL for a listener bound to `bind`; wildcard binds are reached via `fallback`
/// (or loopback when that is a wildcard too).
fn endpoint(name: String, bind: &str, port: u16, fallback: &str) -> Endpoint {
    let is_wildcard = |h: &str| matches!(h, "0.0.0.0" | "::" | "[::]" | "");
    let host = if !is_wildcard(bind) {
        bind
    } else if !is_wildcard(fallback) {
        fallback
    } else {
        "127.0.0.1"
    };
    let url = if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    };
    Endpoint { name, url }
}

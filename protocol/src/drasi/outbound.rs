//! The addresses a config connects out to directly, not through draas-runtime's egress proxy
//! (PostgreSQL's protocol, and gRPC: HTTP/2 through tonic, which ignores `HTTP_PROXY`): what
//! an egress check judges at create time.
//! [`DrasiConfig::outbound_addresses`] lists them with the path of the key naming each host,
//! defaults filled in and bootstrap providers resolved the way draas-runtime resolves them.
//! (HTTP destinations are [`DrasiConfig::outbound_urls`].)

use super::bootstrap::{BootstrapProviderConfig, BootstrapProviderEntry, BootstrapProviderRef};
use super::error::join_path;
use super::postgres::{POSTGRES_DEFAULT_HOST, POSTGRES_DEFAULT_PORT};
use super::{DrasiConfig, Port, SourceConfig};

/// A host and port a component connects out to. `key` names the host's key: relative to the
/// component from [`SourceConfig::outbound_addresses`] and
/// [`super::ReactionConfig::outbound_addresses`] (`host`, `bootstrapProvider.host`,
/// `hostname`, `endpoint`), the config's full path from [`DrasiConfig::outbound_addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundAddress {
    pub key: String,
    pub host: String,
    pub port: Port,
}

impl OutboundAddress {
    /// A PostgreSQL server address, with the plugins' defaults for what is unset.
    pub(crate) fn postgres(key: &str, host: &Option<String>, port: &Option<Port>) -> Self {
        Self {
            key: key.to_owned(),
            host: host
                .clone()
                .unwrap_or_else(|| POSTGRES_DEFAULT_HOST.to_owned()),
            port: port.clone().unwrap_or(Port::Number(POSTGRES_DEFAULT_PORT)),
        }
    }
}

impl DrasiConfig {
    /// Every non-HTTP outbound address of the config, with the full path of its host's key:
    /// each source's and reaction's own, and each `bootstrapProviders` entry a source names
    /// (its unset keys taken from that source when it is a `postgres` source). Entries that
    /// do not parse are left to validation.
    pub fn outbound_addresses(&self) -> Vec<OutboundAddress> {
        let mut out = Vec::new();
        for (prefix, inst) in self.effective_instances() {
            let entries: Vec<(usize, BootstrapProviderEntry)> = inst
                .bootstrap_providers
                .iter()
                .enumerate()
                .filter_map(|(j, v)| Some((j, BootstrapProviderEntry::from_value(v, "").ok()?)))
                .collect();
            for (i, source) in inst.sources.iter().enumerate() {
                let at = join_path(&prefix, &format!("sources[{i}]"));
                for mut a in source.outbound_addresses() {
                    a.key = join_path(&at, &a.key);
                    out.push(a);
                }
                let named = source
                    .bootstrap_provider()
                    .and_then(|v| BootstrapProviderRef::from_value(v, "").ok());
                let Some(BootstrapProviderRef::Id(id)) = named else {
                    continue;
                };
                let Some((j, entry)) = entries.iter().find(|(_, e)| e.id == id) else {
                    continue;
                };
                let BootstrapProviderConfig::Postgres(bp) = &entry.provider;
                let bp = match source {
                    SourceConfig::Postgres(pg) => bp.filled_from(pg),
                    _ => bp.clone(),
                };
                let key = join_path(&prefix, &format!("bootstrapProviders[{j}].host"));
                out.push(OutboundAddress::postgres(&key, &bp.host, &bp.port));
            }
            for (i, reaction) in inst.reactions.iter().enumerate() {
                let at = join_path(&prefix, &format!("reactions[{i}]"));
                for mut a in reaction.outbound_addresses() {
                    a.key = join_path(&at, &a.key);
                    out.push(a);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn postgres_servers_are_listed_with_their_keys_and_defaults() {
        let config = DrasiConfig::from_json_value(json!({
            "bootstrapProviders": [{"id": "replica", "kind": "postgres", "host": "10.0.0.9"}],
            "sources": [
                {"kind": "postgres", "id": "a", "host": "db.example.com", "database": "d",
                 "user": "u", "bootstrapProvider": {"kind": "postgres"}},
                {"kind": "postgres", "id": "b", "port": 6543, "database": "d", "user": "u",
                 "bootstrapProvider": "replica"},
                {"kind": "mock", "id": "m"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
            "reactions": [{"kind": "storedproc-postgres", "id": "sp", "queries": ["q"],
                           "user": "u", "database": "d", "hostname": "169.254.169.254"}]
        }))
        .unwrap();
        let seen: Vec<(String, String, Port)> = config
            .outbound_addresses()
            .into_iter()
            .map(|a| (a.key, a.host, a.port))
            .collect();
        let row = |k: &str, h: &str, p: u16| (k.to_owned(), h.to_owned(), Port::Number(p));
        assert_eq!(
            seen,
            [
                row("sources[0].host", "db.example.com", 5432),
                row("sources[0].bootstrapProvider.host", "db.example.com", 5432),
                row("sources[1].host", "localhost", 6543),
                row("bootstrapProviders[0].host", "10.0.0.9", 6543),
                row("reactions[0].hostname", "169.254.169.254", 5432),
            ]
        );
    }
}

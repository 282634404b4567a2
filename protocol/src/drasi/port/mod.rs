//! [`Port`]: a TCP port as a drasi-server config writes it. drasi-server (its plugin SDK's
//! `ConfigValue<u16>`) takes a number, or a string that is one whole `${VAR}` /
//! `${VAR:-default}` reference (starting with `${` and ending with `}`; `${{…}}` is never one
//! under DRaaS), resolved when the server starts and then parsed as the number; DRaaS also
//! takes the number as a string. DRaaS keeps the reference as written (the stored config is the
//! tenant's), resolves it from the instance's environment like every other reference
//! ([`super::DrasiConfig::resolve`], [`super::interpolate()`]), and every check that needs
//! the number ([`Port::number`]) runs on the resolved config.
//!
//! [`DrasiConfig::ports`](super::DrasiConfig::ports) lists every port field of a config with
//! its path; [`DrasiConfig::check_ports_resolved`](super::DrasiConfig::check_ports_resolved)
//! refuses a resolved config that still holds a reference.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::bootstrap::{BootstrapProviderConfig, BootstrapProviderEntry, BootstrapProviderRef};
use super::error::join_path;
use super::interpolate::reference;
use super::{ConfigError, DrasiConfig, ReactionConfig, SourceConfig};

/// A port field's value: a number, or a whole-value `${VAR}` reference not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    /// 0–65535 (0 is refused by validation where a listener or a server needs a real port).
    Number(u16),
    /// `${NAME}` or `${NAME:-default}`, exactly as written.
    Reference(String),
}

impl Port {
    /// The number, once the config is resolved; `None` for a reference.
    pub fn number(&self) -> Option<u16> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Reference(_) => None,
        }
    }

    /// The reference as written, if this is one.
    pub fn reference(&self) -> Option<&str> {
        match self {
            Self::Number(_) => None,
            Self::Reference(r) => Some(r),
        }
    }

    /// Parses a port written as a string: one whole `${NAME}` / `${NAME:-default}` reference
    /// (drasi-server's rule, [`super::interpolate::reference`]: the whole string, no spaces
    /// around it), or the number (surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        if reference(text).is_some() {
            return Ok(Self::Reference(text.to_owned()));
        }
        text.trim().parse::<u16>().map(Self::Number).map_err(|_| {
            format!(
                "invalid value {text:?}: expected a port number (0–65535) or a whole-value \
                 `${{VAR}}` / `${{VAR:-default}}` reference"
            )
        })
    }
}

impl From<u16> for Port {
    fn from(n: u16) -> Self {
        Self::Number(n)
    }
}

impl PartialEq<u16> for Port {
    fn eq(&self, other: &u16) -> bool {
        self.number() == Some(*other)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Reference(r) => f.write_str(r),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => s.serialize_u16(*n),
            Self::Reference(r) => s.serialize_str(r),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;

        impl Visitor<'_> for PortVisitor {
            type Value = Port;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a port number (0–65535), the number as a string, or a `${VAR}` reference",
                )
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::Number)
                    .map_err(|_| E::custom(format!("invalid value {v}: a port is 0–65535")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::Number)
                    .map_err(|_| E::custom(format!("invalid value {v}: a port is 0–65535")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Port::parse(v).map_err(E::custom)
            }
        }

        d.deserialize_any(PortVisitor)
    }
}

impl DrasiConfig {
    /// Every port field the config sets, with its path, in document order: the top-level
    /// `port`; per instance, the `port` of http, grpc and postgres sources and of an inline
    /// postgres `bootstrapProvider`, of each `bootstrapProviders` entry, and of sse and
    /// stored-procedure reactions. Bootstrap providers that do not parse are left to parsing.
    pub fn ports(&self) -> Vec<(String, Port)> {
        let mut out = Vec::new();
        if let Some(port) = &self.port {
            out.push(("port".to_owned(), port.clone()));
        }
        for (prefix, inst) in self.effective_instances() {
            for (j, entry) in inst.bootstrap_providers.iter().enumerate() {
                if let Ok(entry) = BootstrapProviderEntry::from_value(entry, "") {
                    let BootstrapProviderConfig::Postgres(bp) = &entry.provider;
                    if let Some(port) = &bp.port {
                        let key = join_path(&prefix, &format!("bootstrapProviders[{j}].port"));
                        out.push((key, port.clone()));
                    }
                }
            }
            for (i, source) in inst.sources.iter().enumerate() {
                let at = |key: &str| join_path(&prefix, &format!("sources[{i}].{key}"));
                let port = match source {
                    SourceConfig::Http(s) => &s.port,
                    SourceConfig::Grpc(s) => &s.port,
                    SourceConfig::Postgres(s) => &s.port,
                    _ => &None,
                };
                if let Some(port) = port {
                    out.push((at("port"), port.clone()));
                }
                let inline = source
                    .bootstrap_provider()
                    .and_then(|v| BootstrapProviderRef::from_value(v, "").ok());
                if let Some(BootstrapProviderRef::Inline(BootstrapProviderConfig::Postgres(bp))) =
                    inline
                    && let Some(port) = bp.port
                {
                    out.push((at("bootstrapProvider.port"), port));
                }
            }
            for (i, reaction) in inst.reactions.iter().enumerate() {
                let port = match reaction {
                    ReactionConfig::Sse(r) => r.port.as_ref(),
                    _ => reaction.storedproc().and_then(|(_, r)| r.port.as_ref()),
                };
                if let Some(port) = port {
                    let key = join_path(&prefix, &format!("reactions[{i}].port"));
                    out.push((key, port.clone()));
                }
            }
        }
        out
    }

    /// Refuses a config, meant to be resolved already, whose port still holds a reference (a
    /// variable whose value is itself `${…}`: values are never resolved twice), naming it.
    pub fn check_ports_resolved(&self) -> Result<(), ConfigError> {
        for (path, port) in self.ports() {
            if port.reference().is_some() {
                // The value is not repeated: it came from a variable, possibly a secret one.
                return Err(ConfigError::new(
                    path,
                    "resolves to a `${…}` reference, not a number; variables are resolved \
                     once, so a port must resolve to its number",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

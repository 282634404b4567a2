//! Bootstrap providers (a source's initial data): the kinds this model and draas-runtime
//! support ([`BootstrapProviderConfig`]), and the two shapes drasi-server accepts: inline on a
//! source (`bootstrapProvider: {kind: postgres, …}`) or by id (`bootstrapProvider: shared`)
//! naming an entry of the instance's `bootstrapProviders: [{id: shared, kind: postgres, …}]`
//! ([`BootstrapProviderRef`], [`BootstrapProviderEntry`]).
//!
//! The config keeps these settings verbatim (`serde_json::Value`) where other, plugin-defined
//! kinds may appear; [`BootstrapProviderRef::from_value`] and
//! [`BootstrapProviderEntry::from_value`] read them as the typed model, with errors naming
//! the key. A `postgres` source's own `bootstrapProvider` is checked while parsing.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::ConfigError;
use super::postgres::PostgresBootstrapConfig;
use super::source::{body_as, split_kind, unknown_kind};

/// Bootstrap provider kinds this model (and draas-runtime) supports.
pub const SUPPORTED_BOOTSTRAP_KINDS: &[&str] = &["postgres"];

/// A bootstrap provider's settings, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BootstrapProviderConfig {
    /// `kind: postgres`: the current rows of the source's tables; keys left out are taken from
    /// the `postgres` source it serves.
    Postgres(PostgresBootstrapConfig),
}

impl BootstrapProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
        }
    }
}

impl<'de> Deserialize<'de> for BootstrapProviderConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let what = "bootstrap provider";
        let (kind, body) = split_kind::<D>(serde_json::Value::deserialize(d)?, what)?;
        match kind.as_str() {
            "postgres" => body_as::<D, _>(body).map(Self::Postgres),
            other => Err(unknown_kind::<D>(what, other, SUPPORTED_BOOTSTRAP_KINDS)),
        }
    }
}

/// A source's `bootstrapProvider`: the id of an entry of `bootstrapProviders`, or inline.
#[derive(Debug, Clone, PartialEq)]
// Config values are few and cold; unboxed variants keep construction and matching plain.
#[allow(clippy::large_enum_variant)]
pub enum BootstrapProviderRef {
    Id(String),
    Inline(BootstrapProviderConfig),
}

impl BootstrapProviderRef {
    /// Reads a source's `bootstrapProvider` value; `at` is that key's path, for errors.
    pub fn from_value(value: &serde_json::Value, at: &str) -> Result<Self, ConfigError> {
        match value {
            serde_json::Value::String(id) if id.trim().is_empty() => Err(ConfigError::new(
                at,
                "must name a bootstrap provider (an id of `bootstrapProviders`) or be a mapping with a `kind`",
            )),
            serde_json::Value::String(id) => Ok(Self::Id(id.clone())),
            serde_json::Value::Object(_) => typed(value, at).map(Self::Inline),
            _ => Err(ConfigError::new(
                at,
                "expected the id of an entry of `bootstrapProviders` or a mapping with a `kind`",
            )),
        }
    }
}

/// One entry of `bootstrapProviders`: `{id, kind, …settings}`.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapProviderEntry {
    pub id: String,
    pub provider: BootstrapProviderConfig,
}

impl BootstrapProviderEntry {
    /// Reads one entry; `at` is its path (`bootstrapProviders[0]`), for errors.
    pub fn from_value(value: &serde_json::Value, at: &str) -> Result<Self, ConfigError> {
        let serde_json::Value::Object(map) = value else {
            return Err(ConfigError::new(
                at,
                "expected a mapping with `id` and `kind`",
            ));
        };
        let mut body = map.clone();
        let id = match body.remove("id") {
            Some(serde_json::Value::String(id)) if !id.trim().is_empty() => id,
            Some(_) => {
                return Err(ConfigError::new(
                    format!("{at}.id"),
                    "expected a non-empty string",
                ));
            }
            None => return Err(ConfigError::new(at, "missing field `id`")),
        };
        let provider = typed(&serde_json::Value::Object(body), at)?;
        Ok(Self { id, provider })
    }
}

fn typed(value: &serde_json::Value, at: &str) -> Result<BootstrapProviderConfig, ConfigError> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let err = ConfigError::from_serde(e);
        let path = match err.path.as_str() {
            "" => at.to_owned(),
            inner => super::error::join_path(at, inner),
        };
        ConfigError::new(path, err.message)
    })
}

/// `deserialize_with` for a source's `bootstrapProvider`: keeps the value verbatim after
/// checking it reads as a [`BootstrapProviderRef`], so a bad key is refused while parsing
/// with its path.
pub(crate) fn checked_ref<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    let Some(value) = Option::<serde_json::Value>::deserialize(d)? else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    BootstrapProviderRef::from_value(&value, "")
        .map_err(|e| D::Error::custom(ConfigError::nested_message(&e.path, &e.message)))?;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::super::Port;
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_and_references_read_with_paths() {
        let entry = BootstrapProviderEntry::from_value(
            &json!({"id": "shared", "kind": "postgres", "database": "d", "port": "5433"}),
            "bootstrapProviders[0]",
        )
        .unwrap();
        assert_eq!(entry.id, "shared");
        let BootstrapProviderConfig::Postgres(pg) = &entry.provider;
        assert_eq!(pg.port, Some(Port::Number(5433)));

        let err = BootstrapProviderEntry::from_value(
            &json!({"id": "s", "kind": "postgres", "tablez": []}),
            "bootstrapProviders[1]",
        )
        .unwrap_err();
        assert_eq!(err.path, "bootstrapProviders[1].tablez");
        assert!(err.message.contains("unknown field"), "{err}");
        let err = BootstrapProviderEntry::from_value(
            &json!({"kind": "postgres"}),
            "bootstrapProviders[2]",
        )
        .unwrap_err();
        assert!(err.message.contains("`id`"), "{err}");
        let err = BootstrapProviderEntry::from_value(
            &json!({"id": "x", "kind": "noop"}),
            "bootstrapProviders[3]",
        )
        .unwrap_err();
        assert_eq!(err.path, "bootstrapProviders[3].kind");
        let err = BootstrapProviderEntry::from_value(
            &json!({"id": "x", "kind": "postgres", "port": "big"}),
            "bootstrapProviders[4]",
        )
        .unwrap_err();
        assert_eq!(err.path, "bootstrapProviders[4].port", "{err}");

        assert_eq!(
            BootstrapProviderRef::from_value(&json!("shared"), "b").unwrap(),
            BootstrapProviderRef::Id("shared".into())
        );
        assert!(BootstrapProviderRef::from_value(&json!(""), "b").is_err());
    }
}

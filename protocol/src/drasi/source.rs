//! Source kinds: [`SourceConfig`] dispatches on `kind` to [`HttpSourceConfig`],
//! [`MockSourceConfig`], [`PostgresSourceConfig`] or [`GrpcSourceConfig`]; unknown kinds fail
//! naming the kind and the supported ones.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use super::bootstrap::{BootstrapProviderConfig, BootstrapProviderRef};
use super::grpc::GrpcSourceConfig;
use super::lenient::Setting;
use super::outbound::OutboundAddress;
use super::port::Port;
use super::postgres::PostgresSourceConfig;
use super::webhook::WebhookConfig;
use super::{ConfigError, lenient};

/// Source kinds this model (and draas-runtime) supports.
pub const SUPPORTED_SOURCE_KINDS: &[&str] = &["http", "mock", "postgres", "grpc"];

/// One entry of `sources[]`, tagged by `kind`: `http` (change events posted to it), `mock`
/// (generated data), `postgres` (a database's row changes) or `grpc` (change events over gRPC).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
// Config values are few and cold; unboxed variants keep construction and matching plain.
#[allow(clippy::large_enum_variant)]
pub enum SourceConfig {
    Http(HttpSourceConfig),
    Mock(MockSourceConfig),
    Postgres(PostgresSourceConfig),
    Grpc(GrpcSourceConfig),
}

/// `kind: http`: receives change events over HTTP (standard mode) or webhooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// The source's id, unique in its instance: queries subscribe to it by this id.
    pub id: String,
    /// Start the source with the instance (default true).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub auto_start: Option<bool>,
    /// Where the source's initial data comes from: the id of a `bootstrapProviders` entry, or
    /// an inline provider, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_provider: Option<serde_json::Value>,
    /// The id of an `identityProviders` entry the source authenticates with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    /// The address its HTTP listener binds (drasi-server requires it). The platform assigns it
    /// under DRaaS; a value here is replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The port its HTTP listener binds (drasi-server requires it). The platform assigns it
    /// under DRaaS; a value here is replaced and named in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::Port>)]
    pub port: Option<Port>,
    /// A path prefix for its event endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How long a request to the source may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub timeout_ms: Option<Setting<u64>>,
    /// Adaptive batching: the most events dispatched as one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_max_batch_size: Option<Setting<u64>>,
    /// Adaptive batching: the fewest events worth a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_min_batch_size: Option<Setting<u64>>,
    /// Adaptive batching: the longest an event waits for its batch, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_max_wait_ms: Option<Setting<u64>>,
    /// Adaptive batching: the shortest wait for a batch, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_min_wait_ms: Option<Setting<u64>>,
    /// Adaptive batching: the window over which throughput is measured, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub adaptive_window_secs: Option<Setting<u64>>,
    /// Batch incoming events by measured throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::FlagSetting>)]
    pub adaptive_enabled: Option<Setting<bool>>,
    /// Webhook mode (custom routes) instead of the standard event endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<WebhookConfig>,
    /// WAL durability settings, passed through to drasi-lib's `DurabilityConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<serde_json::Value>,
}

/// `kind: mock`: generates synthetic data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockSourceConfig {
    /// The source's id, unique in its instance: queries subscribe to it by this id.
    pub id: String,
    /// Start the source with the instance (default true).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub auto_start: Option<bool>,
    /// Where the source's initial data comes from: the id of a `bootstrapProviders` entry, or
    /// an inline provider, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_provider: Option<serde_json::Value>,
    /// The id of an `identityProviders` entry the source authenticates with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    /// What it generates: `{type: counter}`, `{type: sensorReading, sensorCount, mesh}` or
    /// `{type: generic}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::MockDataTypeSchema>)]
    pub data_type: Option<MockDataType>,
    /// Milliseconds between generated changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CountSetting>)]
    pub interval_ms: Option<Setting<u64>>,
}

/// What a mock source generates (`dataType: {type: ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum MockDataType {
    /// A node whose value counts up.
    Counter,
    /// Sensor nodes with changing readings.
    #[serde(rename_all = "camelCase")]
    SensorReading {
        /// How many sensors.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sensor_count: Option<u32>,
        /// Also relate the sensors to each other.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<bool>,
    },
    /// Nodes with generic properties.
    Generic,
}

impl SourceConfig {
    pub fn id(&self) -> &str {
        match self {
            Self::Http(s) => &s.id,
            Self::Mock(s) => &s.id,
            Self::Postgres(s) => &s.id,
            Self::Grpc(s) => &s.id,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Mock(_) => "mock",
            Self::Postgres(_) => "postgres",
            Self::Grpc(_) => "grpc",
        }
    }

    /// Whether the source starts with its instance (default: yes, as in drasi-server).
    pub fn auto_start(&self) -> bool {
        match self {
            Self::Http(s) => s.auto_start,
            Self::Mock(s) => s.auto_start,
            Self::Postgres(s) => s.auto_start,
            Self::Grpc(s) => s.auto_start,
        }
        .unwrap_or(true)
    }

    pub fn bootstrap_provider(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Http(s) => s.bootstrap_provider.as_ref(),
            Self::Mock(s) => s.bootstrap_provider.as_ref(),
            Self::Postgres(s) => s.bootstrap_provider.as_ref(),
            Self::Grpc(s) => s.bootstrap_provider.as_ref(),
        }
    }

    pub fn identity_provider(&self) -> Option<&str> {
        match self {
            Self::Http(s) => s.identity_provider.as_deref(),
            Self::Mock(s) => s.identity_provider.as_deref(),
            Self::Postgres(s) => s.identity_provider.as_deref(),
            Self::Grpc(s) => s.identity_provider.as_deref(),
        }
    }

    /// Every address the source connects out to over a non-HTTP protocol: a `postgres`
    /// source's server, and its inline `postgres` bootstrap provider's (filled from the
    /// source). A provider named by id is judged where `bootstrapProviders` is.
    pub fn outbound_addresses(&self) -> Vec<OutboundAddress> {
        let Self::Postgres(pg) = self else {
            return Vec::new();
        };
        let mut out = vec![OutboundAddress::postgres("host", &pg.host, &pg.port)];
        let inline = pg
            .bootstrap_provider
            .as_ref()
            .and_then(|v| BootstrapProviderRef::from_value(v, "bootstrapProvider").ok());
        if let Some(BootstrapProviderRef::Inline(BootstrapProviderConfig::Postgres(bp))) = inline {
            let bp = bp.filled_from(pg);
            out.push(OutboundAddress::postgres(
                "bootstrapProvider.host",
                &bp.host,
                &bp.port,
            ));
        }
        out
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, body) = split_kind::<D>(serde_json::Value::deserialize(d)?, "source")?;
        match kind.as_str() {
            "http" => body_as::<D, _>(body).map(Self::Http),
            "mock" => body_as::<D, _>(body).map(Self::Mock),
            "postgres" => body_as::<D, _>(body).map(Self::Postgres),
            "grpc" => body_as::<D, _>(body).map(Self::Grpc),
            other => Err(unknown_kind::<D>("source", other, SUPPORTED_SOURCE_KINDS)),
        }
    }
}

/// Splits a component mapping into its `kind` and the remaining fields.
pub(crate) fn split_kind<'de, D: Deserializer<'de>>(
    value: serde_json::Value,
    what: &str,
) -> Result<(String, serde_json::Value), D::Error> {
    let serde_json::Value::Object(mut map) = value else {
        return Err(D::Error::custom(format!(
            "expected a {what} mapping with a `kind` key"
        )));
    };
    match map.remove("kind") {
        Some(serde_json::Value::String(kind)) => Ok((kind, serde_json::Value::Object(map))),
        Some(_) => Err(D::Error::custom(ConfigError::nested_message(
            "kind",
            "expected a string",
        ))),
        None => Err(D::Error::missing_field("kind")),
    }
}

/// Deserializes a per-kind body, keeping the path of any error inside it.
pub(crate) fn body_as<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    body: serde_json::Value,
) -> Result<T, D::Error> {
    // `from_serde` joins the path of an error that is itself nested (a checked value inside
    // the body, such as a postgres source's `bootstrapProvider`).
    serde_path_to_error::deserialize(body).map_err(|e| {
        let err = ConfigError::from_serde(e);
        D::Error::custom(ConfigError::nested_message(&err.path, &err.message))
    })
}

pub(crate) fn unknown_kind<'de, D: Deserializer<'de>>(
    what: &str,
    kind: &str,
    supported: &[&str],
) -> D::Error {
    D::Error::custom(ConfigError::nested_message(
        "kind",
        &format!(
            "unsupported {what} kind `{kind}`; supported {what} kinds: {}",
            supported.join(", ")
        ),
    ))
}

//! The drasi-server configuration model: parsing (YAML and JSON), validation, `${VAR}`
//! interpolation, port assignment and YAML rendering. Pure: no environment reads, no files.
//!
//! Layout:
//! - [`config`]: the top-level [`DrasiConfig`], instances, state store and plugin refs.
//! - [`query`]: continuous queries ([`QueryConfig`]).
//! - [`source`]: source kinds (`http`, `mock`, `postgres`, `grpc`) behind [`SourceConfig`].
//! - [`webhook`]: the http source's webhook-mode settings.
//! - [`reaction`]: reaction kinds (`log`, `http`, `sse`, `profiler`, `storedproc-postgres`,
//!   `grpc`, `storedproc-mysql`, `storedproc-mssql`, `http-adaptive`, `grpc-adaptive`) behind
//!   [`ReactionConfig`].
//! - [`postgres`]: the PostgreSQL kinds' settings (source, bootstrap provider).
//! - [`storedproc`]: the stored-procedure reactions' shared settings (PostgreSQL, MySQL,
//!   SQL Server).
//! - [`adaptive`]: drasi-server's `http-adaptive` and `grpc-adaptive` reactions, run as the
//!   http and grpc reactions with adaptive batching.
//! - [`grpc`]: the gRPC kinds' settings (source, reaction).
//! - [`bootstrap`]: bootstrap providers, inline or by id.
//! - [`port`]: [`Port`], a port field's value: a number or a whole-value `${VAR}` reference.
//! - `lenient`: scalars that may be written as strings; [`Setting`], a settings field's value
//!   (drasi-server's `ConfigValue<T>`): the value or a whole-value `${VAR}` reference.
//! - [`references`]: the table of settings fields, the only places a `${VAR}` is resolved.
//! - [`outbound`]: the addresses a config connects out to directly (PostgreSQL, gRPC).
//! - [`validate`]: reference and value checks.
//! - [`render`]: YAML rendering and port assignment.
//! - [`owned`]: what the platform and operator decide, not the tenant: listeners, egress,
//!   variable references.
//! - `data`: where the data plane finds a query or a source ([`QueryLookup`]).
//! - [`interpolate()`]: `${VAR}` / `${VAR:-default}` resolution, exactly by drasi-server's
//!   rules (whole values of settings fields; `${{…}}` is never a reference).

pub mod adaptive;
pub mod bootstrap;
pub mod config;
mod data;
mod error;
pub mod grpc;
pub mod interpolate;
mod lenient;
pub mod outbound;
pub mod owned;
pub mod plugins;
pub mod port;
pub mod postgres;
pub mod query;
pub mod reaction;
pub mod references;
mod render;
pub mod source;
pub mod storedproc;
mod validate;
pub mod warnings;
pub mod webhook;

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;

pub use adaptive::{GrpcAdaptiveReactionConfig, HttpAdaptiveReactionConfig};
pub use bootstrap::{
    BootstrapProviderConfig, BootstrapProviderEntry, BootstrapProviderRef,
    SUPPORTED_BOOTSTRAP_KINDS,
};
pub use config::{DrasiConfig, InstanceConfig, PluginRef, StateStoreConfig, StateStoreKind};
pub use data::QueryLookup;
pub use error::ConfigError;
pub use grpc::{GrpcReactionConfig, GrpcSourceConfig};
pub use interpolate::interpolate;
pub use lenient::{Scalar, Setting};
pub use outbound::OutboundAddress;
pub use owned::Listener;
pub use port::Port;
pub use postgres::{PostgresBootstrapConfig, PostgresSourceConfig, PostgresSslMode};
pub use query::{MiddlewareConfig, QueryConfig, QueryLanguage, SourceSubscription};
pub use reaction::{
    HttpReactionConfig, LogReactionConfig, ProfilerReactionConfig, ReactionConfig,
    SUPPORTED_REACTION_KINDS, SseReactionConfig,
};
pub use render::Endpoint;
pub use source::{
    HttpSourceConfig, MockDataType, MockSourceConfig, SUPPORTED_SOURCE_KINDS, SourceConfig,
};
pub use storedproc::{StoredProcDialect, StoredProcReactionConfig};

/// Log levels accepted by `logLevel` (matched case-insensitively, rendered lowercase).
pub const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

/// The query language DRaaS uses when a query does not name one. drasi-server itself defaults
/// to GQL, so rendered YAML always states the language explicitly.
pub const DEFAULT_QUERY_LANGUAGE: QueryLanguage = QueryLanguage::Cypher;

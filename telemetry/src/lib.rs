//! Observability shared by the API, the workers and the operator CLI.
//!
//! - [`cache`]: metric handles per label set, for hot paths.
//! - [`names`]: every metric's name, unit and help text; labels bounded by construction.
//! - [`metrics`]: the process-wide Prometheus recorder (`metrics` + `metrics-exporter-prometheus`,
//!   `metrics-process` for CPU, memory and fds) and its exposition.
//! - [`serve`]: the `/metrics` listener (`--metrics-listen`).
//! - [`trace`]: the log subscriber (text or JSON), OTLP export through OpenTelemetry when the
//!   standard `OTEL_*` variables ask for it, and W3C trace context across the bus.

pub mod cache;
pub mod metrics;
pub mod names;
pub mod serve;
pub mod trace;

pub use metrics::Metrics;

/// What can go wrong setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The Prometheus recorder could not be built or installed.
    #[error("metrics recorder: {0}")]
    Metrics(String),
    /// The OTLP exporter could not be built from the `OTEL_*` settings.
    #[error("OTLP exporter: {0}")]
    Otlp(String),
    /// A global subscriber was installed already.
    #[error("log subscriber: {0}")]
    Subscriber(String),
}

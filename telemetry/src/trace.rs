//! Logs and traces: the subscriber every `draas` component starts with (text or JSON logs,
//! `RUST_LOG` filtering), OpenTelemetry OTLP export when the standard `OTEL_*` variables ask
//! for it (nothing is exported otherwise), and W3C trace context carried across the bus.
//!
//! A command envelope's `trace` holds the W3C `traceparent` of the span that issued it (and
//! `trace_state` its `tracestate`); the worker makes its spans children of it, so one trace
//! shows the HTTP request, the stream hop, the claim, the driver's steps and the reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::TelemetryError;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields (`trace_id` among them).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format: text or json")),
        }
    }
}

/// Whether spans are exported (an OTLP endpoint was configured in this process).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The installed tracing: flushes and stops the exporter when dropped.
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// True when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
/// (and `OTEL_SDK_DISABLED` is not `true`).
fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber: `RUST_LOG` (default `info`), logs to stderr in `format`,
/// and an OTLP exporter (HTTP/protobuf; endpoint, headers, sampler from the standard
/// `OTEL_*` variables; service name `service` unless `OTEL_SERVICE_NAME` says otherwise) when
/// one is configured.
pub fn init(service: &'static str, format: LogFormat) -> Result<Tracing, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let provider = match otlp_configured() {
        true => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        false => None,
    };
    let otel = provider.as_ref().map(|p| {
        // Per span: no thread, source location or busy/idle attributes. They cost an
        // allocation or a clock read on every span (sampled or not) and say nothing the
        // span's name and parent do not.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_threads(false)
            .with_location(false)
            .with_tracked_inactivity(false)
    });
    let fmt_text = (format == LogFormat::Text)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let fmt_json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(fmt_text)
        .with(fmt_json)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Tracing { provider })
}

/// Makes `span` a child of the remote context in `traceparent`/`tracestate` (a request's
/// headers, a command's envelope). Nothing happens when the header is absent or malformed:
/// the span then starts a trace of its own.
pub fn set_parent(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The W3C `traceparent` and `tracestate` of `span`, to put into what it sends on (a command
/// envelope). Without an exporter the incoming values are passed on unchanged, so a caller's
/// trace id still reaches the worker's logs.
pub fn outgoing(
    span: &Span,
    incoming: (Option<String>, Option<String>),
) -> (Option<String>, Option<String>) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return incoming;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return incoming;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    (carrier.remove("traceparent"), carrier.remove("tracestate"))
}

/// The trace id in a `traceparent` (`00-<trace id>-<span id>-<flags>`), for log fields.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32))
        .then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(
            trace_id(&format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32))),
            None
        );
        assert_eq!(trace_id("garbage"), None);
    }

    #[test]
    fn log_formats_parse_and_name_the_bad_one() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().unwrap_err().contains("xml"));
    }
}

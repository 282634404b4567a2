//! What an API node tells monitoring: every request counted and timed by route template
//! (never the raw path), a span per request continuing the caller's W3C trace, and the
//! stream and instance gauges read from Redis on a timer ([`gauges`]).
//!
//! The request's trace context is kept for the request's task so the dispatcher can put it
//! into the command envelope ([`current_trace`]).

pub mod gauges;

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use draas_telemetry::{names, trace};
use tracing::Instrument;

tokio::task_local! {
    /// The caller's `traceparent` and `tracestate`, for the request being served.
    static INCOMING: (Option<String>, Option<String>);
}

/// Middleware: the request's span (a child of the caller's `traceparent`), then its count
/// and latency by route template, method and status. Unmatched paths count as `unmatched`.
pub async fn http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let incoming = (header(&req, "traceparent"), header(&req, "tracestate"));
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    trace::set_parent(&span, incoming.0.as_deref(), incoming.1.as_deref());
    let (traceparent, _) = trace::outgoing(&span, incoming.clone());
    if let Some(id) = traceparent.as_deref().and_then(trace::trace_id) {
        span.record("trace_id", id);
    }
    let started = Instant::now();
    let response = INCOMING
        .scope(incoming, next.run(req).instrument(span.clone()))
        .await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!(names::HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(),
        "status" => status.to_string())
    .increment(1);
    metrics::histogram!(names::HTTP_DURATION, "route" => route, "method" => method).record(elapsed);
    response
}

/// The W3C `traceparent` and `tracestate` a command issued now carries: the current span's
/// when spans are exported, else the caller's own headers passed on.
pub fn current_trace() -> (Option<String>, Option<String>) {
    let incoming = INCOMING.try_with(Clone::clone).unwrap_or_default();
    trace::outgoing(&tracing::Span::current(), incoming)
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

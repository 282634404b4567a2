//! What an API node tells monitoring: every request counted and timed by route template
//! (never the raw path), a span per request continuing the caller's W3C trace, and the
//! stream and instance gauges read from Redis on a timer ([`gauges`]).
//!
//! The request's trace context is kept for the request's task so the dispatcher can put it
//! into the command envelope ([`current_trace`]).

pub mod gauges;

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use draas_telemetry::cache::Handles;
use draas_telemetry::{names, trace};
use metrics::{Counter, Histogram};
use tracing::Instrument;

tokio::task_local! {
    /// The caller's `traceparent` and `tracestate`, for the request being served.
    static INCOMING: (Option<String>, Option<String>);
}

/// Middleware: the request's span (a child of the caller's `traceparent`), then its count
/// and latency by route template, method and status. Unmatched paths count as `unmatched`.
pub async fn http(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    let method = req.method().clone();
    let incoming = (header(&req, "traceparent"), header(&req, "tracestate"));
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method.as_str(),
        http.route = route,
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
    let (count, latency) = http_handles(route, &method, status);
    count.increment(1);
    latency.record(started.elapsed().as_secs_f64());
    response
}

/// The request counter and latency histogram of (route template, method, status).
fn http_handles(route: &str, method: &Method, status: u16) -> (Counter, Histogram) {
    type ByStatus = Handles<(Method, u16), (Counter, Histogram)>;
    static ROUTES: LazyLock<Handles<String, Arc<ByStatus>>> = LazyLock::new(Handles::default);
    let by_route = ROUTES.get(route, || (route.to_owned(), Arc::default()));
    let key = (method.clone(), status);
    by_route.get(&key, || {
        let (route, name) = (route.to_owned(), method.as_str().to_owned());
        let count = metrics::counter!(names::HTTP_REQUESTS, "route" => route.clone(),
            "method" => name.clone(), "status" => status.to_string());
        let latency = metrics::histogram!(names::HTTP_DURATION, "route" => route, "method" => name);
        (key.clone(), (count, latency))
    })
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

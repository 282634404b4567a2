//! A test OTLP receiver: `POST /v1/traces` (OTLP/HTTP, protobuf) on a free loopback port,
//! keeping every span it is sent as span id → (service, name, parent span id, trace id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// Received spans, by span id (hex): (service.name, span name, parent span id, trace id).
pub type Received = Arc<Mutex<HashMap<String, (String, String, String, String)>>>;

pub struct Receiver;

impl Receiver {
    /// Starts the receiver; returns its base URL (for `OTEL_EXPORTER_OTLP_ENDPOINT`) and what
    /// it receives. It lives as long as the test's runtime.
    pub async fn start() -> (String, Received) {
        let received: Received = Arc::default();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind otlp");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, received)
    }
}

async fn traces(State(received): State<Received>, body: Bytes) -> &'static str {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return "";
    };
    let mut received = received.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref())
            .and_then(|v| match &v.value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    Some(s.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.insert(
                    hex(&span.span_id),
                    (
                        service.clone(),
                        span.name.clone(),
                        hex(&span.parent_span_id),
                        hex(&span.trace_id),
                    ),
                );
            }
        }
    }
    ""
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

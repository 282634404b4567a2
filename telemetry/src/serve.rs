//! The `/metrics` listener (`--metrics-listen`): one route serving the text exposition, on a
//! listener of its own so scrapes never share the API's port, limits or authentication.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often histogram samples are folded into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Content type of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let metrics_upkeep = metrics.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], metrics.render()).into_response() }
        }),
    );
    // Histograms keep their samples until upkeep folds them into buckets: without it a
    // process nobody scrapes would grow without bound.
    let upkeep = tokio::spawn({
        let (metrics, shutdown) = (metrics_upkeep, shutdown.clone());
        async move {
            let mut tick = tokio::time::interval(UPKEEP);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => metrics.upkeep(),
                }
            }
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    upkeep.abort();
    served
}

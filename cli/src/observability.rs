//! `--log-format` and `--metrics-listen`: the telemetry of `draas api` and `draas worker`
//! (the recorder, its listener and the log subscriber live in `draas-telemetry`).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

/// Where this component serves Prometheus metrics.
#[derive(Args, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (a listener of its own, no token);
    /// metrics are not recorded at all without it.
    #[arg(long, env = "DRAAS_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Installs the recorder and serves `/metrics` until `stop`, when asked for. Call before
    /// the component starts, so its start-up is recorded too.
    pub async fn start(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let Some(addr) = self.metrics_listen else {
            return Ok(());
        };
        let metrics = draas_telemetry::Metrics::install()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics-listen {addr}"))?;
        tracing::info!(message = "metrics listening", url = %format!("http://{}/metrics", listener.local_addr()?));
        tokio::spawn(async move {
            if let Err(error) = draas_telemetry::serve::serve(listener, metrics, stop).await {
                tracing::error!(message = "metrics listener failed", %error);
            }
        });
        Ok(())
    }
}

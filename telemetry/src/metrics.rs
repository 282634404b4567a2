//! The process-wide Prometheus recorder: installed once, histograms with fixed buckets, the
//! process collector (CPU, memory, open fds), and the text exposition a scrape returns.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::TelemetryError;
use crate::names;

/// The installed recorder: renders the exposition on demand. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: &'static metrics_process::Collector,
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

impl Metrics {
    /// Installs the global recorder (once per process; later calls return the same one).
    /// Until it is installed every metric call is a no-op, so a component that serves no
    /// `/metrics` pays nothing.
    pub fn install() -> Result<Metrics, TelemetryError> {
        if let Some(m) = INSTALLED.get() {
            return Ok(m.clone());
        }
        let handle = PrometheusBuilder::new()
            .set_buckets(names::BUCKETS)
            .map_err(|e| TelemetryError::Metrics(e.to_string()))?
            .install_recorder()
            .map_err(|e| TelemetryError::Metrics(e.to_string()))?;
        let process = PROCESS.get_or_init(metrics_process::Collector::default);
        process.describe();
        names::describe();
        let metrics = Metrics { handle, process };
        Ok(INSTALLED.get_or_init(|| metrics).clone())
    }

    /// The recorder if one was installed in this process.
    pub fn installed() -> Option<Metrics> {
        INSTALLED.get().cloned()
    }

    /// Folds recorded histogram samples into their buckets (the exporter keeps them until
    /// then).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition, with the process figures read now.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.run_upkeep();
        self.handle.render()
    }
}

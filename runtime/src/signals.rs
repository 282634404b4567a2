//! Shutdown on SIGINT or SIGTERM (drasi-server only handles SIGINT gracefully; DRaaS needs
//! both, e.g. for `docker stop` and Kubernetes).

use tokio::signal::unix::{SignalKind, signal};

/// Installs SIGINT and SIGTERM handlers now and resolves when either arrives.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send + 'static> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

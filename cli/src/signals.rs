//! Two-stage shutdown signals: the first SIGINT or SIGTERM drains, the second forces.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Two futures: the first resolves on the first SIGINT/SIGTERM, the second on the next one.
pub fn two_stage() -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = watch::channel(0u32);
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!(message = "cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let count = *tx.borrow() + 1;
            if count == 1 {
                tracing::info!(message = "shutting down; send the signal again to force");
            }
            let _ = tx.send(count);
        }
    });
    let mut first = rx.clone();
    let mut second = rx;
    (
        async move {
            let _ = first.wait_for(|n| *n >= 1).await;
        },
        async move {
            let _ = second.wait_for(|n| *n >= 2).await;
        },
    )
}

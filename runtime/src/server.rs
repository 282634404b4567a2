//! Lifecycle: build and start every instance, serve the API, stop on shutdown.
//! The API is served only after every component has started, so the first 200 on
//! `/health` means ready.

use std::sync::Arc;
use std::time::Duration;

use draas_protocol::drasi::DrasiConfig;
use drasi_lib::{ComponentStatus, DrasiLib};
use tokio::net::TcpListener;

use crate::RuntimeError;
use crate::api::{self, Instance};
use crate::components::build_instance;

/// How long components get to reach `Running` after `start()`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each instance gets to stop, and in-flight API requests get to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Started DrasiLib instances.
pub struct Runtime {
    instances: Vec<Instance>,
}

impl Runtime {
    /// Builds and starts every instance of `config`; on any failure, stops what was started.
    pub async fn start(config: &DrasiConfig) -> Result<Self, RuntimeError> {
        let mut runtime = Runtime {
            instances: Vec::new(),
        };
        for (prefix, inst) in config.effective_instances() {
            let id = inst
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let result = async {
                let lib = Arc::new(build_instance(&prefix, &id, &inst).await?);
                runtime.instances.push(Instance {
                    id: id.clone(),
                    lib: lib.clone(),
                });
                lib.start().await.map_err(|e| RuntimeError::Drasi {
                    instance: id.clone(),
                    message: e.to_string(),
                })?;
                wait_until_running(&id, &lib).await
            }
            .await;
            if let Err(e) = result {
                runtime.stop().await;
                return Err(e);
            }
            tracing::info!(instance = %id, "instance started");
        }
        Ok(runtime)
    }

    /// The instances, in config order.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Serves the REST API on `listener` until `shutdown` resolves, then stops everything.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Result<(), RuntimeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (app, changes) = api::router_with_changes(self.instances.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .into_future(),
        );
        tokio::pin!(server);
        let served = tokio::select! {
            _ = shutdown => None,
            result = &mut server => Some(result),
        };
        let result = match served {
            // The server ended on its own: an I/O failure.
            Some(result) => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(RuntimeError::Serve(e)),
                Err(join) => Err(RuntimeError::Serve(std::io::Error::other(join))),
            },
            None => {
                // Open change feeds end first (`end` event), or graceful shutdown waits on them.
                changes.close_all();
                let _ = stop_tx.send(());
                if tokio::time::timeout(STOP_TIMEOUT, &mut server)
                    .await
                    .is_err()
                {
                    tracing::warn!("API requests still in flight after {STOP_TIMEOUT:?}; closing");
                    server.abort();
                }
                Ok(())
            }
        };
        self.stop().await;
        result
    }

    /// Stops every instance (reactions, then queries, then sources), each within a bound.
    pub async fn stop(&self) {
        for inst in self.instances.iter().rev() {
            match tokio::time::timeout(STOP_TIMEOUT, inst.lib.shutdown()).await {
                Ok(Ok(())) => tracing::info!(instance = %inst.id, "instance stopped"),
                Ok(Err(e)) => tracing::warn!(instance = %inst.id, "stopped with errors: {e}"),
                Err(_) => {
                    tracing::warn!(instance = %inst.id, "did not stop within {STOP_TIMEOUT:?}")
                }
            }
        }
    }
}

/// The in-process entry point: start `config`, serve on `listener` until `shutdown`.
pub async fn run<F>(
    config: &DrasiConfig,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), RuntimeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    Runtime::start(config)
        .await?
        .serve(listener, shutdown)
        .await
}

/// Waits until every auto-started component runs; fails naming the first one in error.
async fn wait_until_running(instance: &str, lib: &DrasiLib) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let mut pending = Vec::new();
        let lists = [
            ("source", lib.list_sources().await),
            ("query", lib.list_queries().await),
            ("reaction", lib.list_reactions().await),
        ];
        for (kind, list) in lists {
            let list = list.map_err(|e| RuntimeError::Drasi {
                instance: instance.to_string(),
                message: e.to_string(),
            })?;
            for (id, status) in list.into_iter().filter(|(id, _)| !id.starts_with("__")) {
                match status {
                    ComponentStatus::Running
                    | ComponentStatus::Stopped
                    | ComponentStatus::Added => {}
                    ComponentStatus::Error => {
                        let detail = error_message(lib, kind, &id).await;
                        return Err(RuntimeError::Drasi {
                            instance: instance.to_string(),
                            message: format!("{kind} `{id}` failed to start: {detail}"),
                        });
                    }
                    other => pending.push(format!("{kind} `{id}` ({other:?})")),
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RuntimeError::Drasi {
                instance: instance.to_string(),
                message: format!(
                    "not running after {START_TIMEOUT:?}: {}",
                    pending.join(", ")
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn error_message(lib: &DrasiLib, kind: &str, id: &str) -> String {
    let message = match kind {
        "source" => lib
            .get_source_info(id)
            .await
            .ok()
            .and_then(|i| i.error_message),
        "query" => lib
            .get_query_info(id)
            .await
            .ok()
            .and_then(|i| i.error_message),
        _ => lib
            .get_reaction_info(id)
            .await
            .ok()
            .and_then(|i| i.error_message),
    };
    message.unwrap_or_else(|| "no error message reported".to_string())
}

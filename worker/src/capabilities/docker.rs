//! Asking the Docker platform's image what it runs: one throwaway container of the worker's
//! image (`--image`) with the command `capabilities` (after the image's entrypoint), no
//! network (`network_mode: none`), no environment, no mounts. Its stdout, once it exited 0
//! within [`ASK_TIMEOUT`], is the answer. The container is removed whatever happened; it
//! carries [`LABEL_PROBE`] (the deployment) so a worker killed mid-question leaves something
//! findable. An image that is not present is not pulled for this: the question is asked
//! again by the next worker that starts.

use std::collections::HashMap;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use draas_protocol::capabilities::WorkloadKinds;
use futures::StreamExt;

use super::{ASK_TIMEOUT, parse};
use crate::driver::docker::DockerDriver;

/// The label of the question's container; its value is the deployment (the key prefix).
pub const LABEL_PROBE: &str = "io.draas.capabilities-probe";

/// The most stdout taken as an answer.
const MAX_ANSWER: usize = 1024 * 1024;

/// The kinds the driver's image says it supports, or why it said nothing.
pub(super) async fn ask(driver: &DockerDriver) -> Result<WorkloadKinds, String> {
    let docker = driver.client();
    let image = driver.config().image.as_str();
    match docker.inspect_image(image).await {
        Ok(_) => {}
        Err(e) if not_found(&e) => {
            return Err(
                "the image is not present locally (it is pulled by the first start that needs \
                 it; a worker started after that asks it)"
                    .into(),
            );
        }
        Err(e) => return Err(format!("cannot inspect the image: {e}")),
    }
    let name = format!("draas-capabilities-{}", uuid::Uuid::new_v4().simple());
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["capabilities".to_owned()]),
        env: Some(Vec::new()),
        labels: Some(HashMap::from([(
            LABEL_PROBE.to_owned(),
            driver.deployment().to_owned(),
        )])),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| format!("cannot create the container: {e}"))?;
    let answer = tokio::time::timeout(ASK_TIMEOUT, run(docker, &created.id))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "`capabilities` gave no answer within {ASK_TIMEOUT:?}"
            ))
        });
    remove(docker, &created.id).await;
    answer
}

/// Starts the created container, waits for its exit and reads its stdout.
async fn run(docker: &Docker, id: &str) -> Result<WorkloadKinds, String> {
    docker
        .start_container(id, None)
        .await
        .map_err(|e| format!("cannot start the container: {e}"))?;
    match docker.wait_container(id, None).next().await {
        Some(Ok(_)) => {}
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => {
            return Err(format!("`capabilities` exited with code {code}"));
        }
        Some(Err(e)) => return Err(format!("waiting for the container failed: {e}")),
        None => return Err("the daemon gave no exit code".into()),
    }
    let options = LogsOptionsBuilder::new().stdout(true).stderr(false).build();
    let mut logs = docker.logs(id, Some(options));
    let mut stdout = Vec::new();
    while let Some(chunk) = logs.next().await {
        match chunk.map_err(|e| format!("cannot read the container's output: {e}"))? {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                stdout.extend_from_slice(&message);
            }
            LogOutput::StdErr { .. } | LogOutput::StdIn { .. } => {}
        }
        if stdout.len() > MAX_ANSWER {
            return Err(format!(
                "`capabilities` printed more than {MAX_ANSWER} bytes"
            ));
        }
    }
    parse(&stdout).map_err(|e| format!("`capabilities` printed no kinds: {e}"))
}

/// Removes the question's container (forced: it may still run after a timeout).
async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match tokio::time::timeout(ASK_TIMEOUT, docker.remove_container(id, Some(options))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if not_found(&e) => {}
        Ok(Err(e)) => {
            tracing::warn!(message = "cannot remove the capabilities container", container = %id, error = %e);
        }
        Err(_) => {
            tracing::warn!(message = "removing the capabilities container took too long", container = %id);
        }
    }
}

fn not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

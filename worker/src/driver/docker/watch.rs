//! Following the daemon: its event stream (die, oom, destroy) for managed containers, plus a
//! periodic survey that catches what a dropped event stream missed. Each finding becomes a
//! driver event; the monitor decides (a running instance that died becomes `failed`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
};
use futures::StreamExt;
use uuid::Uuid;

use super::spec::{LABEL_ID, LABEL_MANAGED, container_name};
use crate::driver::{DriverEvent, Events, Exit};

/// How often the survey lists managed containers.
const SURVEY_EVERY: Duration = Duration::from_secs(15);

/// Starts the event follower and the survey; both end when `events` closes.
pub(super) fn spawn(
    docker: Docker,
    deployment: &str,
    events: Events,
    removing: Arc<Mutex<HashSet<Uuid>>>,
) {
    let managed = format!("{LABEL_MANAGED}={deployment}");
    tokio::spawn(follow(
        docker.clone(),
        managed.clone(),
        events.clone(),
        removing,
    ));
    tokio::spawn(survey(docker, managed, events));
}

async fn follow(
    docker: Docker,
    managed: String,
    events: Events,
    removing: Arc<Mutex<HashSet<Uuid>>>,
) {
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        ("label", vec![managed.clone()]),
    ]);
    while !events.is_closed() {
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut stream = docker.events(Some(options));
        while let Some(item) = stream.next().await {
            let Ok(message) = item else { break };
            let attributes = message.actor.and_then(|a| a.attributes).unwrap_or_default();
            let Some(id) = attributes
                .get(LABEL_ID)
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                continue;
            };
            let action = message.action.unwrap_or_default();
            let exit = match action.as_str() {
                "die" => Some((
                    attributes.get("exitCode").and_then(|c| c.parse().ok()),
                    None,
                )),
                "oom" => {
                    let note = "the container ran out of memory (OOM killed)".to_owned();
                    let _ = events.send(DriverEvent::Note {
                        instance: id,
                        message: note,
                    });
                    None
                }
                "destroy"
                    if !removing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id) =>
                {
                    Some((
                        None,
                        Some("its container was removed outside DRaaS".to_owned()),
                    ))
                }
                _ => None,
            };
            if let Some((code, reason)) = exit {
                let log_tail = tail(&docker, id).await;
                let exit = Exit {
                    instance: id,
                    pid: None,
                    code,
                    signal: None,
                    log_tail,
                    reason,
                    seen_at: None,
                    still_running: false,
                };
                if events.send(DriverEvent::Exited(exit)).is_err() {
                    return;
                }
            }
        }
        // The stream ended (daemon restart, connection loss): follow again shortly.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn survey(docker: Docker, managed: String, events: Events) {
    let filters = HashMap::from([
        ("label", vec![managed.clone()]),
        ("status", vec!["exited".into(), "dead".into()]),
    ]);
    let mut tick = tokio::time::interval(SURVEY_EVERY);
    while !events.is_closed() {
        tick.tick().await;
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(stopped) = docker.list_containers(Some(options)).await else {
            continue;
        };
        for container in stopped {
            let Some(id) = container
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ID))
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            let exit = Exit {
                instance: id,
                pid: None,
                code: None,
                signal: None,
                log_tail: tail(&docker, id).await,
                reason: Some("its container is not running".into()),
                seen_at: None,
                still_running: false,
            };
            let _ = events.send(DriverEvent::Exited(exit));
        }
    }
}

async fn tail(docker: &Docker, id: Uuid) -> String {
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail("20")
        .build();
    let mut stream = docker.logs(&container_name(id), Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.trim_end().to_owned()
}

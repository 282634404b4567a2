//! The lifecycle commands' work on one instance: start (with placement and the restart
//! policy's bookkeeping), stop, delete, and the fenced state moves and events they make.

use draas_bus::clock::now;
use draas_bus::store::{StoredInstance, Transition};
use draas_protocol::{ErrorInfo, Event, EventKind, InstanceState, Origin, RuntimeInfo};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{CommandResult, Ctx, Exec, TRANSIENT, internal};
use crate::driver::Driver;
use draas_telemetry::names;
use tracing::Instrument;

impl<D: Driver> Ctx<D> {
    pub(super) async fn start(&self, mut inst: StoredInstance, ex: &Exec) -> CommandResult {
        let id = inst.instance.id;
        let from = inst.instance.state;
        let restarts = match ex.origin {
            Origin::Client => 0,
            Origin::RestartPolicy | Origin::Reschedule => inst.instance.runtime.restarts + 1,
        };
        let placing = RuntimeInfo {
            node: Some(self.node.clone()),
            restarts,
            ..RuntimeInfo::default()
        };
        if self.driver.node_bound() {
            // Idempotent; a start resumed here after its node died must be placed here too.
            self.store
                .place(self.platform, &self.node, id)
                .await
                .map_err(internal)?;
        }
        if from != InstanceState::Starting {
            // The tenant's max-running, for every start: one a client asked for was counted
            // when the API accepted it (counting again is a no-op); a restart by the policy
            // or the start half of a Restart is checked here, atomically.
            let tenant = &inst.instance.tenant;
            if let Err(refused) = self
                .store
                .reserve_running(tenant, id)
                .await
                .map_err(internal)?
            {
                let message = format!(
                    "start refused: tenant `{tenant}` has {} instances starting or running; its quota allows {} ({})",
                    refused.current,
                    refused.maximum,
                    refused.limit.as_str()
                );
                // Said on the instance too: a restart the policy asked for has no client.
                self.emit(
                    id,
                    ex.cmd,
                    EventKind::Note {
                        message: message.clone(),
                    },
                )
                .await;
                return Err(ErrorInfo::new("quota_exceeded", message));
            }
            // A move refused below (fenced by a newer execution, which runs this start) keeps
            // the slot: that execution holds it.
            self.move_to(
                id,
                from,
                InstanceState::Starting,
                ex,
                Some(&placing),
                "start requested",
            )
            .await?;
            inst.instance.state = InstanceState::Starting;
        }
        let launched = std::time::Instant::now();
        let started = self
            .driver
            .start(&inst.instance)
            .instrument(tracing::info_span!(
                "driver.start",
                platform = self.platform.as_str()
            ))
            .await;
        match started {
            Ok(mut runtime) => {
                metrics::histogram!(names::START_TO_READY, "platform" => self.platform.as_str())
                    .record(launched.elapsed().as_secs_f64());
                runtime.node = Some(self.node.clone());
                runtime.restarts = restarts;
                let moved = self
                    .move_to(
                        id,
                        InstanceState::Starting,
                        InstanceState::Running,
                        ex,
                        Some(&runtime),
                        "healthy",
                    )
                    .await;
                if let Err(error) = moved {
                    // Another change won the race (a stop while this start ran): what this
                    // start launched must not outlive it. A Redis outage is different: the
                    // retry resumes and adopts what runs. So is a newer execution on a shared
                    // platform: it runs the very workload this start applied.
                    let superseded = error.code == "fenced" && !self.driver.node_bound();
                    if error.code != TRANSIENT && !superseded {
                        let _ = self.driver.stop(id).await;
                    }
                    return Err(error);
                }
                Ok(serde_json::to_value(&runtime).unwrap_or(Value::Null))
            }
            Err(error) => {
                // The log tail may echo a value of the instance's environment.
                let error = draas_protocol::env::scrub(&error.to_string(), &inst.instance.spec.env);
                let runtime = RuntimeInfo {
                    message: Some(error.clone()),
                    ..placing
                };
                self.move_to(
                    id,
                    InstanceState::Starting,
                    InstanceState::Failed,
                    ex,
                    Some(&runtime),
                    "start failed",
                )
                .await?;
                Err(ErrorInfo::new("start_failed", error))
            }
        }
    }

    pub(super) async fn stop(&self, inst: StoredInstance, ex: &Exec) -> CommandResult {
        let inst = self.stop_if_running(inst, ex).await?;
        Ok(json!({"state": inst.instance.state, "exitCode": inst.instance.runtime.exit_code}))
    }

    /// Brings a running (or starting, failed or lost) instance to `stopped`; an interrupted
    /// stop (`stopping`) is finished; other states pass through unchanged.
    pub(super) async fn stop_if_running(
        &self,
        mut inst: StoredInstance,
        ex: &Exec,
    ) -> Result<StoredInstance, ErrorInfo> {
        let id = inst.instance.id;
        let from = inst.instance.state;
        let mut runtime = RuntimeInfo {
            node: inst.instance.runtime.node.clone(),
            ..RuntimeInfo::default()
        };
        match from {
            InstanceState::Lost => {
                self.move_to(
                    id,
                    from,
                    InstanceState::Stopped,
                    ex,
                    Some(&runtime),
                    "stop requested",
                )
                .await?;
            }
            InstanceState::Running
            | InstanceState::Starting
            | InstanceState::Failed
            | InstanceState::Stopping => {
                if from != InstanceState::Stopping {
                    self.move_to(
                        id,
                        from,
                        InstanceState::Stopping,
                        ex,
                        None,
                        "stop requested",
                    )
                    .await?;
                }
                match self.driver.stop(id).await {
                    Ok(code) => {
                        runtime.exit_code = code;
                        self.move_to(
                            id,
                            InstanceState::Stopping,
                            InstanceState::Stopped,
                            ex,
                            Some(&runtime),
                            "stopped",
                        )
                        .await?;
                    }
                    Err(error) => {
                        runtime.message = Some(error.to_string());
                        self.move_to(
                            id,
                            InstanceState::Stopping,
                            InstanceState::Failed,
                            ex,
                            Some(&runtime),
                            "stop failed",
                        )
                        .await?;
                        return Err(ErrorInfo::new("stop_failed", error.to_string()));
                    }
                }
            }
            _ => return Ok(inst),
        }
        inst.instance.state = InstanceState::Stopped;
        inst.instance.runtime = runtime;
        Ok(inst)
    }

    pub(super) async fn delete(&self, inst: StoredInstance, ex: &Exec) -> CommandResult {
        let id = inst.instance.id;
        if inst.instance.state != InstanceState::Deleting {
            self.move_to(
                id,
                inst.instance.state,
                InstanceState::Deleting,
                ex,
                None,
                "delete requested",
            )
            .await?;
        }
        if let Err(error) = self.driver.remove(id).await {
            let runtime = RuntimeInfo {
                message: Some(error.to_string()),
                ..inst.instance.runtime.clone()
            };
            self.move_to(
                id,
                InstanceState::Deleting,
                InstanceState::Failed,
                ex,
                Some(&runtime),
                "delete failed",
            )
            .await?;
            return Err(ErrorInfo::new("delete_failed", error.to_string()));
        }
        self.move_to(
            id,
            InstanceState::Deleting,
            InstanceState::Deleted,
            ex,
            None,
            "removed from platform",
        )
        .await?;
        self.forget(&inst).await?;
        Ok(json!({"deleted": id}))
    }

    /// Drops a deleted instance's record, name, index entry and placement. Idempotent.
    pub(super) async fn forget(&self, inst: &StoredInstance) -> Result<(), ErrorInfo> {
        let (id, spec) = (inst.instance.id, &inst.instance.spec);
        self.store
            .delete_instance(id, &spec.name, spec.platform)
            .await
            .map_err(internal)?;
        if let Some(node) = &inst.instance.runtime.node {
            self.store
                .unplace(self.platform, node, id)
                .await
                .map_err(internal)?;
        }
        Ok(())
    }

    /// One fenced compare-and-set state change, plus its event.
    pub(super) async fn move_to(
        &self,
        id: Uuid,
        from: InstanceState,
        to: InstanceState,
        ex: &Exec,
        runtime: Option<&RuntimeInfo>,
        reason: &str,
    ) -> Result<(), ErrorInfo> {
        from.check_move(to)
            .map_err(|e| ErrorInfo::new("illegal_transition", e.to_string()))?;
        match self
            .store
            .transition_by(id, from, to, ex.token, runtime, ex.cmd)
            .await
            .map_err(internal)?
        {
            Transition::Done(_) => {}
            Transition::WrongState(actual) => {
                return Err(ErrorInfo::new(
                    "conflict",
                    format!("instance is {actual}, expected {from}; another change won the race"),
                ));
            }
            Transition::Fenced(newer) => {
                metrics::counter!(names::FENCING_REFUSALS, "platform" => self.platform.as_str())
                    .increment(1);
                return Err(ErrorInfo::new(
                    "fenced",
                    format!(
                        "a newer execution (token {newer}) owns this instance; stopped before the next side effect"
                    ),
                ));
            }
            Transition::Missing => {
                return Err(ErrorInfo::new(
                    "not_found",
                    format!("instance {id} does not exist"),
                ));
            }
        }
        self.emit_by(
            id,
            ex.cmd,
            ex.actor.clone(),
            EventKind::StateChanged {
                from,
                to,
                reason: reason.to_owned(),
            },
        )
        .await;
        Ok(())
    }

    pub(crate) async fn emit(&self, id: Uuid, cmd: Option<Uuid>, kind: EventKind) {
        self.emit_by(id, cmd, None, kind).await;
    }

    /// An event caused by a command `actor` asked for.
    pub(super) async fn emit_by(
        &self,
        id: Uuid,
        cmd: Option<Uuid>,
        actor: Option<String>,
        kind: EventKind,
    ) {
        let event = Event {
            v: draas_protocol::SCHEMA_VERSION,
            instance_id: id,
            platform: self.platform,
            at: now(),
            command_id: cmd,
            source: self.consumer.clone(),
            actor,
            tenant: None,
            kind,
        };
        if let Err(error) = self.store.append_event(&event).await {
            tracing::warn!(message = "event not recorded", instance = %id, %error);
        }
    }
}

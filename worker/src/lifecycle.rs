//! What each `Command` does to an instance. The dispatcher is one exhaustive `match`, so a
//! new command does not compile until it is handled here.
//!
//! Every state change is a compare-and-set on the instance record carrying this execution's
//! fencing token: an execution that was superseded (its command reclaimed by another worker)
//! is refused before its next side effect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use draas_bus::Store;
use draas_bus::clock::now;
use draas_bus::store::{StoredInstance, Transition};
use draas_protocol::{
    Command, CommandEnvelope, ErrorInfo, Event, EventKind, InstanceState, Platform, RuntimeInfo,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::driver::Driver;

/// The result of one command: a JSON result or a coded error.
pub(crate) type CommandResult = Result<Value, ErrorInfo>;

/// Everything command handlers share.
pub(crate) struct Ctx<D> {
    pub store: Store,
    pub driver: D,
    pub platform: Platform,
    pub node: String,
    pub consumer: String,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl<D: Driver> Ctx<D> {
    pub fn new(
        store: Store,
        driver: D,
        platform: Platform,
        node: String,
        consumer: String,
    ) -> Self {
        Ctx {
            store,
            driver,
            platform,
            node,
            consumer,
            locks: Mutex::default(),
        }
    }

    /// Runs one command. Commands for one instance never overlap within this worker.
    pub async fn dispatch(&self, env: &CommandEnvelope) -> CommandResult {
        let Some(id) = env.instance_id else {
            return match env.command {
                Command::Ping => {
                    Ok(json!({"pong": true, "node": self.node, "worker": self.consumer}))
                }
                _ => Err(ErrorInfo::new(
                    "bad_command",
                    "this command needs an instance id",
                )),
            };
        };
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let result = self.dispatch_locked(id, env).await;
        drop(_guard);
        self.release_lock(id, lock);
        result
    }

    async fn dispatch_locked(&self, id: Uuid, env: &CommandEnvelope) -> CommandResult {
        let cmd = Some(env.command_id);
        match &env.command {
            Command::Ping => Ok(json!({"pong": true, "node": self.node, "worker": self.consumer})),
            Command::Start => {
                let (inst, token) = self.load(id, &env.command).await?;
                self.start(inst, token, cmd).await
            }
            Command::Stop => {
                let (inst, token) = self.load(id, &env.command).await?;
                self.stop(inst, token, cmd).await
            }
            Command::Restart => {
                let (inst, token) = self.load(id, &env.command).await?;
                let inst = self.stop_if_running(inst, token, cmd).await?;
                self.start(inst, token, cmd).await
            }
            Command::ApplyConfig { generation } => {
                let (inst, token) = self.load(id, &env.command).await?;
                if inst.instance.generation < *generation {
                    return Err(ErrorInfo::new(
                        "stale_spec",
                        format!("spec generation {generation} is not stored yet"),
                    ));
                }
                let inst = self.stop_if_running(inst, token, cmd).await?;
                self.start(inst, token, cmd).await
            }
            Command::Delete => {
                let (inst, token) = self.load(id, &env.command).await?;
                self.delete(inst, token, cmd).await
            }
        }
    }

    /// Reads the instance, checks the command may enter from its state, and takes a token.
    async fn load(&self, id: Uuid, command: &Command) -> Result<(StoredInstance, u64), ErrorInfo> {
        let inst = self.store.instance(id).await.map_err(internal)?;
        let inst = inst
            .ok_or_else(|| ErrorInfo::new("not_found", format!("instance {id} does not exist")))?;
        if let Some(Err(illegal)) = command.entry_state(inst.instance.state) {
            return Err(ErrorInfo::new("illegal_transition", illegal.to_string()));
        }
        let token = self.store.fence(id).await.map_err(internal)?;
        let token = token
            .ok_or_else(|| ErrorInfo::new("not_found", format!("instance {id} does not exist")))?;
        Ok((inst, token))
    }

    async fn start(
        &self,
        mut inst: StoredInstance,
        token: u64,
        cmd: Option<Uuid>,
    ) -> CommandResult {
        let id = inst.instance.id;
        let from = inst.instance.state;
        let placing = RuntimeInfo {
            node: Some(self.node.clone()),
            ..RuntimeInfo::default()
        };
        self.move_to(
            id,
            from,
            InstanceState::Starting,
            token,
            Some(&placing),
            cmd,
            "start requested",
        )
        .await?;
        inst.instance.state = InstanceState::Starting;
        match self.driver.start(&inst.instance).await {
            Ok(mut runtime) => {
                runtime.node = Some(self.node.clone());
                self.move_to(
                    id,
                    InstanceState::Starting,
                    InstanceState::Running,
                    token,
                    Some(&runtime),
                    cmd,
                    "healthy",
                )
                .await?;
                Ok(serde_json::to_value(&runtime).unwrap_or(Value::Null))
            }
            Err(error) => {
                let runtime = RuntimeInfo {
                    message: Some(error.to_string()),
                    ..placing
                };
                self.move_to(
                    id,
                    InstanceState::Starting,
                    InstanceState::Failed,
                    token,
                    Some(&runtime),
                    cmd,
                    "start failed",
                )
                .await?;
                Err(ErrorInfo::new("start_failed", error.to_string()))
            }
        }
    }

    async fn stop(&self, inst: StoredInstance, token: u64, cmd: Option<Uuid>) -> CommandResult {
        let inst = self.stop_if_running(inst, token, cmd).await?;
        Ok(json!({"state": inst.instance.state, "exitCode": inst.instance.runtime.exit_code}))
    }

    /// Brings a running (or failed, or lost) instance to `stopped`; other states pass through.
    async fn stop_if_running(
        &self,
        mut inst: StoredInstance,
        token: u64,
        cmd: Option<Uuid>,
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
                    token,
                    Some(&runtime),
                    cmd,
                    "stop requested",
                )
                .await?;
            }
            InstanceState::Running | InstanceState::Starting | InstanceState::Failed => {
                self.move_to(
                    id,
                    from,
                    InstanceState::Stopping,
                    token,
                    None,
                    cmd,
                    "stop requested",
                )
                .await?;
                let exit = self.driver.stop(id).await;
                match exit {
                    Ok(code) => {
                        runtime.exit_code = code;
                        self.move_to(
                            id,
                            InstanceState::Stopping,
                            InstanceState::Stopped,
                            token,
                            Some(&runtime),
                            cmd,
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
                            token,
                            Some(&runtime),
                            cmd,
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

    async fn delete(&self, inst: StoredInstance, token: u64, cmd: Option<Uuid>) -> CommandResult {
        let id = inst.instance.id;
        self.move_to(
            id,
            inst.instance.state,
            InstanceState::Deleting,
            token,
            None,
            cmd,
            "delete requested",
        )
        .await?;
        if let Err(error) = self.driver.remove(id).await {
            let runtime = RuntimeInfo {
                message: Some(error.to_string()),
                ..inst.instance.runtime.clone()
            };
            self.move_to(
                id,
                InstanceState::Deleting,
                InstanceState::Failed,
                token,
                Some(&runtime),
                cmd,
                "delete failed",
            )
            .await?;
            return Err(ErrorInfo::new("delete_failed", error.to_string()));
        }
        self.move_to(
            id,
            InstanceState::Deleting,
            InstanceState::Deleted,
            token,
            None,
            cmd,
            "removed from platform",
        )
        .await?;
        self.store
            .delete_instance(id, &inst.instance.spec.name, inst.instance.spec.platform)
            .await
            .map_err(internal)?;
        Ok(json!({"deleted": id}))
    }

    /// One fenced compare-and-set state change, plus its event.
    #[allow(clippy::too_many_arguments)]
    async fn move_to(
        &self,
        id: Uuid,
        from: InstanceState,
        to: InstanceState,
        token: u64,
        runtime: Option<&RuntimeInfo>,
        cmd: Option<Uuid>,
        reason: &str,
    ) -> Result<(), ErrorInfo> {
        from.check_move(to)
            .map_err(|e| ErrorInfo::new("illegal_transition", e.to_string()))?;
        match self
            .store
            .transition(id, from, to, token, runtime)
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
        self.emit(
            id,
            cmd,
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
        let event = Event {
            v: draas_protocol::SCHEMA_VERSION,
            instance_id: id,
            platform: self.platform,
            at: now(),
            command_id: cmd,
            source: self.consumer.clone(),
            kind,
        };
        if let Err(error) = self.store.append_event(&event).await {
            tracing::warn!(message = "event not recorded", instance = %id, %error);
        }
    }

    fn lock_for(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(id).or_default())
    }

    fn release_lock(&self, id: Uuid, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        drop(lock);
        if map.get(&id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&id);
        }
    }
}

pub(crate) fn internal(error: impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::new("internal", error.to_string())
}

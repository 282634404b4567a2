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
    Command, CommandEnvelope, ErrorInfo, Event, EventKind, InstanceState, Origin, Platform,
    RuntimeInfo,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::driver::Driver;

/// The result of one command: a JSON result or a coded error.
pub(crate) type CommandResult = Result<Value, ErrorInfo>;

/// What dispatching a command came to.
pub(crate) enum Dispatch {
    /// It ran (or was refused): record this outcome.
    Done(CommandResult),
    /// It belongs to this live node (which runs the instance): hand it over unexecuted.
    Defer(String),
}

/// An instance ready for a command, a command an earlier attempt already finished, or the
/// live node a resumed command belongs to.
enum Loaded {
    Ready(Box<StoredInstance>, u64),
    Done(Value),
    OtherNode(String),
}

/// What one execution carries into every step: its fencing token, its command and who asked.
#[derive(Clone)]
pub(crate) struct Exec {
    pub token: u64,
    pub cmd: Option<Uuid>,
    pub origin: Origin,
    /// The API caller that issued the command, named by the events it causes.
    pub actor: Option<String>,
}

/// The states an instance is in once `command` has done its work.
fn finished_in(command: &Command) -> &'static [InstanceState] {
    use InstanceState::*;
    match command {
        Command::Ping | Command::Logs { .. } => &[],
        Command::Start | Command::Restart | Command::ApplyConfig { .. } => &[Running],
        Command::Stop => &[Stopped],
        Command::Delete => &[Deleted],
    }
}

/// The states an interrupted execution of `command` may have left the instance in, from which
/// a later attempt resumes instead of refusing.
fn resumes_from(command: &Command) -> &'static [InstanceState] {
    use InstanceState::*;
    match command {
        Command::Ping | Command::Logs { .. } => &[],
        Command::Start => &[Starting],
        Command::Stop => &[Stopping],
        Command::Restart | Command::ApplyConfig { .. } => &[Stopping, Stopped, Starting],
        Command::Delete => &[Deleting],
    }
}

/// Everything command handlers share.
pub(crate) struct Ctx<D> {
    pub store: Store,
    pub driver: D,
    pub platform: Platform,
    pub node: String,
    pub consumer: String,
    heartbeat_ttl_ms: u64,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl<D: Driver> Ctx<D> {
    pub fn new(
        store: Store,
        driver: D,
        platform: Platform,
        node: String,
        consumer: String,
        heartbeat_ttl: std::time::Duration,
    ) -> Self {
        Ctx {
            store,
            driver,
            platform,
            node,
            consumer,
            heartbeat_ttl_ms: heartbeat_ttl.as_millis() as u64,
            locks: Mutex::default(),
        }
    }

    /// Runs one command. Commands for one instance never overlap within this worker.
    /// `attempts` counts executions of this operation, this one included: a later attempt may
    /// resume where a crashed one stopped.
    pub async fn dispatch(&self, env: &CommandEnvelope, attempts: u32) -> Dispatch {
        let Some(id) = env.instance_id else {
            return Dispatch::Done(match env.command {
                Command::Ping => Ok(self.pong()),
                _ => Err(ErrorInfo::new(
                    "bad_command",
                    "this command needs an instance id",
                )),
            });
        };
        if let Command::Logs { tail } = env.command {
            // Read-only: no lock, no state change. Secret values are scrubbed from the lines.
            let secrets = match self.store.instance(id).await {
                Ok(found) => found.map(|s| s.instance.spec.env).unwrap_or_default(),
                Err(error) => return Dispatch::Done(Err(internal(error))),
            };
            let logs = self.driver.logs(id, tail as usize).await;
            return Dispatch::Done(
                logs.map(|text| json!({ "lines": draas_protocol::env::scrub(&text, &secrets) }))
                    .map_err(|e| ErrorInfo::new("logs_unavailable", e.to_string())),
            );
        }
        let lock = self.lock_for(id);
        let guard = lock.lock().await;
        let result = self.dispatch_locked(id, env, attempts).await;
        drop(guard);
        self.release_lock(id, lock);
        result
    }

    fn pong(&self) -> Value {
        json!({"pong": true, "node": self.node, "worker": self.consumer})
    }

    async fn dispatch_locked(&self, id: Uuid, env: &CommandEnvelope, attempts: u32) -> Dispatch {
        if let Command::Ping = env.command {
            return Dispatch::Done(Ok(self.pong()));
        }
        let (inst, token) = match self.load(id, env, attempts).await {
            Ok(Loaded::Ready(inst, token)) => (*inst, token),
            Ok(Loaded::Done(result)) => return Dispatch::Done(Ok(result)),
            Ok(Loaded::OtherNode(node)) => {
                return Dispatch::Defer(node);
            }
            Err(error) => return Dispatch::Done(Err(error)),
        };
        let ex = Exec {
            token,
            cmd: Some(env.command_id),
            origin: env.origin,
            actor: env.actor.clone(),
        };
        Dispatch::Done(self.run(inst, &ex, &env.command).await)
    }

    async fn run(&self, inst: StoredInstance, ex: &Exec, command: &Command) -> CommandResult {
        match command {
            Command::Ping => Ok(self.pong()),
            Command::Logs { .. } => Err(ErrorInfo::new(
                "bad_command",
                "logs are read without a lock",
            )),
            Command::Start => self.start(inst, ex).await,
            Command::Stop => self.stop(inst, ex).await,
            Command::Restart => {
                let inst = self.stop_if_running(inst, ex).await?;
                self.start(inst, ex).await
            }
            Command::ApplyConfig { generation } => {
                if inst.instance.generation < *generation {
                    return Err(ErrorInfo::new(
                        "stale_spec",
                        format!("spec generation {generation} is not stored yet"),
                    ));
                }
                let inst = self.stop_if_running(inst, ex).await?;
                self.start(inst, ex).await
            }
            Command::Delete => self.delete(inst, ex).await,
        }
    }

    /// Reads the instance, checks the command may enter from its state (or, on a later
    /// attempt, resume from the state an earlier attempt left), and takes a fencing token.
    /// An interrupted command is resumed only on the node that runs the instance, while that
    /// node lives: resuming elsewhere would launch a second copy.
    async fn load(
        &self,
        id: Uuid,
        env: &CommandEnvelope,
        attempts: u32,
    ) -> Result<Loaded, ErrorInfo> {
        let command = &env.command;
        let not_found = || ErrorInfo::new("not_found", format!("instance {id} does not exist"));
        let Some(inst) = self.store.instance(id).await.map_err(internal)? else {
            // A delete whose worker died after removing the record already did its work.
            if attempts > 1 && matches!(command, Command::Delete) {
                return Ok(Loaded::Done(json!({"deleted": id})));
            }
            return Err(not_found());
        };
        let state = inst.instance.state;
        // Did an earlier attempt of this very command make the last change?
        let ours = attempts > 1 && inst.last_command == Some(env.command_id);
        if ours && finished_in(command).contains(&state) {
            tracing::info!(message = "an earlier attempt finished this command", instance = %id, command = %command.kind());
            let runtime = &inst.instance.runtime;
            return Ok(Loaded::Done(match command {
                Command::Stop => json!({"state": state, "exitCode": runtime.exit_code}),
                Command::Delete => {
                    // The earlier attempt reached `deleted` but may have died before dropping
                    // the record: finish that (idempotent) so no zombie keeps the name.
                    self.forget(&inst).await?;
                    json!({"deleted": id})
                }
                _ => serde_json::to_value(runtime).unwrap_or(Value::Null),
            }));
        }
        if let Some(Err(illegal)) = command.entry_state(state) {
            if !(ours && resumes_from(command).contains(&state)) {
                return Err(ErrorInfo::new("illegal_transition", illegal.to_string()));
            }
            if let Some(node) = inst
                .instance
                .runtime
                .node
                .as_deref()
                .filter(|n| *n != self.node)
                && self.node_alive(node).await?
            {
                return Ok(Loaded::OtherNode(node.to_owned()));
            }
            tracing::info!(message = "resuming an interrupted command", instance = %id, command = %command.kind(), %state);
        }
        let token = self
            .store
            .fence(id)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        Ok(Loaded::Ready(Box::new(inst), token))
    }

    async fn node_alive(&self, node: &str) -> Result<bool, ErrorInfo> {
        let workers = self
            .store
            .live_workers(self.platform, self.heartbeat_ttl_ms)
            .await
            .map_err(internal)?;
        Ok(workers.iter().any(|w| w.node == node))
    }

    /// Appends a command of DRaaS's own (a restart policy's start, a reschedule) to the stream
    /// the instance's commands go to. Nobody waits for its reply; its operation is recorded.
    pub(crate) async fn enqueue(
        &self,
        id: Uuid,
        command: Command,
        origin: Origin,
    ) -> Result<(), draas_bus::BusError> {
        let stored = self.store.instance(id).await?;
        let Some(stored) = stored else { return Ok(()) };
        let mut env = CommandEnvelope::new(self.platform, Some(id), command, now());
        env.origin = origin;
        let op = draas_protocol::Operation::pending(
            env.command_id,
            Some(id),
            self.platform,
            env.command.kind(),
            env.issued_at,
        );
        let stream = draas_bus::streams::command_stream(
            self.store.keys(),
            self.platform,
            Some(&stored.instance),
        );
        self.store.submit(&stream, &env, &op).await?;
        Ok(())
    }

    async fn start(&self, mut inst: StoredInstance, ex: &Exec) -> CommandResult {
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
        match self.driver.start(&inst.instance).await {
            Ok(mut runtime) => {
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

    async fn stop(&self, inst: StoredInstance, ex: &Exec) -> CommandResult {
        let inst = self.stop_if_running(inst, ex).await?;
        Ok(json!({"state": inst.instance.state, "exitCode": inst.instance.runtime.exit_code}))
    }

    /// Brings a running (or starting, failed or lost) instance to `stopped`; an interrupted
    /// stop (`stopping`) is finished; other states pass through unchanged.
    async fn stop_if_running(
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

    async fn delete(&self, inst: StoredInstance, ex: &Exec) -> CommandResult {
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
    async fn forget(&self, inst: &StoredInstance) -> Result<(), ErrorInfo> {
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
    async fn move_to(
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
    async fn emit_by(&self, id: Uuid, cmd: Option<Uuid>, actor: Option<String>, kind: EventKind) {
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

/// The error code of a failure that says nothing about the command: Redis was unreachable.
/// The worker leaves such a command pending, so it is resumed, instead of recording a failure.
pub(crate) const TRANSIENT: &str = "redis_unavailable";

pub(crate) fn internal(error: draas_bus::BusError) -> ErrorInfo {
    match &error {
        draas_bus::BusError::Redis(e)
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_connection_refusal() =>
        {
            ErrorInfo::new(TRANSIENT, error.to_string())
        }
        _ => ErrorInfo::new("internal", error.to_string()),
    }
}

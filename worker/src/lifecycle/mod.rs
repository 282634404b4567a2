//! What each `Command` does to an instance. The dispatcher is one exhaustive `match`, so a
//! new command does not compile until it is handled here.
//!
//! Every state change is a compare-and-set on the instance record carrying this execution's
//! fencing token: an execution that was superseded (its command reclaimed by another worker)
//! is refused before its next side effect.
//!
//! Here: the dispatcher, loading and fencing, locks; in `commands`: what start, stop and
//! delete do, and the state moves and events they make.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use draas_bus::Store;
use draas_bus::clock::now;
use draas_bus::store::StoredInstance;
use draas_protocol::{Command, CommandEnvelope, ErrorInfo, InstanceState, Origin, Platform};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::driver::Driver;

mod commands;

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
        let mut env = CommandEnvelope::new(self.platform, Some(id), command, now());
        env.origin = origin;
        self.enqueue_envelope(env).await
    }

    /// [`Ctx::enqueue`] of a ready envelope (the controller's, whose command id it marked
    /// first). Nothing is appended for an instance that no longer exists.
    pub(crate) async fn enqueue_envelope(
        &self,
        env: CommandEnvelope,
    ) -> Result<(), draas_bus::BusError> {
        let Some(id) = env.instance_id else {
            return Ok(());
        };
        let stored = self.store.instance(id).await?;
        let Some(stored) = stored else { return Ok(()) };
        // The record is the instance's tenant's, and stays so after the instance is gone.
        let mut env = env;
        env.tenant = Some(stored.instance.tenant.clone());
        let op = draas_protocol::Operation::of(&env);
        let stream = draas_bus::streams::command_stream(
            self.store.keys(),
            self.platform,
            Some(&stored.instance),
        );
        self.store.submit(&stream, &env, &op).await?;
        Ok(())
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

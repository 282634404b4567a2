//! Request/reply over the bus: append a command, then await its reply.
//!
//! One reader task per API node blocks on the node's reply stream (a dedicated connection)
//! and hands each reply to the request waiting on its correlation id. Requests never open
//! connections of their own and never block Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use draas_bus::store::WorkerInfo;
use draas_bus::streams::{keep_replies_alive, last_id, payload};
use draas_bus::{Store, clock, connect};
use draas_protocol::{
    Command, CommandEnvelope, Instance, Operation, Platform, Reply, Timestamp, codec,
};
use draas_telemetry::cache::Handles;
use draas_telemetry::names;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Sends commands and routes their replies back to the waiting requests.
pub struct Dispatcher {
    store: Store,
    reply_stream: String,
    waiters: Mutex<HashMap<Uuid, oneshot::Sender<Reply>>>,
    worker_ttl: Duration,
    wait_aof: bool,
    /// The live workers last read per platform, and when ([`LIVE_TTL`]).
    live_seen: Mutex<HashMap<Platform, LiveWorkers>>,
}

/// A platform's live workers as read, and when.
type LiveWorkers = (std::time::Instant, Arc<Vec<WorkerInfo>>);

/// How long a node routes commands by what it last read of a platform's live workers. Reading
/// them costs a `ZRANGEBYSCORE` and an `HGETALL` per worker, which would otherwise be paid by
/// every command. Only a non-empty answer is kept, and each worker kept still has to be within
/// its heartbeat TTL when used, so this can only make a worker that left gracefully look live
/// for this long: its commands then wait in the stream like those sent just before it left.
const LIVE_TTL: Duration = Duration::from_millis(500);

/// What to send: a command for a platform (and maybe an instance), under an operation id.
pub struct Request<'a> {
    /// The stream it goes to, from [`Dispatcher::route`].
    pub stream: String,
    pub platform: Platform,
    pub instance: Option<&'a Instance>,
    pub command: Command,
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` of the HTTP request.
    pub trace: Option<String>,
    pub operation_id: Uuid,
    /// After this instant nobody waits for the reply.
    pub deadline: Timestamp,
    /// The caller that asked (`Caller::actor`), named by the events the command causes.
    pub actor: Option<String>,
}

impl<'a> Request<'a> {
    /// A request with a fresh operation id, no idempotency key and no trace.
    pub fn new(
        stream: String,
        platform: Platform,
        instance: Option<&'a Instance>,
        command: Command,
        wait: Duration,
    ) -> Self {
        Request {
            stream,
            platform,
            instance,
            command,
            idempotency_key: None,
            trace: None,
            operation_id: Uuid::now_v7(),
            deadline: Timestamp(clock::now().millis() + wait.as_millis() as u64),
            actor: None,
        }
    }
}

/// A command on the bus and the way to its reply.
pub struct Submitted {
    pub operation: Uuid,
    /// The pending operation record, which a reply completes.
    pending: Operation,
    /// Whether the record was written at submit; if not, the worker's claim writes it, and
    /// [`Submitted::operation`] does if no reply comes in time.
    recorded: bool,
    reply: oneshot::Receiver<Reply>,
    dispatcher: Arc<Dispatcher>,
    /// When it was appended, and where the reply's latency is recorded.
    issued: std::time::Instant,
    latency: metrics::Histogram,
}

impl Submitted {
    /// Waits up to `wait` for the reply; `None` when it did not come in time.
    pub async fn wait(&mut self, wait: Duration) -> Option<Reply> {
        match tokio::time::timeout(wait, &mut self.reply).await {
            Ok(Ok(reply)) => {
                self.latency.record(self.issued.elapsed().as_secs_f64());
                Some(reply)
            }
            _ => None,
        }
    }

    /// Waits up to `wait` for the reply and returns the operation it completes: the record as
    /// submitted with the reply's outcome, attempts, worker and completion time, which is what
    /// the worker wrote to the record before it replied (so no read of the record is needed).
    /// When no reply came in time, or one whose sender did not know the attempts (a dead
    /// letter), the record says where the operation is: it is read, or written as pending if
    /// there is none yet (nobody claimed the command), since the caller is about to learn its
    /// id and may poll it.
    pub async fn operation(mut self, wait: Duration) -> ApiResult<Operation> {
        let Some(reply) = self.wait(wait).await.filter(|r| r.attempts > 0) else {
            let (store, id) = (&self.dispatcher.store, self.operation);
            return if self.recorded {
                store
                    .operation(id)
                    .await?
                    .ok_or_else(|| ApiError::Internal(format!("operation {id} vanished")))
            } else {
                Ok(store.record_operation(&self.pending).await?)
            };
        };
        let (state, result, error) = match reply.outcome {
            draas_protocol::Outcome::Succeeded { result } => (
                draas_protocol::OperationState::Succeeded,
                Some(result),
                None,
            ),
            draas_protocol::Outcome::Failed { error } => {
                (draas_protocol::OperationState::Failed, None, Some(error))
            }
        };
        Ok(Operation {
            state,
            result,
            error,
            completed_at: Some(reply.completed_at),
            attempts: reply.attempts,
            worker: Some(reply.worker),
            ..self.pending.clone()
        })
    }
}

impl Drop for Submitted {
    fn drop(&mut self) {
        self.dispatcher
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.operation);
    }
}

impl Dispatcher {
    /// Starts the reply reader for `node`; it stops when `stop` is cancelled.
    pub async fn start(
        store: Store,
        redis_url: impl Into<connect::RedisTarget>,
        node: &str,
        worker_ttl: Duration,
        wait_aof: bool,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let reply_stream = store.keys().replies(node);
        let dispatcher = Arc::new(Dispatcher {
            store,
            reply_stream,
            waiters: Mutex::default(),
            worker_ttl,
            wait_aof,
            live_seen: Mutex::default(),
        });
        let redis_url = redis_url.into();
        let mut reader = connect::blocking(&redis_url).await?;
        // Every reply to a command this node sends later comes after the stream's newest entry.
        let from = last_id(&mut reader, &dispatcher.reply_stream)
            .await
            .map_err(bus_to_redis)?;
        tokio::spawn(Arc::clone(&dispatcher).read_replies(reader, from, redis_url, stop));
        Ok(dispatcher)
    }

    /// The stream a command for `instance` goes to, or a 503 at once when no live worker could
    /// take it. A process instance's commands go to the node that runs it while that node has
    /// a live worker; once it has none, to the platform stream, where any worker takes them
    /// (a half-done command is resumed only by its own node while that node lives).
    pub async fn route(
        &self,
        platform: Platform,
        instance: Option<&Instance>,
    ) -> ApiResult<String> {
        let workers = self.live_workers(platform).await?;
        if workers.is_empty() {
            return Err(ApiError::NoWorker(format!(
                "no live worker for platform `{platform}`; start one with `draas worker --platform {platform}`"
            )));
        }
        let node = instance.and_then(|i| i.runtime.node.as_deref());
        let keys = self.store.keys();
        Ok(match (platform, node) {
            (Platform::Process, Some(node)) if workers.iter().any(|w| w.node == node) => {
                keys.node_commands(platform, node)
            }
            _ => keys.commands(platform),
        })
    }

    /// The platform's live workers, as read at most [`LIVE_TTL`] ago (an empty answer is never
    /// kept, so a platform whose first worker just arrived is routed to at once).
    async fn live_workers(&self, platform: Platform) -> ApiResult<Arc<Vec<WorkerInfo>>> {
        let ttl = self.worker_ttl.as_millis() as u64;
        let seen = self
            .live_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&platform)
            .filter(|(at, _)| at.elapsed() < LIVE_TTL)
            .map(|(_, workers)| Arc::clone(workers));
        if let Some(workers) = seen {
            let since = clock::now().millis().saturating_sub(ttl);
            if workers.iter().all(|w| w.last_heartbeat.millis() >= since) {
                return Ok(workers);
            }
        }
        let workers = Arc::new(self.store.live_workers(platform, ttl).await?);
        if !workers.is_empty() {
            self.live_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(platform, (std::time::Instant::now(), Arc::clone(&workers)));
        }
        Ok(workers)
    }

    /// Appends the command (with its operation record where others may ask about it, see
    /// [`Submitted`]), registering for its reply first.
    pub async fn submit(self: &Arc<Self>, request: Request<'_>) -> ApiResult<Submitted> {
        let Request {
            stream,
            platform,
            instance,
            command,
            idempotency_key,
            trace,
            operation_id,
            deadline,
            actor,
        } = request;
        let now = clock::now();
        let mut env = CommandEnvelope::new(platform, instance.map(|i| i.id), command, now);
        env.command_id = operation_id;
        env.correlation_id = operation_id;
        env.idempotency_key = idempotency_key;
        // The request's span context when spans are exported, else the caller's headers.
        let (traceparent, tracestate) = crate::observe::current_trace();
        env.trace = traceparent.or(trace);
        env.trace_state = tracestate;
        env.deadline = deadline;
        env.reply_to = Some(self.reply_stream.clone());
        env.actor = actor;
        // The operation belongs to the instance's tenant: only that tenant (and cluster
        // administrators) may read it.
        env.tenant = instance.map(|i| i.tenant.clone());
        let op = Operation::of(&env);
        // A command whose id only this request knows gets its record from the worker's claim
        // (one command less per command); one that others may ask about (an idempotency key,
        // or an answer at once, `?wait=0`) gets it before it is appended.
        let recorded = env.idempotency_key.is_some() || deadline.millis() <= now.millis();
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(operation_id, tx);
        let submitted = Submitted {
            operation: operation_id,
            pending: op.clone(),
            recorded,
            reply: rx,
            dispatcher: Arc::clone(self),
            issued: std::time::Instant::now(),
            latency: command_handles(platform, env.command.kind()).1,
        };
        if recorded {
            self.store.submit(&stream, &env, &op).await?;
        } else {
            self.store.append(&stream, &env).await?;
        }
        command_handles(platform, env.command.kind()).0.increment(1);
        if self.wait_aof {
            self.wait_for_aof().await?;
        }
        Ok(submitted)
    }

    async fn wait_for_aof(&self) -> ApiResult<()> {
        let (local, _replicas): (i64, i64) = redis::cmd("WAITAOF")
            .arg(1)
            .arg(0)
            .arg(1000)
            .query_async(&mut self.store.conn())
            .await
            .map_err(|e| ApiError::Unavailable(format!("WAITAOF failed: {e}")))?;
        if local < 1 {
            return Err(ApiError::Unavailable(
                "the command was not fsynced to the AOF within 1 s".into(),
            ));
        }
        Ok(())
    }

    async fn read_replies(
        self: Arc<Self>,
        mut reader: draas_bus::connect::Conn,
        mut last: String,
        redis_url: connect::RedisTarget,
        stop: CancellationToken,
    ) {
        let options = StreamReadOptions::default().count(512).block(2000);
        // Workers reply with `XADD NOMKSTREAM` and no EXPIRE: this reader keeps the TTL fresh.
        let refresh = Duration::from_secs(draas_bus::streams::REPLIES_REFRESH_SECS);
        let mut refreshed: Option<std::time::Instant> = None;
        while !stop.is_cancelled() {
            if refreshed.is_none_or(|at| at.elapsed() >= refresh) {
                match keep_replies_alive(&mut reader, &self.reply_stream).await {
                    Ok(()) => refreshed = Some(std::time::Instant::now()),
                    Err(error) => {
                        tracing::warn!(message = "could not refresh the reply stream's TTL", %error)
                    }
                }
            }
            let (keys, ids) = ([&self.reply_stream], [&last]);
            let read = tokio::select! {
                () = stop.cancelled() => break,
                read = redis::AsyncCommands::xread_options::<_, _, Option<StreamReadReply>>(
                    &mut reader, &keys, &ids, &options,
                ) => read,
            };
            let reply = match read {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(message = "reply reader failed; reconnecting", %error);
                    match connect::blocking(&redis_url).await {
                        Ok(conn) => {
                            reader = conn;
                            // Redis may have lost the TTL with the data: refresh it at once.
                            refreshed = None;
                        }
                        Err(error) => {
                            tracing::error!(message = "reply reader cannot reconnect", %error)
                        }
                    }
                    continue;
                }
            };
            let mut delivered = false;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                last = entry.id.clone();
                match payload(&entry).and_then(|b| Ok(codec::decode::<Reply>(&b)?)) {
                    Ok(reply) => delivered |= self.deliver(reply),
                    Err(error) => {
                        tracing::warn!(message = "undecodable reply skipped", id = %entry.id, %error)
                    }
                }
            }
            // Let the requests just answered run on this thread before the next read is sent:
            // sending it wakes the connection's task, which would take their place, and
            // another thread (one more wake-up, often on a busy core) would run them.
            if delivered {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Hands `reply` to the request waiting for it; false when none is.
    fn deliver(&self, reply: Reply) -> bool {
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&reply.correlation_id);
        waiter.is_some_and(|tx| tx.send(reply).is_ok())
    }
}

/// Start-up failures surface as Redis errors (the caller reports "connecting to Redis").
fn bus_to_redis(error: draas_bus::BusError) -> redis::RedisError {
    match error {
        draas_bus::BusError::Redis(e) => e,
        other => redis::RedisError::from((
            redis::ErrorKind::Io,
            "reading the reply stream",
            other.to_string(),
        )),
    }
}

/// The issued counter and the latency histogram of (platform, kind).
fn command_handles(
    platform: Platform,
    kind: draas_protocol::CommandKind,
) -> (metrics::Counter, metrics::Histogram) {
    static HANDLES: std::sync::LazyLock<
        Handles<(Platform, draas_protocol::CommandKind), (metrics::Counter, metrics::Histogram)>,
    > = std::sync::LazyLock::new(Handles::default);
    HANDLES.get(&(platform, kind), || {
        let labels = [("platform", platform.as_str()), ("kind", kind.as_str())];
        let issued = metrics::counter!(names::COMMANDS_ISSUED, &labels);
        let latency = metrics::histogram!(names::COMMAND_LATENCY, &labels);
        ((platform, kind), (issued, latency))
    })
}

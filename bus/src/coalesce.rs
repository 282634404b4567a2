//! Coalescing: the calls that arrive while one batch is on the wire go out together as the next.
//!
//! A worker reading several entries at once claims, finishes and acks them at about the same
//! time. Sent one by one, each is its own round trip and (for a script) its own `EVALSHA`.
//! Here a call made while nothing of its kind is on the wire is sent by its own caller at once,
//! so a lone command pays nothing for the batching (no timer, no hand-off). Calls made while
//! others are out join a queue; a task sends the queue as one batch (one pipeline or one
//! script call) once the calls made in the same scheduler tick have joined it. A batch never
//! waits for an earlier one to come back, so on a distant Redis batches overlap on the wire as
//! single calls would. Each caller still awaits its own result: a failed batch fails every
//! call in it, as the same calls sent alone would have failed.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::BusError;
use crate::connect::Conn;

/// One kind of call that can be sent in batches.
pub(crate) trait Batch: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;
    /// What the calls do, for errors ("acknowledging entries").
    const WHAT: &'static str;
    /// Most calls one batch carries; more wait for the next one.
    const MAX: usize;

    /// Sends `items` in one step: one result per item, in order, or one error for all.
    fn send(
        &self,
        conn: &mut Conn,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, String>> + Send;
}

/// A call and where its result goes.
struct Call<B: Batch> {
    item: B::Item,
    done: oneshot::Sender<Result<B::Output, String>>,
}

/// What every handle of one coalescer shares.
struct Shared<B: Batch> {
    batch: B,
    conn: Conn,
    state: Mutex<State<B>>,
}

/// The sends on the wire, the calls waiting for the next batch, and whether a task to send
/// them is on its way.
struct State<B: Batch> {
    in_flight: usize,
    queue: Vec<Call<B>>,
    scheduled: bool,
}

/// The sending side, made on first use.
pub(crate) struct Coalescer<B: Batch> {
    shared: Arc<OnceLock<Arc<Shared<B>>>>,
}

impl<B: Batch> Clone for Coalescer<B> {
    fn clone(&self) -> Self {
        Coalescer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: Batch> Default for Coalescer<B> {
    fn default() -> Self {
        Coalescer {
            shared: Arc::default(),
        }
    }
}

impl<B: Batch> Coalescer<B> {
    /// Makes the call and returns its result. `batch` makes the sender the first time. A call
    /// made while nothing of this kind is on the wire is sent by its caller at once (no
    /// hand-off to another task, so a lone command pays nothing). A call made while others
    /// are out joins a queue, and a task sends the queue as one batch as soon as the calls
    /// made in the same scheduler tick have joined it; it never waits for an earlier batch, so
    /// batches overlap on the wire as single calls would.
    pub(crate) async fn call(
        &self,
        conn: &Conn,
        batch: impl FnOnce() -> B,
        item: B::Item,
    ) -> Result<B::Output, BusError> {
        let shared = Arc::clone(self.shared.get_or_init(|| {
            Arc::new(Shared {
                batch: batch(),
                conn: conn.clone(),
                state: Mutex::new(State {
                    in_flight: 0,
                    queue: Vec::new(),
                    scheduled: false,
                }),
            })
        }));
        let (queued, schedule) = {
            let mut state = shared.lock();
            if state.in_flight == 0 {
                state.in_flight = 1;
                (Ok(item), false)
            } else {
                let (done, result) = oneshot::channel();
                state.queue.push(Call { item, done });
                let schedule = !std::mem::replace(&mut state.scheduled, true);
                (Err(result), schedule)
            }
        };
        if schedule {
            tokio::spawn(drain(Arc::clone(&shared)));
        }
        let output = match queued {
            Ok(item) => {
                let _sending = Sending(Arc::clone(&shared));
                let mut conn = shared.conn.clone();
                match shared
                    .batch
                    .send(&mut conn, std::slice::from_ref(&item))
                    .await
                {
                    Ok(mut outputs) if outputs.len() == 1 => {
                        outputs.pop().ok_or_else(|| "no answer".to_owned())
                    }
                    Ok(outputs) => Err(format!("{} answers to 1 call", outputs.len())),
                    Err(message) => Err(message),
                }
            }
            Err(result) => result
                .await
                .unwrap_or_else(|_| Err("its sender stopped".to_owned())),
        };
        output.map_err(failed::<B>)
    }
}

impl<B: Batch> Shared<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One send on the wire; counted out when it ends or its caller gives up (drops it).
struct Sending<B: Batch>(Arc<Shared<B>>);

impl<B: Batch> Drop for Sending<B> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

/// Sends the queued calls as one batch (or, past [`Batch::MAX`], one after another), once the
/// calls made in this scheduler tick have joined.
async fn drain<B: Batch>(shared: Arc<Shared<B>>) {
    tokio::task::yield_now().await;
    let mut calls: Vec<Call<B>> = {
        let mut state = shared.lock();
        state.scheduled = false;
        state.in_flight += 1;
        std::mem::take(&mut state.queue)
    };
    let _sending = Sending(Arc::clone(&shared));
    let mut conn = shared.conn.clone();
    while !calls.is_empty() {
        let rest = calls.split_off(calls.len().min(B::MAX));
        let (items, dones): (Vec<_>, Vec<_>) = calls.into_iter().map(|c| (c.item, c.done)).unzip();
        match shared.batch.send(&mut conn, &items).await {
            Ok(outputs) if outputs.len() == items.len() => {
                for (done, output) in dones.into_iter().zip(outputs) {
                    let _ = done.send(Ok(output));
                }
            }
            answered => {
                let message = match answered {
                    Err(message) => message,
                    Ok(outputs) => format!("{} answers to {} calls", outputs.len(), items.len()),
                };
                for done in dones {
                    let _ = done.send(Err(message.clone()));
                }
            }
        }
        calls = rest;
    }
}

fn failed<B: Batch>(message: impl Into<String>) -> BusError {
    BusError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        B::WHAT,
        message.into(),
    )))
}

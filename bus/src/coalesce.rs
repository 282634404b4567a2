//! Coalescing: calls made while others of their kind are on the wire go out together.
//!
//! A worker reading several entries at once claims, finishes and acks them at about the same
//! time. Sent one by one, each is its own round trip and (for a script) its own `EVALSHA`.
//! Here a call made while nothing of its kind is on the wire is sent by its own caller at once,
//! so a lone command pays nothing for the batching (no timer, no hand-off). Calls made while
//! others are out join a queue; a task sends the queue as one batch (one pipeline or one
//! script call) once the calls made in the same scheduler tick have joined it. A batch does
//! not wait for an earlier one to come back (only a tick's queue longer than [`Batch::MAX`]
//! goes in chunks, one after another), so on a distant Redis batches overlap on the wire as
//! single calls would. Each caller awaits its own result; a batch answers each call on its
//! own, and a batch that fails as a whole (the connection) fails every call in it, as the same
//! calls sent alone would have failed.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::BusError;

/// One kind of call that can be sent in batches, with the connection it is sent on.
pub(crate) trait Batch: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;
    /// What the calls do, for errors ("acknowledging entries").
    const WHAT: &'static str;
    /// Most calls one batch carries; more go in the next one.
    const MAX: usize;

    /// Sends `items` in one step: one result per item, in order, or one error for all.
    fn send(
        &self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Result<Self::Output, String>>, String>> + Send;
}

/// A call and where its result goes.
struct Call<B: Batch> {
    item: B::Item,
    done: oneshot::Sender<Result<B::Output, String>>,
}

/// What every handle of one coalescer shares.
struct Shared<B: Batch> {
    batch: B,
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
    /// Makes the call and returns its result. `batch` makes the sender the first time. See
    /// the module docs for who sends it and when.
    pub(crate) async fn call(
        &self,
        batch: impl FnOnce() -> B,
        item: B::Item,
    ) -> Result<B::Output, BusError> {
        let shared = Arc::clone(self.shared.get_or_init(|| {
            Arc::new(Shared {
                batch: batch(),
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
            tokio::spawn(drain(Scheduled(Some(Arc::clone(&shared)))));
        }
        let output = match queued {
            Ok(item) => {
                let _sending = Sending(Arc::clone(&shared));
                match shared.batch.send(std::slice::from_ref(&item)).await {
                    Ok(mut outputs) if outputs.len() == 1 => {
                        outputs.pop().unwrap_or_else(|| Err("no answer".to_owned()))
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

/// A drain that has not taken the queue yet, moved into its task when spawned. Dropped so (the
/// task never ran: the runtime went away), it fails the queued calls and lets the next queued
/// call schedule a drain of its own.
struct Scheduled<B: Batch>(Option<Arc<Shared<B>>>);

impl<B: Batch> Drop for Scheduled<B> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            let mut state = shared.lock();
            state.scheduled = false;
            state.queue.clear();
        }
    }
}

/// Sends the queued calls as one batch (or, past [`Batch::MAX`], one after another), once the
/// calls made in this scheduler tick have joined.
async fn drain<B: Batch>(mut scheduled: Scheduled<B>) {
    let Some(shared) = scheduled.0.as_ref().map(Arc::clone) else {
        return;
    };
    tokio::task::yield_now().await;
    let mut calls: Vec<Call<B>> = {
        let mut state = shared.lock();
        state.scheduled = false;
        state.in_flight += 1;
        std::mem::take(&mut state.queue)
    };
    scheduled.0 = None;
    let _sending = Sending(Arc::clone(&shared));
    while !calls.is_empty() {
        let rest = calls.split_off(calls.len().min(B::MAX));
        let (items, dones): (Vec<_>, Vec<_>) = calls.into_iter().map(|c| (c.item, c.done)).unzip();
        match shared.batch.send(&items).await {
            Ok(outputs) if outputs.len() == items.len() => {
                for (done, output) in dones.into_iter().zip(outputs) {
                    let _ = done.send(output);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::Semaphore;

    use super::*;

    /// Echoes its items (an odd one fails on its own) and records each send: how many items,
    /// from which task. Sends wait for a permit, so a test holds them on the wire.
    struct Echo {
        gate: Arc<Semaphore>,
        sends: Sends,
    }

    impl Batch for Echo {
        type Item = u32;
        type Output = u32;
        const WHAT: &'static str = "echoing";
        const MAX: usize = 4;

        async fn send(&self, items: &[u32]) -> Result<Vec<Result<u32, String>>, String> {
            let task = tokio::task::try_id();
            self.sends.lock().unwrap().push((items.len(), task));
            // Each send uses up a permit, so the test decides how many get through.
            self.gate
                .acquire()
                .await
                .map_err(|e| e.to_string())?
                .forget();
            Ok(items
                .iter()
                .map(|&n| {
                    if n % 2 == 1 {
                        Err(format!("{n} is odd"))
                    } else {
                        Ok(n)
                    }
                })
                .collect())
        }
    }

    fn echo() -> (
        Coalescer<Echo>,
        impl Fn() -> Echo + Clone + Send + 'static,
        Arc<Semaphore>,
        Sends,
    ) {
        let gate = Arc::new(Semaphore::new(0));
        let sends: Sends = Arc::default();
        let make = {
            let (gate, sends) = (Arc::clone(&gate), Arc::clone(&sends));
            move || Echo {
                gate: Arc::clone(&gate),
                sends: Arc::clone(&sends),
            }
        };
        (Coalescer::default(), make, gate, sends)
    }

    /// Each send: how many items, from which task.
    type Sent = (usize, Option<tokio::task::Id>);
    type Sends = Arc<Mutex<Vec<Sent>>>;

    /// Makes a call of 2 from a task of its own; the task's id.
    async fn lone(
        coalescer: &Coalescer<Echo>,
        make: impl Fn() -> Echo + Send + 'static,
    ) -> tokio::task::Id {
        let coalescer = coalescer.clone();
        let caller =
            tokio::spawn(
                async move { (tokio::task::id(), coalescer.call(make, 2).await.unwrap()) },
            );
        let (task, answer) = caller.await.unwrap();
        assert_eq!(answer, 2);
        task
    }

    /// Yields until `cond` holds of the sends, for at most 10 s.
    async fn until(sends: &Sends, cond: impl Fn(&[Sent]) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cond(&sends.lock().unwrap()) {
            assert!(tokio::time::Instant::now() < deadline, "condition not met");
            tokio::task::yield_now().await;
        }
    }

    // One thread: a drain runs only when the test lets it, so the batches are exact.
    #[tokio::test]
    async fn a_lone_call_goes_from_its_caller_and_the_rest_together() {
        let (coalescer, make, gate, sends) = echo();
        gate.add_permits(1);
        let task = lone(&coalescer, make.clone()).await;
        assert_eq!(sends.lock().unwrap().as_slice(), &[(1, Some(task))]);

        // One on the wire; six more made meanwhile go as batches of at most 4 (MAX), each
        // call answered on its own (odd ones fail alone).
        let first = tokio::spawn({
            let (coalescer, make) = (coalescer.clone(), make.clone());
            async move { coalescer.call(make, 0).await.map_err(|e| e.to_string()) }
        });
        until(&sends, |s| s.len() == 2).await;
        let mut rest: Vec<_> = (1..=6)
            .map(|n| Box::pin(coalescer.call(make.clone(), n)))
            .collect();
        for call in &mut rest {
            assert!(futures_poll_once(call).await.is_none(), "queued");
        }
        gate.add_permits(100);
        assert_eq!(first.await.unwrap(), Ok(0));
        for (n, call) in (1..=6).zip(rest) {
            match call.await {
                Ok(m) => assert_eq!((n % 2, m), (0, n)),
                Err(e) => assert!(n % 2 == 1 && e.to_string().contains("is odd"), "{n}: {e}"),
            }
        }
        let sizes: Vec<usize> = sends.lock().unwrap().iter().map(|s| s.0).collect();
        assert_eq!(sizes, [1, 1, 4, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_gives_up_leaves_the_wire_free() {
        let (coalescer, make, gate, sends) = echo();
        let first = tokio::spawn({
            let (coalescer, make) = (coalescer.clone(), make.clone());
            async move { coalescer.call(make, 0).await.map_err(|e| e.to_string()) }
        });
        until(&sends, |s| s.len() == 1).await;
        first.abort();
        assert!(first.await.is_err_and(|e| e.is_cancelled()));
        // Nothing is on the wire any more: the next lone call goes from its own caller.
        gate.add_permits(1);
        let task = lone(&coalescer, make.clone()).await;
        assert_eq!(sends.lock().unwrap()[1], (1, Some(task)));
    }

    #[test]
    fn a_drain_whose_runtime_went_away_fails_its_calls_and_wedges_nothing() {
        let (coalescer, make, gate, sends) = echo();
        let gone = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        gone.block_on(async {
            let first = tokio::spawn({
                let (coalescer, make) = (coalescer.clone(), make.clone());
                async move { coalescer.call(make, 0).await }
            });
            until(&sends, |s| s.len() == 1).await;
            // Queued behind the first; its drain is spawned but never runs here.
            let mut second = Box::pin(coalescer.call(make.clone(), 2));
            assert!(futures_poll_once(&mut second).await.is_none());
            drop(first);
            drop(second);
        });
        drop(gone);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // One on the wire again, and one queued behind it: its drain must be scheduled.
            let on_wire = tokio::spawn({
                let (coalescer, make) = (coalescer.clone(), make.clone());
                async move { coalescer.call(make, 4).await.map_err(|e| e.to_string()) }
            });
            until(&sends, |s| s.len() == 2).await;
            let queued = tokio::spawn({
                let (coalescer, make) = (coalescer.clone(), make.clone());
                async move { coalescer.call(make, 6).await.map_err(|e| e.to_string()) }
            });
            until(&sends, |s| s.len() == 3).await;
            gate.add_permits(100);
            let within = std::time::Duration::from_secs(10);
            let queued = tokio::time::timeout(within, queued).await;
            assert_eq!(queued.expect("the queued call went out").unwrap(), Ok(6));
            assert_eq!(on_wire.await.unwrap(), Ok(4));
        });
    }

    /// Polls a future once: its output if it was ready.
    async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}

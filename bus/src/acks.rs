//! Coalesced acknowledgements: the acks of commands that finish together reach Redis together.
//!
//! Every finished command acknowledges and deletes its stream entry. Sent one by one, that is
//! an `XACK` and an `XDEL` (or one `XACKDEL` on Redis 8.2+) and a round trip per command. Here
//! one task owns the sending: acks that arrive while a batch is on the wire go out as the next
//! batch, with one `XACK` and one `XDEL` per stream for all their ids. There is no timer, so
//! an ack that finds the task idle goes out at once and a lone command pays nothing for the
//! batching. Each caller still awaits its own ack's result: "acked" keeps meaning acked, and a
//! failed batch fails every ack in it (their entries stay pending, as a failed single ack
//! would leave them).
//!
//! The task holds the connection, never the [`Store`](crate::Store), and ends when the last
//! store handle that could send to it is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use crate::BusError;
use crate::connect::Conn;
use crate::streams::add_ack_and_delete;

/// Most ids one batch carries; more wait for the next one.
const MAX_BATCH: usize = 512;

/// One entry to acknowledge and delete, and where its result goes.
struct Ack {
    stream: String,
    id: String,
    done: oneshot::Sender<Result<(), String>>,
}

/// The sending side, started on first use (a store that never acks never spawns the task).
#[derive(Clone, Default)]
pub(crate) struct Acker {
    tx: Arc<OnceLock<mpsc::UnboundedSender<Ack>>>,
}

impl Acker {
    /// Acknowledges and deletes `id` of `stream`, in the next batch.
    pub(crate) async fn ack(
        &self,
        conn: &Conn,
        xackdel: &Arc<AtomicBool>,
        stream: &str,
        id: &str,
    ) -> Result<(), BusError> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(conn.clone(), Arc::clone(xackdel), rx));
            tx
        });
        let (done, result) = oneshot::channel();
        let ack = Ack {
            stream: stream.to_owned(),
            id: id.to_owned(),
            done,
        };
        tx.send(ack)
            .map_err(|_| failed("the ack task has stopped"))?;
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(failed(message)),
            Err(_) => Err(failed("the ack task has stopped")),
        }
    }
}

fn failed(message: impl Into<String>) -> BusError {
    BusError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "acknowledging entries",
        message.into(),
    )))
}

/// Sends every ack queued at the time as one pipeline, until the channel closes.
async fn run(mut conn: Conn, xackdel: Arc<AtomicBool>, mut rx: mpsc::UnboundedReceiver<Ack>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(ack) => batch.push(ack),
                Err(_) => break,
            }
        }
        let mut by_stream: HashMap<&str, Vec<&str>> = HashMap::new();
        for ack in &batch {
            by_stream.entry(&ack.stream).or_default().push(&ack.id);
        }
        let mut pipe = redis::pipe();
        for (stream, ids) in &by_stream {
            add_ack_and_delete(&mut pipe, stream, ids, xackdel.load(Ordering::Relaxed));
        }
        let result = pipe.exec_async(&mut conn).await.map_err(|e| e.to_string());
        for ack in batch {
            let _ = ack.done.send(result.clone());
        }
    }
}

//! Coalesced acknowledgements: the acks of commands that finish together reach Redis together.
//!
//! Every finished command acknowledges and deletes its stream entry. Sent one by one, that is
//! an `XACK` and an `XDEL` (or one `XACKDEL` on Redis 8.2+) and a round trip per command.
//! Batched by [`crate::coalesce`], acks that arrive while a batch is on the wire go out as the
//! next batch, with one `XACK` and one `XDEL` per stream for all their ids. "Acked" keeps
//! meaning acked: each caller awaits its own batch, and a failed batch leaves all its entries
//! pending, as a failed single ack would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::coalesce::Batch;
use crate::connect::Conn;
use crate::streams::add_ack_and_delete;

/// Acks sent as one pipeline on `conn`; the item is (stream, entry id).
pub(crate) struct Acks {
    pub(crate) conn: Conn,
    /// XACKDEL is available (Redis 8.2+).
    pub(crate) xackdel: Arc<AtomicBool>,
}

impl Batch for Acks {
    type Item = (String, String);
    type Output = ();
    const WHAT: &'static str = "acknowledging entries";
    const MAX: usize = 512;

    async fn send(&self, items: &[(String, String)]) -> Result<Vec<Result<(), String>>, String> {
        let mut by_stream: HashMap<&str, Vec<&str>> = HashMap::new();
        for (stream, id) in items {
            by_stream.entry(stream).or_default().push(id);
        }
        let mut pipe = redis::pipe();
        for (stream, ids) in &by_stream {
            add_ack_and_delete(&mut pipe, stream, ids, self.xackdel.load(Ordering::Relaxed));
        }
        let mut conn = self.conn.clone();
        pipe.exec_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(vec![Ok(()); items.len()])
    }
}

//! Command and reply streams: consumer groups, appends, decoding and acknowledgement.
//!
//! Commands go to the platform stream, or to a node's own stream once an instance is placed on
//! a node (a process instance can only be stopped by the node that runs it). Both streams of a
//! platform share its hash tag, so one XREADGROUP reads them together even on a Cluster.

use draas_protocol::codec::{self, PAYLOAD_FIELD};
use draas_protocol::keys::WORKER_GROUP;
use draas_protocol::{
    CommandEnvelope, ErrorInfo, Instance, Keyspace, Operation, Outcome, Platform, Reply,
};
use redis::Value;
use redis::streams::StreamId;

use crate::BusError;
use crate::scripts;
use crate::store::Store;

/// Approximate cap on a dead-letter stream (`MAXLEN ~`); it has no consumer group, so trimming
/// it can never drop a pending entry.
pub const DLQ_MAXLEN: usize = 100_000;

/// Approximate cap on an API node's reply stream.
pub const REPLIES_MAXLEN: usize = 10_000;

/// A reply stream with no reader for this long disappears (its API node is gone).
pub const REPLIES_TTL_SECS: u64 = 24 * 3600;

/// How often an API node refreshes its reply stream's TTL ([`keep_replies_alive`]).
pub const REPLIES_REFRESH_SECS: u64 = 3600;

/// Refreshes the TTL of an API node's reply stream; the node calls it at start and every
/// [`REPLIES_REFRESH_SECS`] while it reads. A missing stream stays missing (the next reply
/// creates it), so this never brings back the stream of a node that is gone.
pub async fn keep_replies_alive(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<(), BusError> {
    let _: i64 = redis::cmd("EXPIRE")
        .arg(stream)
        .arg(REPLIES_TTL_SECS)
        .query_async(conn)
        .await?;
    Ok(())
}

/// The stream a command for `instance` goes to.
pub fn command_stream(keys: &Keyspace, platform: Platform, instance: Option<&Instance>) -> String {
    let node = instance.and_then(|i| i.runtime.node.as_deref());
    match (platform, node) {
        (Platform::Process, Some(node)) => keys.node_commands(platform, node),
        _ => keys.commands(platform),
    }
}

/// Creates the worker group on `stream` from id 0 (never `$`: entries added before the group
/// existed must still be delivered). An existing group is left alone.
pub async fn ensure_group(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<(), BusError> {
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(WORKER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => Ok(other?),
    }
}

/// The error code of an operation whose command was dead-lettered before it finished.
pub const DEAD_LETTERED: &str = "dead_lettered";

/// The id of the newest entry of `stream` ("0-0" when it is empty or missing). A reader that
/// starts after it sees every later entry, whatever the clocks say (a time-based id can skip
/// an entry written in the same millisecond, and "$" skips what arrives between two reads).
pub async fn last_id(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<String, BusError> {
    let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
}

/// `XADD` of a command. No MAXLEN on command streams: trimming would drop pending entries.
/// Acked entries are deleted at once, so a command stream only ever holds work not yet done.
fn append_command(stream: &str, envelope: &CommandEnvelope) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream)
        .arg("*")
        .arg(PAYLOAD_FIELD)
        .arg(codec::encode(envelope));
    cmd
}

/// The encoded message of a stream entry.
pub fn payload(entry: &StreamId) -> Result<Vec<u8>, BusError> {
    match entry.map.get(PAYLOAD_FIELD) {
        Some(Value::BulkString(bytes)) => Ok(bytes.clone()),
        _ => Err(codec::DecodeError::MissingPayload.into()),
    }
}

impl Store {
    /// Writes the pending operation and appends the command, in one round trip.
    pub async fn submit(
        &self,
        stream: &str,
        envelope: &CommandEnvelope,
        op: &Operation,
    ) -> Result<String, BusError> {
        let mut pipe = redis::pipe();
        self.put_operation_in(&mut pipe, op);
        pipe.add_command(append_command(stream, envelope));
        let (id,): (String,) = pipe.query_async(&mut self.conn()).await?;
        Ok(id)
    }

    /// Appends the command and writes no operation record: for a command whose id nobody but
    /// its issuer knows yet, the worker's claim writes the record
    /// ([`Store::claim_operation`]), and the issuer writes it if it hands the id out before a
    /// reply came ([`Store::record_operation`]).
    pub async fn append(
        &self,
        stream: &str,
        envelope: &CommandEnvelope,
    ) -> Result<String, BusError> {
        Ok(append_command(stream, envelope)
            .query_async(&mut self.conn())
            .await?)
    }

    /// Sends a reply to the stream the command named: one `XADD NOMKSTREAM`. The API node that
    /// reads the stream keeps its TTL fresh ([`keep_replies_alive`]), so a reply does not also
    /// pay an `EXPIRE`. Only when the stream is missing (no reply yet since it expired, or
    /// Redis lost it) is it created, with its TTL, in a second round trip.
    pub async fn send_reply(&self, reply_to: &str, reply: &Reply) -> Result<(), BusError> {
        let payload = codec::encode(reply);
        let xadd = |nomkstream: bool| {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(reply_to);
            if nomkstream {
                cmd.arg("NOMKSTREAM");
            }
            cmd.arg("MAXLEN")
                .arg("~")
                .arg(REPLIES_MAXLEN)
                .arg("*")
                .arg(PAYLOAD_FIELD)
                .arg(payload.as_slice());
            cmd
        };
        let added: Option<String> = xadd(true).query_async(&mut self.conn()).await?;
        if added.is_none() {
            redis::pipe()
                .add_command(xadd(false))
                .ignore()
                .expire(reply_to, REPLIES_TTL_SECS as i64)
                .ignore()
                .exec_async(&mut self.conn())
                .await?;
        }
        Ok(())
    }

    /// Moves an entry to the platform's dead-letter stream with the reason and its original
    /// fields, acknowledging and deleting it in the same MULTI, then ends its operation.
    ///
    /// Step one is atomic: the letter is appended and the entry acked and deleted in one
    /// MULTI/EXEC (the DLQ and every command stream of a platform share its hash tag, so this
    /// holds on a cluster too). Nobody ever sees the letter without the ack or the ack without
    /// the letter. Step two ends the operation record (`draas:op:<id>`, a key outside the tag,
    /// so it cannot join the MULTI) and replies. The order is what makes a crash between the
    /// two safe: the letter exists and the operation is merely unfinished, so a replay claims
    /// it (its lease runs out) and runs it once. The other order could end the operation as
    /// dead-lettered while the entry stays pending with no letter; a redelivery would then
    /// answer from that record and ack, and the command would be lost without a trace.
    /// An operation with no record yet (nobody claimed it, and its issuer wrote none) gets
    /// one, ended, so whoever polls it learns why.
    pub async fn dead_letter(
        &self,
        platform: Platform,
        stream: &str,
        entry: &StreamId,
        reason: &str,
        deliveries: u64,
    ) -> Result<(), BusError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let letter = pipe
            .cmd("XADD")
            .arg(self.keys().dead_letters(platform))
            .arg("MAXLEN")
            .arg("~")
            .arg(DLQ_MAXLEN)
            .arg("*");
        letter
            .arg("reason")
            .arg(reason)
            .arg("stream")
            .arg(stream)
            .arg("entry")
            .arg(&entry.id);
        letter
            .arg("deliveries")
            .arg(deliveries)
            .arg("at")
            .arg(crate::clock::now().millis());
        for (field, value) in &entry.map {
            if let Value::BulkString(bytes) = value {
                letter.arg(format!("orig.{field}")).arg(bytes.as_slice());
            }
        }
        letter.ignore();
        pipe.xack(stream, WORKER_GROUP, &[&entry.id])
            .ignore()
            .xdel(stream, &[&entry.id])
            .ignore();
        pipe.exec_async(&mut self.conn()).await?;
        // The command will not run: end its operation and tell whoever waits. A replay
        // reopens it (see `reopen_dead_lettered`).
        if let Ok(env) = payload(entry).and_then(|b| Ok(codec::decode::<CommandEnvelope>(&b)?)) {
            let error = ErrorInfo::new(DEAD_LETTERED, format!("dead-lettered: {reason}"));
            let ended: i64 = scripts::DEAD_LETTER_OPERATION
                .key(self.keys().operation(env.command_id))
                .arg(serde_json::to_string(&error).unwrap_or_default())
                .arg(crate::clock::now().millis())
                .arg(self.operation_retention())
                .arg(Operation::of(&env).to_record(&[]))
                .invoke_async(&mut self.conn())
                .await?;
            if let (1, Some(reply_to)) = (ended, &env.reply_to) {
                let reply = Reply {
                    v: draas_protocol::SCHEMA_VERSION,
                    command_id: env.command_id,
                    correlation_id: env.correlation_id,
                    instance_id: env.instance_id,
                    platform: env.platform,
                    worker: "dead-letter".to_owned(),
                    completed_at: crate::clock::now(),
                    outcome: Outcome::Failed { error },
                    attempts: 0,
                };
                self.send_reply(reply_to, &reply).await?;
            }
        }
        Ok(())
    }

    /// Makes a dead-lettered operation pending again so a replay runs it once; false when the
    /// operation is in any other state (a finished one is answered from its record).
    pub async fn reopen_dead_lettered(&self, operation: uuid::Uuid) -> Result<bool, BusError> {
        let reopened: i64 = scripts::REOPEN_OPERATION
            .key(self.keys().operation(operation))
            .arg(format!("\"code\":\"{DEAD_LETTERED}\""))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(reopened == 1)
    }

    /// Moves an entry to another stream of the same platform (same hash tag), atomically:
    /// the copy is appended and the original acked and deleted in one MULTI.
    pub async fn forward(&self, from: &str, entry: &StreamId, to: &str) -> Result<(), BusError> {
        let payload = payload(entry)?;
        redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(to)
            .arg("*")
            .arg(PAYLOAD_FIELD)
            .arg(payload)
            .ignore()
            .xack(from, WORKER_GROUP, &[&entry.id])
            .ignore()
            .xdel(from, &[&entry.id])
            .ignore()
            .exec_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Resets a pending entry's idle time while keeping it ours: `XCLAIM … 0 id JUSTID`
    /// neither moves it nor counts a delivery.
    pub async fn touch_pending(
        &self,
        stream: &str,
        consumer: &str,
        id: &str,
    ) -> Result<(), BusError> {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(id)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Deletes `consumer` from the group on `stream`, but only while it has nothing pending.
    pub async fn leave_group_if_idle(
        &self,
        stream: &str,
        consumer: &str,
    ) -> Result<bool, BusError> {
        let mut conn = self.conn();
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(stream)
            .arg(WORKER_GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(consumer)
            .query_async(&mut conn)
            .await?;
        if !pending.ids.is_empty() {
            return Ok(false);
        }
        let _: i64 = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(stream)
            .arg(WORKER_GROUP)
            .arg(consumer)
            .query_async(&mut conn)
            .await?;
        Ok(true)
    }

    /// Acknowledges one entry and deletes it, batched with the acks of other commands that
    /// finish at the same time ([`crate::acks`]); returns once it is done.
    pub async fn ack(&self, stream: &str, id: &str) -> Result<(), BusError> {
        let acks = || crate::acks::Acks {
            conn: self.conn.clone(),
            xackdel: std::sync::Arc::clone(&self.xackdel),
        };
        let ack = (stream.to_owned(), id.to_owned());
        self.acker.call(acks, ack).await
    }

    /// Acknowledges entries and deletes them, so acked work does not pile up in the stream.
    pub async fn ack_and_delete(&self, stream: &str, ids: &[String]) -> Result<(), BusError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        add_ack_and_delete(&mut pipe, stream, ids, self.has_xackdel());
        pipe.exec_async(&mut self.conn()).await?;
        Ok(())
    }
}

/// Adds "acknowledge `ids` of `stream` and delete them" to `pipe`: one `XACKDEL` where the
/// server has it (`xackdel`, Redis 8.2+; `DELREF` also drops them from other groups), else an
/// `XACK` and an `XDEL`.
pub(crate) fn add_ack_and_delete<I: redis::ToRedisArgs>(
    pipe: &mut redis::Pipeline,
    stream: &str,
    ids: &[I],
    xackdel: bool,
) {
    if xackdel {
        pipe.cmd("XACKDEL")
            .arg(stream)
            .arg(WORKER_GROUP)
            .arg("DELREF")
            .arg("IDS")
            .arg(ids.len())
            .arg(ids)
            .ignore();
    } else {
        pipe.xack(stream, WORKER_GROUP, ids)
            .ignore()
            .xdel(stream, ids)
            .ignore();
    }
}

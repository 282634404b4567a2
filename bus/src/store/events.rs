//! The events stream: one entry per state change or note, MessagePack-encoded.

use draas_protocol::Event;
use draas_protocol::auth::DEFAULT_TENANT;
use draas_protocol::codec::{self, PAYLOAD_FIELD};
use redis::streams::StreamRangeReply;

use super::{EVENTS_MAXLEN, Store};
use crate::BusError;
use crate::streams::payload;

/// An event with its stream id (the SSE event id).
#[derive(Debug, Clone, PartialEq)]
pub struct EventEntry {
    pub id: String,
    pub event: Event,
}

impl Store {
    /// Appends an event (bounded with `MAXLEN ~`). An event without a tenant gets its
    /// instance's (read from the record; a record older than tenants is the default
    /// tenant's), so the event feeds can be filtered per tenant.
    pub async fn append_event(&self, event: &Event) -> Result<(), BusError> {
        let mut filled;
        let mut event = event;
        if event.tenant.is_none() {
            let (tenant, state): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(self.keys.instance(event.instance_id))
                .arg("tenant")
                .arg("state")
                .query_async(&mut self.conn())
                .await?;
            filled = event.clone();
            filled.tenant = tenant.or(state.map(|_| DEFAULT_TENANT.to_owned()));
            event = &filled;
        }
        let _: String = redis::cmd("XADD")
            .arg(self.keys.events())
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_MAXLEN)
            .arg("*")
            .arg(PAYLOAD_FIELD)
            .arg(codec::encode(event))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The newest `count` events, oldest first. Undecodable entries are skipped with a warning.
    pub async fn recent_events(&self, count: usize) -> Result<Vec<EventEntry>, BusError> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn())
            .await?;
        let mut out: Vec<EventEntry> = reply
            .ids
            .iter()
            .filter_map(|entry| match payload(entry).and_then(|b| Ok(codec::decode(&b)?)) {
                Ok(event) => Some(EventEntry { id: entry.id.clone(), event }),
                Err(error) => {
                    tracing::warn!(message = "skipping undecodable event", id = %entry.id, %error);
                    None
                }
            })
            .collect();
        out.reverse();
        Ok(out)
    }
}

//! Recovery, run by every worker on a timer:
//!
//! - **Reclaim.** XAUTOCLAIM (paged with its cursor, the sweep carries on where it stopped)
//!   takes entries idle beyond `claim_idle`. Live workers keep the entries they execute fresh,
//!   so only a dead consumer's entries idle that long. The delivery count decides: below
//!   `max_deliveries` the command runs again after a backoff (backon); at the limit it goes to
//!   the dead-letter stream with the reason and its original fields, and is then acked.
//! - **Prune.** A consumer is removed from the group only when it is dead (no heartbeat), has
//!   been idle for `prune_after`, and has no pending entries: deleting a consumer drops its
//!   pending entries, so one that still has some is never deleted.
//! - **Reap nodes.** Instances on a node whose heartbeat expired become `lost`; those whose
//!   restart policy allows it are rescheduled on a live node.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use draas_bus::store::Transition;
use draas_protocol::keys::WORKER_GROUP;
use draas_protocol::{Command, EventKind, InstanceState, Origin, RuntimeInfo};
use redis::streams::{StreamAutoClaimReply, StreamInfoConsumersReply, StreamPendingCountReply};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::driver::Driver;
use crate::execute;
use crate::inflight::InFlight;
use crate::lifecycle::Ctx;
use draas_telemetry::names;

/// What the sweeper needs besides the shared context.
pub(crate) struct Sweeper<D> {
    pub ctx: Arc<Ctx<D>>,
    pub config: WorkerConfig,
    pub streams: [String; 2],
    pub tracker: InFlight,
    pub slots: Arc<Semaphore>,
}

impl<D: Driver> Sweeper<D> {
    /// Sweeps every `sweep_interval` until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.sweep_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            for stream in &self.streams {
                if let Err(error) = self.reclaim(stream, &stop).await {
                    tracing::warn!(message = "reclaim sweep failed", %stream, %error);
                }
                if let Err(error) = self.prune(stream).await {
                    tracing::warn!(message = "consumer prune failed", %stream, %error);
                }
            }
            if let Err(error) = self.reap_nodes().await {
                tracing::warn!(message = "node reaping failed", %error);
            }
        }
    }

    async fn reclaim(
        &self,
        stream: &str,
        stop: &CancellationToken,
    ) -> Result<(), draas_bus::BusError> {
        let mut conn = self.ctx.store.conn();
        let mut cursor = "0-0".to_owned();
        loop {
            // Claim only as many entries as there are free slots to run them: a claimed entry
            // that waited for a slot would idle past claim_idle and be claimed again.
            let Some(mut permits) = self.free_slots(stop).await else {
                return Ok(());
            };
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(stream)
                .arg(WORKER_GROUP)
                .arg(&self.ctx.consumer)
                .arg(self.config.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(permits.len())
                .query_async(&mut conn)
                .await?;
            if !reply.deleted_ids.is_empty() {
                tracing::warn!(message = "pending entries whose bodies were deleted were dropped", %stream, ids = ?reply.deleted_ids);
            }
            if !reply.claimed.is_empty() {
                let mut pipe = redis::pipe();
                for entry in &reply.claimed {
                    pipe.cmd("XPENDING")
                        .arg(stream)
                        .arg(WORKER_GROUP)
                        .arg(&entry.id)
                        .arg(&entry.id)
                        .arg(1);
                }
                let counts: Vec<StreamPendingCountReply> = pipe.query_async(&mut conn).await?;
                for (entry, pending) in reply.claimed.into_iter().zip(counts) {
                    metrics::counter!(names::RECLAIMS, "platform" => self.ctx.platform.as_str())
                        .increment(1);
                    let deliveries = pending.ids.first().map_or(1, |p| p.times_delivered as u64);
                    let permit = permits.pop().expect("one permit per claimed entry");
                    self.retry_or_dead_letter(stream, entry, deliveries, permit)
                        .await;
                }
            }
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            cursor = reply.next_stream_id;
        }
    }

    async fn retry_or_dead_letter(
        &self,
        stream: &str,
        entry: redis::streams::StreamId,
        deliveries: u64,
        permit: OwnedSemaphorePermit,
    ) {
        if deliveries > self.config.max_deliveries {
            let reason = format!(
                "delivered {deliveries} times without completing (limit {})",
                self.config.max_deliveries
            );
            tracing::error!(message = "dead-lettering a command", %stream, id = %entry.id, %reason);
            match self
                .ctx
                .store
                .dead_letter(self.ctx.platform, stream, &entry, &reason, deliveries)
                .await
            {
                Ok(()) => {
                    metrics::counter!(names::DEAD_LETTERS, "platform" => self.ctx.platform.as_str())
                        .increment(1)
                }
                Err(error) => {
                    tracing::error!(message = "dead-lettering failed", id = %entry.id, %error)
                }
            }
            return;
        }
        // Exponential backoff by delivery count, kept below claim_idle so the entry is still
        // ours when it runs.
        let delay = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(self.config.claim_idle / 2)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(deliveries.saturating_sub(2) as usize)
            .unwrap_or_default();
        tracing::info!(message = "retrying a reclaimed command", %stream, id = %entry.id, deliveries, ?delay);
        let (ctx, stream, lease) = (Arc::clone(&self.ctx), stream.to_owned(), self.config.lease);
        self.tracker.spawn(async move {
            tokio::time::sleep(delay).await;
            execute::entry(&ctx, &stream, &entry, lease, execute::Delivery::Again).await;
            drop(permit);
        });
    }

    /// Waits for at least one free slot, then takes up to 100; `None` once stopping.
    async fn free_slots(&self, stop: &CancellationToken) -> Option<Vec<OwnedSemaphorePermit>> {
        let first = tokio::select! {
            permit = Arc::clone(&self.slots).acquire_owned() => permit.ok()?,
            () = stop.cancelled() => return None,
        };
        let mut permits = vec![first];
        while permits.len() < 100 {
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        Some(permits)
    }

    async fn prune(&self, stream: &str) -> Result<(), draas_bus::BusError> {
        let mut conn = self.ctx.store.conn();
        let info: StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(WORKER_GROUP)
            .query_async(&mut conn)
            .await?;
        let ttl = self.config.heartbeat_ttl.as_millis() as u64;
        let live = self.ctx.store.live_workers(self.ctx.platform, ttl).await?;
        for consumer in info.consumers {
            let dead = !live.iter().any(|w| w.consumer == consumer.name)
                && consumer.name != self.ctx.consumer;
            let idle_enough = consumer.idle as u128 >= self.config.prune_after.as_millis();
            if dead && idle_enough && consumer.pending == 0 {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(stream)
                    .arg(WORKER_GROUP)
                    .arg(&consumer.name)
                    .query_async(&mut conn)
                    .await?;
                tracing::info!(message = "pruned a dead consumer with no pending entries", %stream, consumer = %consumer.name);
            }
        }
        Ok(())
    }

    async fn reap_nodes(&self) -> Result<(), draas_bus::BusError> {
        let ttl = self.config.heartbeat_ttl.as_millis() as u64;
        for node in self.ctx.store.dead_nodes(self.ctx.platform, ttl).await? {
            if node == self.ctx.node {
                continue;
            }
            for id in self.ctx.store.placed(self.ctx.platform, &node).await? {
                self.mark_lost(&node, id).await?;
                self.ctx.store.unplace(self.ctx.platform, &node, id).await?;
            }
            self.rehome_commands(&node).await?;
            self.ctx
                .store
                .forget_node_if_empty(self.ctx.platform, &node)
                .await?;
        }
        Ok(())
    }

    /// Moves whatever waits in a dead node's stream (read or not) to the platform stream, so
    /// live workers answer it: a stop for a lost instance, say.
    async fn rehome_commands(&self, node: &str) -> Result<(), draas_bus::BusError> {
        let from = self.ctx.store.keys().node_commands(self.ctx.platform, node);
        let to = self.ctx.store.keys().commands(self.ctx.platform);
        loop {
            let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&from)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(100)
                .query_async(&mut self.ctx.store.conn())
                .await?;
            if page.ids.is_empty() {
                return Ok(());
            }
            for entry in &page.ids {
                tracing::warn!(message = "moving a dead node's command to the platform stream", %node, id = %entry.id);
                self.ctx.store.forward(&from, entry, &to).await?;
            }
        }
    }

    async fn mark_lost(&self, node: &str, id: uuid::Uuid) -> Result<(), draas_bus::BusError> {
        let Some(stored) = self.ctx.store.instance(id).await? else {
            return Ok(());
        };
        let inst = stored.instance;
        let placed_here = inst.runtime.node.as_deref() == Some(node);
        if !placed_here || !matches!(inst.state, InstanceState::Running | InstanceState::Starting) {
            return Ok(());
        }
        let runtime = RuntimeInfo {
            message: Some(format!(
                "node `{node}` stopped heartbeating; its worker is gone"
            )),
            restarts: inst.runtime.restarts,
            ..RuntimeInfo::default()
        };
        let moved = self
            .ctx
            .store
            .transition(id, inst.state, InstanceState::Lost, 0, Some(&runtime))
            .await?;
        if !matches!(moved, Transition::Done(_)) {
            return Ok(());
        }
        tracing::warn!(message = "instance lost with its node", instance = %id, %node);
        self.ctx
            .emit(
                id,
                None,
                EventKind::StateChanged {
                    from: inst.state,
                    to: InstanceState::Lost,
                    reason: format!("node {node} is dead"),
                },
            )
            .await;
        let policy = &inst.spec.restart_policy;
        if policy.restart_delay(None, inst.runtime.restarts).is_some() {
            self.ctx
                .enqueue(id, Command::Start, Origin::Reschedule)
                .await?;
        }
        Ok(())
    }
}

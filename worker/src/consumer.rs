//! The worker's entry point: join the consumer group, read with XREADGROUP BLOCK, execute with
//! bounded concurrency, beat, and shut down in two stages.
//!
//! Shutdown: when `shutdown` resolves the worker stops reading, lets in-flight commands finish
//! (and ack) until `drain_deadline`, then deregisters. If `force` resolves first, or the
//! deadline passes, it returns at once; unacked entries stay pending for another worker.
//! A read is never abandoned half-way: the loop checks for shutdown between reads, and a read
//! blocks at most `block`.

use std::future::Future;
use std::sync::Arc;

use draas_bus::connect::Conn;
use draas_bus::store::{Advertised, Store};
use draas_bus::streams::ensure_group;
use draas_bus::{clock, connect};
use draas_protocol::Platform;
use draas_protocol::capabilities::WorkloadKinds;
use draas_protocol::keys::WORKER_GROUP;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::capabilities::Workload;
use crate::config::WorkerConfig;
use crate::driver::Driver;
use crate::driver::docker::DockerDriver;
use crate::driver::kubernetes::KubernetesDriver;
use crate::driver::process::ProcessDriver;
use crate::inflight::InFlight;
use crate::lifecycle::Ctx;
use crate::sweeper::Sweeper;
use crate::{WorkerError, capabilities, dataplane, execute, monitor, node, reconcile};

/// Runs a worker until shutdown. See the module docs for the two shutdown stages.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    let mut config = config;
    // A live execution refreshes its entry every lease/3; reclaiming sooner than a lease would
    // take work from the living.
    config.claim_idle = config.claim_idle.max(config.lease);
    // A capabilities file that cannot be used stops the worker before anything else.
    let declared = capabilities::declared(config.capabilities_file.as_deref())?;
    let node = node::identity(&config.data_dir).map_err(WorkerError::Node)?;
    let consumer = node::consumer_name(&node);
    let store = Store::new(
        connect::shared(&config.redis_url).await?,
        config.keys.clone(),
    )
    .with_operation_retention(config.operation_retention.as_secs());
    let version = store.detect_features().await?;
    // A user without the least-privilege rule is refused here, in one line.
    draas_bus::acl::check(&config.redis_url, &config.keys, false).await?;
    store.preload_scripts().await?;
    tracing::info!(message = "redis server", version = ?version);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let who = Who {
        store,
        platform: config.platform,
        node,
        consumer,
        ttl: config.heartbeat_ttl,
    };
    match config.platform {
        Platform::Process => {
            let driver = ProcessDriver::new(config.process.clone(), &config.data_dir, events_tx);
            let workload = Workload::Process(&config.process.executable);
            let kinds = capabilities::advertised(declared, workload).await;
            serve(config, who.ctx(driver), events_rx, kinds, shutdown, force).await
        }
        Platform::Docker => {
            let driver = DockerDriver::connect(
                config.keys.prefix(),
                config.docker.clone(),
                config.process.clone(),
                &config.data_dir,
                events_tx,
            )
            .await
            .map_err(WorkerError::Driver)?;
            let kinds = capabilities::advertised(declared, Workload::Docker(&driver)).await;
            serve(config, who.ctx(driver), events_rx, kinds, shutdown, force).await
        }
        Platform::Kubernetes => {
            let driver = KubernetesDriver::connect(
                config.keys.prefix(),
                config.kubernetes.clone(),
                config.process.clone(),
                events_tx,
            )
            .await
            .map_err(WorkerError::Driver)?;
            let kinds = capabilities::advertised(declared, Workload::Kubernetes).await;
            serve(config, who.ctx(driver), events_rx, kinds, shutdown, force).await
        }
    }
}

/// Who this worker is, before it has a driver.
struct Who {
    store: Store,
    platform: Platform,
    node: String,
    consumer: String,
    ttl: std::time::Duration,
}

impl Who {
    fn ctx<D: Driver>(self, driver: D) -> Arc<Ctx<D>> {
        Arc::new(Ctx::new(
            self.store,
            driver,
            self.platform,
            self.node,
            self.consumer,
            self.ttl,
        ))
    }
}

async fn serve<D: Driver>(
    config: WorkerConfig,
    ctx: Arc<Ctx<D>>,
    exits: mpsc::UnboundedReceiver<crate::driver::DriverEvent>,
    kinds: Option<WorkloadKinds>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    let streams = [
        config.keys.commands(config.platform),
        config.keys.node_commands(config.platform, &ctx.node),
    ];
    let mut reader = connect::blocking(&config.redis_url).await?;
    for stream in &streams {
        ensure_group(&mut reader, stream).await?;
    }
    let stop_reading = CancellationToken::new();
    tokio::spawn({
        let stop_reading = stop_reading.clone();
        async move {
            shutdown.await;
            stop_reading.cancel();
        }
    });
    // The data plane listens before the first beat advertises it, and dies with this future.
    let (data_url, _data_plane) = match &config.data_plane {
        Some(plane) => {
            let (listener, url) = dataplane::bind(plane)
                .await
                .map_err(WorkerError::DataPlane)?;
            let serving = dataplane::serve(
                listener,
                Arc::clone(&ctx),
                plane.secret.clone(),
                std::future::pending(),
            );
            tracing::info!(message = "data plane listening", url = %url);
            (
                Some(url),
                Some(AbortOnDropHandle::new(tokio::spawn(serving))),
            )
        }
        None => (None, None),
    };
    let advertised = Advertised {
        data: data_url,
        kinds,
    };
    // Beat first, so the reconciliation below never sees this node as dead.
    beat(&ctx, &config, clock::now(), &advertised).await;
    reconcile::run(&ctx).await?;
    // Background tasks die with this future, as they would with the process.
    let beats = AbortOnDropHandle::new(tokio::spawn(heartbeat(
        Arc::clone(&ctx),
        config.clone(),
        advertised,
    )));
    let monitor = AbortOnDropHandle::new(tokio::spawn(monitor::run(Arc::clone(&ctx), exits)));
    tracing::info!(message = "worker ready", platform = %config.platform, node = %ctx.node, consumer = %ctx.consumer);

    // In-flight commands are tracked for the drain, and abandoned if this future is dropped
    // (as they would be if the process died), never left running on their own.
    let abandon = CancellationToken::new();
    let _abandon_on_drop = abandon.clone().drop_guard();
    let tracker = InFlight::new(abandon);
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let sweeper = Sweeper {
        ctx: Arc::clone(&ctx),
        config: config.clone(),
        streams: streams.clone(),
        tracker: tracker.clone(),
        slots: Arc::clone(&slots),
    };
    let sweeping = AbortOnDropHandle::new(tokio::spawn(sweeper.run(stop_reading.clone())));
    let _converging = AbortOnDropHandle::new(tokio::spawn(crate::converge::run(
        Arc::clone(&ctx),
        config.converge_interval,
        stop_reading.clone(),
    )));
    while !stop_reading.is_cancelled() {
        // Read only as many entries as there are free slots, so nothing waits unclaimed in memory.
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore never closes"),
            () = stop_reading.cancelled() => break,
        };
        let free = slots.available_permits() + 1;
        let entries = match read(&mut reader, &streams, &ctx.consumer, free, &config).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(message = "read failed; recovering", %error);
                reader = recover(&config, &streams).await?;
                continue;
            }
        };
        let mut first = Some(first);
        for (stream, entry) in entries {
            let permit = match first.take() {
                Some(p) => p,
                None => Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .expect("semaphore never closes"),
            };
            let ctx = Arc::clone(&ctx);
            let lease = config.lease;
            tracker.spawn(async move {
                execute::entry(&ctx, &stream, &entry, lease, execute::Delivery::First).await;
                drop(permit);
            });
        }
    }

    tracing::info!(message = "draining", in_flight = tracker.len());
    // The sweeper may still hand retries to the tracker until it has stopped.
    let _ = sweeping.await;
    tracker.close();
    tokio::select! {
        () = tracker.wait() => tracing::info!(message = "drained"),
        () = tokio::time::sleep(config.drain_deadline) => tracing::warn!(message = "drain deadline passed; unacked work stays pending", left = tracker.len()),
        () = force => tracing::warn!(message = "forced exit; unacked work stays pending", left = tracker.len()),
    }
    beats.abort();
    if config.stop_instances_on_exit {
        ctx.driver.stop_all().await;
    }
    monitor.abort();
    if let Err(error) = ctx.store.deregister(config.platform, &ctx.consumer).await {
        tracing::warn!(message = "deregistration failed", %error);
    }
    // Leave the group only with nothing pending: deleting a consumer drops its pending entries.
    for stream in &streams {
        if let Err(error) = ctx.store.leave_group_if_idle(stream, &ctx.consumer).await {
            tracing::warn!(message = "could not leave the consumer group", %stream, %error);
        }
    }
    Ok(())
}

async fn read(
    reader: &mut Conn,
    streams: &[String; 2],
    consumer: &str,
    count: usize,
    config: &WorkerConfig,
) -> Result<Vec<(String, redis::streams::StreamId)>, redis::RedisError> {
    let options = StreamReadOptions::default()
        .group(WORKER_GROUP, consumer)
        .count(count)
        .block(config.block.as_millis() as usize);
    let reply: Option<StreamReadReply> =
        redis::AsyncCommands::xread_options(reader, streams, &[">", ">"], &options).await?;
    Ok(reply
        .map(|r| {
            r.keys
                .into_iter()
                .flat_map(|k| k.ids.into_iter().map(move |id| (k.key.clone(), id)))
                .collect()
        })
        .unwrap_or_default())
}

/// After a failed read: reconnect (with backoff) and recreate the group if Redis lost it.
async fn recover(config: &WorkerConfig, streams: &[String; 2]) -> Result<Conn, WorkerError> {
    let mut reader = connect::blocking(&config.redis_url).await?;
    for stream in streams {
        ensure_group(&mut reader, stream).await?;
    }
    Ok(reader)
}

async fn heartbeat<D: Driver>(ctx: Arc<Ctx<D>>, config: WorkerConfig, advertised: Advertised) {
    let started = clock::now();
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    loop {
        tick.tick().await;
        beat(&ctx, &config, started, &advertised).await;
    }
}

async fn beat<D: Driver>(
    ctx: &Ctx<D>,
    config: &WorkerConfig,
    started: draas_protocol::Timestamp,
    advertised: &Advertised,
) {
    let ttl = config.heartbeat_ttl.as_millis() as u64;
    if let Err(error) = ctx
        .store
        .heartbeat(
            config.platform,
            &ctx.consumer,
            &ctx.node,
            started,
            ttl,
            advertised,
        )
        .await
    {
        tracing::warn!(message = "heartbeat failed", %error);
    }
}

//! The DRaaS worker: joins a platform's consumer group and executes lifecycle commands.
//!
//! Layout:
//! - [`capabilities`]: what the workload can run, declared in `--capabilities-file` or asked
//!   of it (process executable, Docker image) at start-up, and advertised.
//! - [`config`]: `WorkerConfig`, every knob with its default.
//! - [`node`]: the node's stable identity, kept in its data directory.
//! - [`consumer`]: the entry point [`run`]: group setup, the XREADGROUP loop with bounded
//!   concurrency, heartbeats and two-stage shutdown.
//! - [`inflight`]: the executions in flight, shared by the read loop and the sweeper.
//! - [`execute`]: one stream entry: claim the operation, run it once, record, reply, ack.
//! - [`lifecycle`]: what each `Command` does to an instance (exhaustive match).
//! - [`monitor`]: turns exits the driver observes into honest instance state, and applies
//!   the restart policy.
//! - [`reconcile`]: at start-up, adopts surviving processes and corrects this node's records.
//! - [`converge`]: the platform's controller (one worker, by lease): moves instances toward
//!   their `desiredState` after crashes and lost nodes, and reports drift.
//! - [`sweeper`]: reclaims dead consumers' entries (retry or dead-letter), prunes dead
//!   consumers with nothing pending, and marks instances of dead nodes lost.
//! - [`dataplane`]: the data-plane listener: API nodes' data requests, forwarded to the
//!   instances this worker owns.
//! - [`driver`]: the `Driver` trait and the platform drivers (`process`).

pub mod capabilities;
pub mod config;
pub mod consumer;
mod converge;
pub mod dataplane;
pub mod driver;
mod execute;
mod inflight;
mod lifecycle;
mod monitor;
pub mod node;
mod reconcile;
mod sweeper;

pub use config::WorkerConfig;
pub use consumer::run;

/// Errors that stop a worker from running at all.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] draas_bus::BusError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("node identity: {0}")]
    Node(#[source] std::io::Error),
    #[error("data-plane listener: {0}")]
    DataPlane(#[source] std::io::Error),
    #[error("driver: {0}")]
    Driver(#[source] driver::DriverError),
    /// `--capabilities-file` cannot be read or is not what a workload prints.
    #[error(transparent)]
    Capabilities(#[from] capabilities::FileError),
}

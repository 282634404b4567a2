//! Redis I/O shared by the API, the workers and the operator tooling.
//!
//! Layout:
//! - [`admin`]: operator tooling (streams overview, pending entries, dead letters, pruning,
//!   trimming), shared by `draas ops` and the API's admin endpoints.
//! - [`acl`]: the Redis commands DRaaS sends: the least-privilege ACL rule and the start-up
//!   check that the user holds it.
//! - [`connect`]: connections: the shared multiplexed one (with reconnect) and dedicated ones
//!   for blocking reads, both established with backoff.
//! - [`store`]: instance records, names, operations, idempotency keys, heartbeats and events.
//! - [`streams`]: command and reply streams: groups, appends, entry decoding, ack + delete.
//! - `coalesce`: calls made while one batch is on the wire go out together as the next
//!   (acks, claims, finishes); `acks`: the acks' batch.
//! - [`scripts`]: the Lua compare-and-set steps (with fencing), one key per step.
//! - [`clock`]: wall-clock time as a protocol `Timestamp`.
//!
//! Nothing here knows about Docker, Kubernetes or processes.

mod acks;
pub mod acl;
pub mod admin;
pub mod clock;
mod coalesce;
pub mod connect;
pub mod error;
mod scripts;
pub mod store;
pub mod streams;

pub use error::BusError;
pub use store::Store;

//! Wire types and key layout shared by every DRaaS component. This crate does no I/O.
//!
//! Layout:
//! - [`instance`]: the instance model (`Instance`, `InstanceSpec`, `Platform`, `RestartPolicy`,
//!   `RuntimeInfo`) and the lifecycle state machine (`InstanceState`, one transition table).
//! - [`command`]: the closed `Command` enum and the command, reply and event envelopes.
//! - [`operation`]: the durable `Operation` record and its Redis hash field mapping.
//! - [`codec`]: versioned MessagePack encoding with typed decode errors.
//! - [`keys`]: every Redis key name, built in one place, hash-tagged per platform.
//! - [`drasi`]: the drasi-server configuration model, validation and YAML rendering.
//! - [`auth`]: tenants and scopes.
//! - [`capabilities`]: the kinds a workload can run, as workers advertise them.
//! - [`dataplane`]: the data plane's paths and secret between API nodes and workers.
//! - [`env`]: an instance's explicit environment (plain and secret variables, redaction).
//! - [`egress`]: the operator's egress policy for instances.
//! - [`image`]: the operator's allow list of the images tenants may name.
//! - [`time`]: the millisecond `Timestamp` used on the wire and in JSON.
//! - [`schema`]: the OpenAPI schemas of types whose JSON form their Rust type does not say.

pub mod auth;
pub mod capabilities;
pub mod codec;
pub mod command;
pub mod dataplane;
pub mod drasi;
pub mod egress;
pub mod env;
pub mod image;
pub mod instance;
pub mod keys;
pub mod operation;
pub mod schema;
pub mod time;

pub use codec::{DecodeError, SCHEMA_VERSION};
pub use command::{
    Command, CommandEnvelope, CommandKind, ErrorInfo, Event, EventKind, Origin, Outcome, Reply,
};
pub use egress::EgressPolicy;
pub use env::{EnvValue, InstanceEnv};
pub use instance::{
    DesiredState, IllegalTransition, Instance, InstanceSpec, InstanceState, Observed,
    ObservedPhase, Platform, Resources, RestartMode, RestartPolicy, RuntimeInfo,
};
pub use keys::Keyspace;
pub use operation::{Operation, OperationState};
pub use time::Timestamp;

//! draas-runtime: a drasi-server-compatible host for the subset of Drasi built from the
//! published crates (sources `http`, `mock`, `postgres` with its bootstrap provider;
//! reactions `log`, `http`, `sse`, `profiler`, `storedproc-postgres`/`-mysql`/`-mssql`,
//! and drasi-server's `http-adaptive`/`grpc-adaptive` run as `http`/`grpc` with adaptive
//! batching).
//!
//! Modules:
//! - [`cli`]: command-line arguments (`--config`, `--port`, `validate`, `capabilities`).
//! - [`load`]: reading, interpolating, parsing and checking a config file.
//! - [`support`]: what this runtime accepts beyond the shared config model.
//! - [`components`]: turning the config into DrasiLib instances.
//! - [`api`]: the REST API (drasi-server paths and `{success, data, error}` envelope).
//! - [`changes`]: each query's live change feed (Server-Sent Events) behind the API.
//! - [`server`]: start, serve, and stop; the in-process entry point [`server::run`].
//! - [`signals`]: SIGINT/SIGTERM as a shutdown future.
//! - [`egress`]: the egress proxy enforcing the operator's policy on outbound requests.
//! - [`output`]: stdout and stderr that never kill the process when their reader goes away.

pub mod api;
pub mod changes;
pub mod cli;
pub mod components;
pub mod egress;
pub mod error;
pub mod load;
pub mod output;
pub mod server;
pub mod signals;
pub mod support;

pub use error::RuntimeError;
pub use server::{Runtime, run};

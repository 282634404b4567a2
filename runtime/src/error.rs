//! [`RuntimeError`]: everything that can stop the runtime from starting or running.

use std::path::PathBuf;

use draas_protocol::drasi::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("config file {path} not found (draas-runtime never writes a default config)")]
    ConfigNotFound { path: PathBuf },
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Invalid or unsupported configuration; displays as `path: message`.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A component could not be created or started.
    #[error("{path}: {message}")]
    Component { path: String, message: String },
    #[error("drasi instance `{instance}`: {message}")]
    Drasi { instance: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("REST API server failed: {0}")]
    Serve(std::io::Error),
}

//! The bus error type.

use draas_protocol::DecodeError;

/// Anything that can go wrong talking to Redis or reading what is stored there.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl BusError {
    pub(crate) fn corrupt(key: impl Into<String>, reason: impl ToString) -> Self {
        BusError::Corrupt {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

//! Wall-clock time as a protocol [`Timestamp`].

use std::time::{SystemTime, UNIX_EPOCH};

use draas_protocol::Timestamp;

/// Now, in Unix milliseconds.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

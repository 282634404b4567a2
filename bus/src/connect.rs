//! Connections to Redis, established with exponential backoff (backon).
//!
//! Two kinds: the shared [`ConnectionManager`] for ordinary commands (multiplexed, reconnects by
//! itself), and a dedicated connection per blocking reader. A blocking `XREAD`/`XREADGROUP` on
//! the shared connection would stall every other request behind it, and its response timeout
//! must be longer than `BLOCK`, so blocking readers never share.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError};

/// How long ordinary commands may take before they count as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(8)
        .with_jitter()
}

/// Opens the shared, self-reconnecting connection.
pub async fn shared(url: &str) -> Result<ConnectionManager, RedisError> {
    let client = Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    (|| ConnectionManager::new_with_config(client.clone(), config.clone()))
        .retry(backoff())
        .notify(|e, d| tracing::warn!(message = "redis connect failed, retrying", error = %e, delay = ?d))
        .await
}

/// Opens a connection for one blocking reader: no response timeout, so `BLOCK` governs.
pub async fn blocking(url: &str) -> Result<MultiplexedConnection, RedisError> {
    let client = Client::open(url)?;
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(2)));
    (|| client.get_multiplexed_async_connection_with_config(&config))
        .retry(backoff())
        .notify(|e, d| tracing::warn!(message = "redis connect failed, retrying", error = %e, delay = ?d))
        .await
}

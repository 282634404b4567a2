//! The live event feed: one reader per API node tails the events stream and broadcasts each
//! event to every SSE client, so a thousand watchers cost one blocking read.

use draas_bus::store::EventEntry;
use draas_bus::streams::payload;
use draas_bus::{Store, connect};
use draas_protocol::codec;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Starts the feed; subscribe with `sender.subscribe()`.
pub async fn start(
    store: Store,
    redis_url: impl Into<connect::RedisTarget>,
    stop: CancellationToken,
) -> Result<broadcast::Sender<EventEntry>, redis::RedisError> {
    let (tx, _) = broadcast::channel(4096);
    let url = redis_url.into();
    let mut reader = connect::blocking(&url).await?;
    let events = store.keys().events();
    let feed = tx.clone();
    tokio::spawn(async move {
        let options = StreamReadOptions::default().count(512).block(2000);
        // Everything after the newest event at start-up; `last_id` says why not "$" or a time.
        let mut last = draas_bus::streams::last_id(&mut reader, &events)
            .await
            .unwrap_or_else(|_| "$".to_owned());
        while !stop.is_cancelled() {
            let (keys, ids) = ([&events], [&last]);
            let read = tokio::select! {
                () = stop.cancelled() => break,
                read = redis::AsyncCommands::xread_options::<_, _, Option<StreamReadReply>>(
                    &mut reader, &keys, &ids, &options,
                ) => read,
            };
            match read {
                Ok(reply) => {
                    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                        last = entry.id.clone();
                        if let Ok(event) = payload(&entry).and_then(|b| Ok(codec::decode(&b)?)) {
                            let _ = feed.send(EventEntry {
                                id: entry.id,
                                event,
                            });
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "event feed failed; reconnecting", %error);
                    if let Ok(conn) = connect::blocking(&url).await {
                        reader = conn;
                    }
                }
            }
        }
    });
    Ok(tx)
}

//! Relays a worker's change feed to the client frame by frame (an SSE event ends with a blank
//! line), so a broken worker stream never leaves half an event behind: the client gets what
//! arrived whole, then an `error` event saying the stream broke, and the feed ends. The
//! client reconnects (with `Last-Event-ID`) and is routed to a live owner.

use std::convert::Infallible;

use axum::body::Bytes;
use futures::{Stream, StreamExt, stream};
use serde_json::json;

/// The frames of `upstream`, then an `error` event if it broke.
pub fn relay<S>(upstream: S, instance: uuid::Uuid) -> impl Stream<Item = Result<Bytes, Infallible>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    struct State<S> {
        upstream: S,
        buffer: Vec<u8>,
        done: bool,
    }
    let state = State {
        upstream,
        buffer: Vec::new(),
        done: false,
    };
    stream::unfold(state, move |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            if let Some(end) = frame_end(&state.buffer) {
                let frame: Vec<u8> = state.buffer.drain(..end).collect();
                return Some((Ok(Bytes::from(frame)), state));
            }
            match state.upstream.next().await {
                Some(Ok(chunk)) => state.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    state.done = true;
                    return Some((Ok(broken(instance, &e.to_string())), state));
                }
                None if state.buffer.iter().all(|b| b.is_ascii_whitespace()) => return None,
                None => {
                    state.done = true;
                    return Some((Ok(broken(instance, "the stream ended mid-event")), state));
                }
            }
        }
    })
}

/// Where the first complete frame of `buffer` ends (after its blank line), if there is one.
fn frame_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// The `error` event that ends a broken feed.
fn broken(instance: uuid::Uuid, reason: &str) -> Bytes {
    let data = json!({"error": {
        "code": "instance_unreachable",
        "message": format!("the change feed of instance {instance} broke: {reason}; reconnect with Last-Event-ID to resume"),
        "details": {"instance": instance, "reason": reason},
    }});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_pass_whole_and_a_break_ends_with_an_error_event() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![
            Ok(Bytes::from_static(b"id: a:1\nevent: change\nda")),
            Ok(Bytes::from_static(b"ta: {}\n\nid: a:2\nevent: ch")),
        ];
        let out: Vec<Bytes> = relay(stream::iter(chunks), uuid::Uuid::nil())
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(
            out[0],
            Bytes::from_static(b"id: a:1\nevent: change\ndata: {}\n\n")
        );
        assert_eq!(out.len(), 2, "{out:?}");
        let last = String::from_utf8_lossy(&out[1]);
        assert!(last.starts_with("event: error\ndata: "), "{last}");
        assert!(last.contains("mid-event"), "{last}");
    }
}

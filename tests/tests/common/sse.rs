//! A Server-Sent Events client for the tests: one open feed read event by event with a
//! deadline, and the TCP connections a process holds to a port (read from /proc/net/tcp*),
//! to show that closed feeds leave none behind.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::Value;

use super::DEADLINE;

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// An open feed.
pub struct Feed {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    pub status: u16,
}

impl Feed {
    /// Opens `url` with the given headers; the status is kept (a refusal has no events).
    pub async fn open(
        http: &reqwest::Client,
        url: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Feed> {
        let mut request = http.get(url).header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.context("opening the feed")?;
        Ok(Feed {
            status: response.status().as_u16(),
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        })
    }

    /// The next event (comments and keep-alives skipped), within the deadline.
    pub async fn next(&mut self) -> anyhow::Result<SseEvent> {
        self.next_within(DEADLINE).await
    }

    /// The next event within `limit`; an error when the feed ends or the time passes.
    pub async fn next_within(&mut self, limit: Duration) -> anyhow::Result<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&frame) {
                    return Ok(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .context("no event in time")?;
            match chunk {
                Some(Ok(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Err(e)) => bail!("the feed broke: {e}"),
                None => bail!("the feed ended"),
            }
        }
    }

    /// The next event that is not a `snapshot`, `reset` or keep-alive: a change or an error.
    pub async fn next_change(&mut self) -> anyhow::Result<SseEvent> {
        loop {
            let event = self.next().await?;
            if event.event != "snapshot" && event.event != "reset" {
                return Ok(event);
            }
        }
    }
}

fn parse(frame: &str) -> Option<SseEvent> {
    let mut event = "message".to_owned();
    let mut id = None;
    let mut data = Vec::new();
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
        }
    }
    if data.is_empty() {
        return None;
    }
    let text = data.join("\n");
    Some(SseEvent {
        event,
        id,
        data: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    })
}

/// TCP connections of this machine with `port` at either end that are still held open
/// (neither listening nor in TIME_WAIT): an open connection, or one half-closed by the
/// peer and not yet by its owner (CLOSE_WAIT, a leak if it stays).
pub fn held_connections(port: u16) -> usize {
    let hex = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state)) =
                (fields.get(1), fields.get(2), fields.get(3))
            else {
                return false;
            };
            let port_of = |a: &str| a.rsplit(':').next().unwrap_or_default().to_owned();
            let touches = port_of(local) == hex || port_of(remote) == hex;
            // 0A: LISTEN, 06: TIME_WAIT, 07: CLOSE (gone).
            touches && !matches!(*state, "0A" | "06" | "07")
        })
        .count()
}

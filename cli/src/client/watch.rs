//! `draas instances logs NAME [-f]` and `draas instances events NAME [--follow]`.
//!
//! The API gives an instance's last log lines (`GET …/logs?tail=N`, read by its worker) and
//! no log stream, so `logs -f` polls that tail every second until Ctrl-C and prints only the
//! lines after the last ones it printed. Events are Server-Sent Events (`GET …/events`:
//! recent history, then live, never ending); without `--follow` the history is printed and
//! the command ends once the stream has been quiet for a second.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::http::{Api, ClientError, segment};
use super::output::Format;

/// Lines a follow asks for on every poll.
const FOLLOW_TAIL: u32 = 1000;
/// How long a follow waits between polls.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Quiet time after which the events' history counts as sent.
const HISTORY_QUIET: Duration = Duration::from_secs(1);
/// Lines of the last poll that locate the new ones in the next.
const ANCHOR: usize = 50;

async fn tail(api: &Api, id: &str, lines: u32) -> Result<Vec<String>, ClientError> {
    let path = format!("/api/v1/instances/{}/logs?tail={lines}", segment(id));
    let body = api.get(&path).await?;
    Ok(body["lines"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect())
}

/// `logs`: the last `lines` lines; with `follow`, then every new line until interrupted.
pub async fn logs(api: &Api, id: &str, lines: u32, follow: bool) -> Result<(), ClientError> {
    // A follow reads a full window at once, so the lines it locates new ones by are many.
    let mut seen = tail(
        api,
        id,
        if follow {
            FOLLOW_TAIL.max(lines)
        } else {
            lines
        },
    )
    .await?;
    for line in &seen[seen.len().saturating_sub(lines as usize)..] {
        println!("{line}");
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let now = match tail(api, id, FOLLOW_TAIL).await {
            Ok(now) => now,
            // A worker or the API between two lives: try again on the next tick.
            Err(ClientError::Unreachable { .. }) => continue,
            Err(ClientError::Api { status, .. }) if status >= 500 => continue,
            Err(e) => return Err(e),
        };
        for line in fresh(&seen, &now) {
            println!("{line}");
        }
        seen = now;
    }
}

/// The lines of `now` after the last lines of `seen`; all of `now` when they cannot be
/// found (the log was rotated, or more than a poll's tail was written).
fn fresh<'a>(seen: &[String], now: &'a [String]) -> &'a [String] {
    if seen.is_empty() {
        return now;
    }
    let m = seen.len().min(ANCHOR);
    let anchor = &seen[seen.len() - m..];
    // The latest place the anchor ends at.
    (m..=now.len())
        .rev()
        .find(|&end| &now[end - m..end] == anchor)
        .map_or(now, |end| &now[end..])
}

/// `events`: the instance's events as lines (or JSON lines with `-o json`).
pub async fn events(api: &Api, id: &str, follow: bool, format: Format) -> Result<(), ClientError> {
    let path = format!("/api/v1/instances/{}/events", segment(id));
    let request = api
        .request(Method::GET, &path)
        .header("accept", "text/event-stream");
    let response = api.open(request).await?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    loop {
        let chunk = match follow {
            true => body.next().await,
            false => match tokio::time::timeout(HISTORY_QUIET, body.next()).await {
                Ok(chunk) => chunk,
                Err(_quiet) => return Ok(()),
            },
        };
        let Some(chunk) = chunk else {
            return Ok(());
        };
        let chunk = chunk.map_err(|e| api.unreachable(&e))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame_data(&frame) {
                match format {
                    Format::Json => println!("{data}"),
                    _ => println!("{}", event_line(&data)),
                }
            }
        }
    }
}

/// The JSON data of an SSE frame (comments and keep-alives: none).
fn frame_data(frame: &str) -> Option<Value> {
    let data: Vec<&str> = frame
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

/// One event as a line: when, what, and who asked.
fn event_line(e: &Value) -> String {
    let s = |v: &Value| super::output::text(v);
    let kind = e["type"].as_str().unwrap_or("event");
    let detail = match kind {
        "stateChanged" => format!("{} -> {}: {}", s(&e["from"]), s(&e["to"]), s(&e["reason"])),
        "restartScheduled" => format!(
            "restart attempt {} in {}ms",
            s(&e["attempt"]),
            s(&e["delayMs"])
        ),
        "note" => s(&e["message"]),
        _ => {
            let mut rest = e.as_object().cloned().unwrap_or_default();
            for known in [
                "v",
                "instanceId",
                "platform",
                "at",
                "commandId",
                "source",
                "actor",
                "tenant",
                "type",
            ] {
                rest.remove(known);
            }
            Value::Object(rest).to_string()
        }
    };
    let mut line = format!("{}  {kind:<16}  {detail}", s(&e["at"]));
    if let Some(actor) = e["actor"].as_str() {
        line.push_str(&format!(" (by {actor})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn only_lines_after_the_last_seen_are_new() {
        let seen = lines("a b c");
        assert_eq!(fresh(&seen, &lines("a b c d e")), lines("d e"));
        // A larger window: older lines before the seen ones are not new.
        assert_eq!(fresh(&seen, &lines("x y a b c d")), lines("d"));
        assert!(fresh(&seen, &lines("a b c")).is_empty());
        // The window slid past the seen lines: everything is new.
        assert_eq!(fresh(&seen, &lines("p q")), lines("p q"));
        // Repeated lines: the latest match counts.
        assert_eq!(fresh(&lines("a a"), &lines("a a a")), Vec::<String>::new());
        assert_eq!(fresh(&[], &lines("a")), lines("a"));
    }

    #[test]
    fn frames_and_events_read_as_lines() {
        assert!(frame_data(": open\n\n").is_none());
        let data = frame_data(
            "id: 1-0\nevent: instance\ndata: {\"type\":\"stateChanged\",\"from\":\"created\",\
             \"to\":\"starting\",\"reason\":\"start\",\"at\":\"T\",\"actor\":\"token:abc\"}\n\n",
        )
        .unwrap();
        assert_eq!(
            event_line(&data),
            "T  stateChanged      created -> starting: start (by token:abc)"
        );
        let drift = json!({"type": "drift", "at": "T", "state": "stopped", "desiredState": "running", "v": 1});
        assert_eq!(
            event_line(&drift),
            "T  drift             {\"desiredState\":\"running\",\"state\":\"stopped\"}"
        );
    }
}

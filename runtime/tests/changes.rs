//! The change feed of a query (`…/queries/{id}/changes`, Server-Sent Events), through the real
//! binary: a snapshot then added/updated/deleted changes in order; resuming with
//! `Last-Event-ID` sends only later changes; an id of another run or an unparsable one gives a
//! reset and a snapshot; errors come before any stream in the envelope; `/health` counts open
//! streams and a client that goes away stops being counted. In process: stopping the query ends
//! every stream with `end`, then the feed answers 409, and a restarted query feeds again.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{Runtime, TempDir, free_port, pipeline_config, post_event, wait_for};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);
const CHANGES: &str = "/api/v1/queries/hot/changes";

fn sensor(op: &str, id: &str, temperature: i64) -> Value {
    json!({"operation": op, "element": {"type": "node", "id": id, "labels": ["Sensor"],
        "properties": {"id": id, "temperature": temperature}}})
}

fn delete(id: &str) -> Value {
    json!({"operation": "delete", "id": id, "labels": ["Sensor"]})
}

fn row(id: &str, temperature: i64) -> Value {
    json!({"id": id, "temperature": temperature})
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

impl Sse {
    /// The sequence of the id, checking the epoch is `epoch`.
    fn sequence(&self, epoch: &str) -> u64 {
        let (e, seq) = self.id.split_once(':').expect("id is epoch:sequence");
        assert_eq!(e, epoch, "{self:?}");
        seq.parse().expect("numeric sequence")
    }
}

/// An open change stream, read line by line.
struct Feed {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

async fn open(api: &str, path: &str, last_event_id: Option<&str>) -> Result<Feed> {
    let mut request = reqwest::Client::new().get(format!("{api}{path}"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let resp = request.send().await?;
    ensure!(
        resp.status() == 200,
        "{path}: {} {}",
        resp.status(),
        resp.text().await?
    );
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(
        content_type.starts_with("text/event-stream"),
        "content type {content_type}"
    );
    Ok(Feed {
        resp,
        buf: Vec::new(),
    })
}

impl Feed {
    /// The next event (comments skipped), or `None` once the server closed the stream.
    async fn next(&mut self) -> Result<Option<Sse>> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..pos + 2).collect())?;
                let (mut id, mut event, mut data) = (None, None, Vec::new());
                for line in block.lines() {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "id" => id = Some(value.to_string()),
                        "event" => event = Some(value.to_string()),
                        "data" => data.push(value.to_string()),
                        _ => {} // comments (keep-alives) and unknown fields
                    }
                }
                let Some(event) = event else { continue };
                return Ok(Some(Sse {
                    id: id.with_context(|| format!("event without id: {block}"))?,
                    event,
                    data: serde_json::from_str(&data.join("\n"))?,
                }));
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => bail!("no event within {WAIT:?}"),
                Ok(chunk) => match chunk? {
                    Some(bytes) => self.buf.extend_from_slice(&bytes),
                    None => return Ok(None),
                },
            }
        }
    }

    /// The next event, which must be a `kind`.
    async fn expect(&mut self, kind: &str) -> Result<Sse> {
        let event = self.next().await?.context("the stream closed")?;
        ensure!(event.event == kind, "expected {kind}, got {event:?}");
        Ok(event)
    }

    /// The next event, which must be a change of exactly these lists.
    async fn expect_change(&mut self, added: Value, updated: Value, deleted: Value) -> Result<Sse> {
        let change = self.expect("change").await?;
        ensure!(
            (
                &change.data["added"],
                &change.data["updated"],
                &change.data["deleted"]
            ) == (&added, &updated, &deleted),
            "expected added {added}, updated {updated}, deleted {deleted}; got {change:?}"
        );
        ensure!(change.data["queryId"] == "hot", "{change:?}");
        ensure!(
            change.data["timestamp"]
                .as_str()
                .is_some_and(|t| time::OffsetDateTime::parse(
                    t,
                    &time::format_description::well_known::Rfc3339
                )
                .is_ok()),
            "timestamp is RFC 3339: {change:?}"
        );
        Ok(change)
    }
}

fn sorted_rows(snapshot: &Sse) -> Vec<Value> {
    let mut rows = snapshot.data["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    rows.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_string());
    rows
}

async fn get(api: &str, path: &str) -> Result<(u16, Value)> {
    let resp = reqwest::get(format!("{api}{path}")).await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

async fn wait_streams(api: &str, expected: u64) -> Result<()> {
    wait_for(&format!("changeStreams == {expected}"), WAIT, || async {
        let (_, health) = get(api, "/health").await?;
        Ok((health["changeStreams"] == expected).then_some(()))
    })
    .await
}

async fn wait_rows(api: &str, expected: Value) -> Result<()> {
    wait_for(&format!("rows {expected}"), WAIT, || async {
        let (_, body) = get(api, "/api/v1/queries/hot/results").await?;
        let mut rows = body["data"].as_array().cloned().unwrap_or_default();
        rows.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_string());
        Ok((Value::Array(rows) == expected).then_some(()))
    })
    .await
}

#[tokio::test]
async fn snapshot_then_changes_resume_and_reset() -> Result<()> {
    let dir = TempDir::new("changes");
    let (api_port, source_port) = (free_port(), free_port());
    let mut rt = Runtime::start(
        dir.path(),
        &pipeline_config(api_port, source_port),
        api_port,
    )
    .await?;
    let api = rt.api.clone();

    // Errors come before any stream, in the envelope.
    for (path, status) in [
        ("/api/v1/queries/nope/changes", 404),
        ("/api/v1/instances/nope/queries/hot/changes", 404),
        ("/api/v1/instances/test-instance/queries/nope/changes", 404),
        ("/api/v1/queries/hot/changes?snapshot=nope", 400),
    ] {
        let (got, body) = get(&api, path).await?;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["success"], false, "{path}");
        assert_eq!(body["data"], Value::Null, "{path}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("nope")),
            "{path}: {body}"
        );
    }
    let (_, health) = get(&api, "/health").await?;
    assert_eq!(
        (&health["status"], &health["changeStreams"]),
        (&json!("ok"), &json!(0)),
        "{health}"
    );

    post_event(source_port, sensor("insert", "s1", 80)).await?;
    wait_rows(&api, json!([row("s1", 80)])).await?;

    // A snapshot, then each change in order.
    let mut feed = open(&api, CHANGES, None).await?;
    let snapshot = feed.expect("snapshot").await?;
    let epoch = snapshot.id.split_once(':').context("id")?.0.to_string();
    assert_eq!(snapshot.data["queryId"], "hot");
    assert_eq!(sorted_rows(&snapshot), vec![row("s1", 80)]);
    assert_eq!(
        json!(snapshot.sequence(&epoch)),
        snapshot.data["sequence"],
        "{snapshot:?}"
    );
    wait_streams(&api, 1).await?;

    post_event(source_port, sensor("update", "s1", 85)).await?;
    let updated = feed
        .expect_change(
            json!([]),
            json!([{"before": row("s1", 80), "after": row("s1", 85)}]),
            json!([]),
        )
        .await?;
    post_event(source_port, sensor("insert", "s2", 90)).await?;
    let added = feed
        .expect_change(json!([row("s2", 90)]), json!([]), json!([]))
        .await?;
    // A cool sensor changes no result: no event.
    post_event(source_port, sensor("insert", "cool", 20)).await?;
    post_event(source_port, delete("s1")).await?;
    let deleted = feed
        .expect_change(json!([]), json!([]), json!([row("s1", 85)]))
        .await?;
    let sequences: Vec<u64> = [&snapshot, &updated, &added, &deleted]
        .iter()
        .map(|e| e.sequence(&epoch))
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "increasing sequences: {sequences:?}"
    );
    for e in [&updated, &added, &deleted] {
        assert_eq!(json!(e.sequence(&epoch)), e.data["sequence"], "{e:?}");
    }

    // A client that goes away is no longer counted.
    drop(feed);
    wait_streams(&api, 0).await?;

    // Resuming after `updated`: exactly the later changes, then live ones.
    let mut resumed = open(&api, CHANGES, Some(&updated.id)).await?;
    let again = resumed.expect("change").await?;
    assert_eq!((&again.id, &again.data), (&added.id, &added.data));
    let again = resumed.expect("change").await?;
    assert_eq!((&again.id, &again.data), (&deleted.id, &deleted.data));
    post_event(source_port, sensor("insert", "s4", 95)).await?;
    let live = resumed
        .expect_change(json!([row("s4", 95)]), json!([]), json!([]))
        .await?;
    drop(resumed);

    // Resuming at the head: nothing until the next change, on the scoped path too.
    let scoped = "/api/v1/instances/test-instance/queries/hot/changes";
    let mut at_head = open(&api, scoped, Some(&live.id)).await?;
    post_event(source_port, sensor("update", "s4", 96)).await?;
    at_head
        .expect_change(
            json!([]),
            json!([{"before": row("s4", 95), "after": row("s4", 96)}]),
            json!([]),
        )
        .await?;

    // An id of another run: reset, then a snapshot even with snapshot=false, then live.
    let foreign = format!("{}:{}", "0".repeat(32), live.sequence(&epoch));
    let mut reset = open(&api, &format!("{scoped}?snapshot=false"), Some(&foreign)).await?;
    let event = reset.expect("reset").await?;
    assert!(
        event.data["reason"]
            .as_str()
            .is_some_and(|r| r.contains("restarted")),
        "{event:?}"
    );
    let snapshot = reset.expect("snapshot").await?;
    assert_eq!(sorted_rows(&snapshot), vec![row("s2", 90), row("s4", 96)]);
    // An unparsable id: the same.
    let mut garbage = open(&api, CHANGES, Some("garbage")).await?;
    let event = garbage.expect("reset").await?;
    assert!(event.data["reason"].as_str().is_some_and(|r| !r.is_empty()));
    garbage.expect("snapshot").await?;

    // snapshot=false: the first event is the next change.
    let mut bare = open(&api, &format!("{CHANGES}?snapshot=false"), None).await?;
    wait_streams(&api, 4).await?;
    post_event(source_port, delete("s2")).await?;
    for feed in [&mut at_head, &mut reset, &mut garbage, &mut bare] {
        feed.expect_change(json!([]), json!([]), json!([row("s2", 90)]))
            .await?;
    }

    drop((at_head, reset, garbage, bare));
    wait_streams(&api, 0).await?;
    let status = rt.signal_and_wait(Signal::SIGINT, Duration::from_secs(15))?;
    assert_eq!(status.code(), Some(0), "{}", rt.logs());
    Ok(())
}

#[tokio::test]
async fn a_stopped_query_ends_its_streams() -> Result<()> {
    // drasi-lib's logs go through the test harness (captured), not straight to stdout.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let source_port = free_port();
    let config = draas_runtime::load::parse_config(
        &pipeline_config(free_port(), source_port),
        &|_: &str| None,
    )?;
    let runtime = draas_runtime::Runtime::start(&config).await?;
    let lib = runtime.instances()[0].lib.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runtime.serve(listener, async move {
        let _ = stop_rx.await;
    }));

    post_event(source_port, sensor("insert", "s1", 80)).await?;
    wait_rows(&api, json!([row("s1", 80)])).await?;

    // Two clients share the query's one feed.
    let mut first = open(&api, CHANGES, None).await?;
    let mut second = open(&api, CHANGES, None).await?;
    first.expect("snapshot").await?;
    second.expect("snapshot").await?;
    post_event(source_port, sensor("insert", "s2", 90)).await?;
    for feed in [&mut first, &mut second] {
        feed.expect_change(json!([row("s2", 90)]), json!([]), json!([]))
            .await?;
    }

    lib.stop_query("hot").await?;
    for feed in [&mut first, &mut second] {
        let end = feed.expect("end").await?;
        assert!(
            end.data["reason"]
                .as_str()
                .is_some_and(|r| r.contains("stopped")),
            "{end:?}"
        );
        assert!(feed.next().await?.is_none(), "the stream closes after end");
    }
    wait_streams(&api, 0).await?;
    let (status, body) = get(&api, CHANGES).await?;
    assert_eq!((status, &body["success"]), (409, &json!(false)), "{body}");

    // Restarted, the query feeds again (a new subscription).
    lib.start_query("hot").await?;
    wait_for("hot running", WAIT, || async {
        let (_, body) = get(&api, "/api/v1/queries/hot").await?;
        Ok((body["data"]["status"] == "Running").then_some(()))
    })
    .await?;
    let mut again = open(&api, CHANGES, None).await?;
    again.expect("snapshot").await?;
    post_event(source_port, sensor("insert", "s3", 99)).await?;
    again
        .expect_change(json!([row("s3", 99)]), json!([]), json!([]))
        .await?;
    drop(again);

    let _ = stop_tx.send(());
    tokio::time::timeout(WAIT, server).await???;
    Ok(())
}

#[tokio::test]
async fn close_all_ends_every_stream_so_a_graceful_shutdown_finishes() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let source_port = free_port();
    let config = draas_runtime::load::parse_config(
        &pipeline_config(free_port(), source_port),
        &|_: &str| None,
    )?;
    let runtime = draas_runtime::Runtime::start(&config).await?;
    let (router, changes) = draas_runtime::api::router_with_changes(runtime.instances().to_vec());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .into_future(),
    );

    let mut feed = open(&api, CHANGES, None).await?;
    feed.expect("snapshot").await?;
    assert_eq!(changes.open_streams(), 1);

    changes.close_all();
    let end = feed.expect("end").await?;
    assert!(
        end.data["reason"]
            .as_str()
            .is_some_and(|r| r.contains("shutting down")),
        "{end:?}"
    );
    assert!(feed.next().await?.is_none(), "the stream closes after end");
    let (status, body) = get(&api, CHANGES).await?;
    assert_eq!((status, &body["success"]), (503, &json!(false)), "{body}");

    // No stream holds the graceful shutdown up.
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert_eq!(changes.open_streams(), 0);
    runtime.stop().await;
    Ok(())
}

//! Observability end to end, on real processes: `draas api` and two `draas worker`s serving
//! `/metrics`, scraped by a real Prometheus (Debian's package) with the shipped alert rules;
//! the series count after 1,000 instances; and one start traced across the API and the
//! worker into a test OTLP receiver.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{RedisServer, draas_binary, free_port, fresh_keys, scratch, terminate};
use draas_protocol::Keyspace;
use serde_json::json;

/// A `draas` process, ended (SIGTERM, then SIGKILL) on drop.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn draas(args: &[String], env: &[(&str, String)], log: PathBuf) -> Proc {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(draas_binary())
        .args(args)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn draas");
    Proc { child }
}

struct Fleet {
    redis: RedisServer,
    keys: Keyspace,
    dir: PathBuf,
    api: String,
    api_metrics: String,
    _api: Proc,
}

impl Fleet {
    fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis.port)
    }

    fn start(env: &[(&str, String)]) -> Fleet {
        let redis = RedisServer::start().expect("redis");
        let keys = fresh_keys("obs");
        let dir = scratch("observability");
        let (port, metrics) = (free_port(), free_port());
        let url = format!("redis://127.0.0.1:{}", redis.port);
        let api = draas(
            &[
                "api".into(),
                "--redis-url".into(),
                url,
                "--prefix".into(),
                keys.prefix().into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--metrics-listen".into(),
                format!("127.0.0.1:{metrics}"),
                "--auth".into(),
                "none".into(),
                "--no-rate-limit".into(),
            ],
            env,
            dir.join("api.log"),
        );
        Fleet {
            redis,
            keys,
            api: format!("http://127.0.0.1:{port}"),
            api_metrics: format!("127.0.0.1:{metrics}"),
            dir,
            _api: api,
        }
    }

    /// Starts a process worker of its own node; returns it and its metrics address.
    fn worker(&self, name: &str, env: &[(&str, String)]) -> (Proc, String) {
        let metrics = free_port();
        let proc = draas(
            &[
                "worker".into(),
                "--redis-url".into(),
                self.redis_url(),
                "--prefix".into(),
                self.keys.prefix().into(),
                "--platform".into(),
                "process".into(),
                "--data-dir".into(),
                self.dir.join(name).display().to_string(),
                "--runtime".into(),
                common::runtime_binary().display().to_string(),
                "--metrics-listen".into(),
                format!("127.0.0.1:{metrics}"),
                "--heartbeat-interval".into(),
                "0.5".into(),
                "--heartbeat-ttl".into(),
                "2".into(),
            ],
            env,
            self.dir.join(format!("{name}.log")),
        );
        (proc, format!("127.0.0.1:{metrics}"))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                out += &format!("--- {}\n", path.display());
                out += &std::fs::read_to_string(&path).unwrap_or_default();
            }
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        common::kill_instances_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it gives a value or `deadline` passes.
async fn within<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_the_commands_done_and_the_fleet_alert_fires_and_resolves() {
    let fleet = Fleet::start(&[]);
    let (w1, m1) = fleet.worker("w1", &[]);
    let (w2, m2) = fleet.worker("w2", &[]);
    let http = reqwest::Client::new();
    common::wait_for_workers(&http, &fleet.api, 2).await;
    let prom = Prometheus::start(&[
        ("draas-api", vec![fleet.api_metrics.clone()]),
        ("draas-worker", vec![m1, m2]),
    ])
    .await
    .expect("prometheus");
    within(Duration::from_secs(30), "three targets up", || async {
        let up = prom.targets_up().await;
        (up.len() == 3 && up.iter().all(|(_, ok)| *ok)).then_some(())
    })
    .await;

    // The load: pings through the API, all at once.
    const N: usize = 200;
    let ping = format!("{}/api/v1/platforms/process/ping", fleet.api);
    let statuses = futures::future::join_all((0..N).map(|_| {
        let (http, ping) = (http.clone(), ping.clone());
        async move { http.post(&ping).send().await.map(|r| r.status().as_u16()) }
    }))
    .await;
    let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    assert_eq!(ok, N, "every ping answered: {statuses:?}\n{}", fleet.logs());

    let expect = |promql: &'static str, want: f64| {
        let prom = &prom;
        async move {
            within(Duration::from_secs(30), promql, || async {
                (prom.scalar(promql).await == Some(want)).then_some(())
            })
            .await
        }
    };
    expect(
        r#"sum(draas_commands_issued_total{platform="process",kind="ping"})"#,
        N as f64,
    )
    .await;
    expect(
        r#"sum(draas_commands_completed_total{platform="process",kind="ping",outcome="succeeded"})"#,
        N as f64,
    )
    .await;
    expect(
        r#"sum(draas_command_duration_seconds_count{platform="process",kind="ping"})"#,
        N as f64,
    )
    .await;
    expect(
        r#"sum(draas_http_requests_total{route="/api/v1/platforms/{platform}/ping",method="POST",status="200"})"#,
        N as f64,
    )
    .await;
    expect(r#"max(draas_stream_pending{platform="process"})"#, 0.0).await;
    expect(r#"max(draas_workers_live{platform="process"})"#, 2.0).await;
    assert_eq!(prom.alert_state("DraasWorkerFleetEmpty").await, None);

    // Every worker of the platform stops: the shipped rule fires (for: 30s) ...
    drop((w1, w2));
    expect(r#"max(draas_workers_live{platform="process"})"#, 0.0).await;
    within(
        Duration::from_secs(90),
        "DraasWorkerFleetEmpty firing",
        || async {
            (prom.alert_state("DraasWorkerFleetEmpty").await.as_deref() == Some("firing"))
                .then_some(())
        },
    )
    .await;
    // ... and resolves when one returns.
    let (_w3, _) = fleet.worker("w3", &[]);
    within(
        Duration::from_secs(60),
        "DraasWorkerFleetEmpty resolved",
        || async {
            prom.alert_state("DraasWorkerFleetEmpty")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
}

/// Series in a Prometheus text exposition (sample lines).
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_count_stays_bounded_after_1000_instances_and_names_none_of_them() {
    let fleet = Fleet::start(&[]);
    let (_worker, worker_metrics) = fleet.worker("w1", &[]);
    let http = reqwest::Client::new();
    common::wait_for_workers(&http, &fleet.api, 1).await;
    let scrape = |addr: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .expect("scrape");
            assert_eq!(
                r.headers()["content-type"],
                "text/plain; version=0.0.4; charset=utf-8"
            );
            r.text().await.expect("exposition")
        }
    };
    // Warm every route this test uses once, so the count before is comparable.
    let id = create(&http, &fleet.api, "warm").await;
    delete(&http, &fleet.api, &id).await;
    let before = within(Duration::from_secs(30), "the gauges read once", || async {
        let text = scrape(fleet.api_metrics.clone()).await;
        text.contains("draas_instances{").then(|| series(&text))
    })
    .await;

    let mut ids = Vec::new();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        let names: Vec<String> = chunk.iter().map(|i| format!("load-{i}")).collect();
        let made =
            futures::future::join_all(names.iter().map(|n| create(&http, &fleet.api, n))).await;
        ids.extend(made);
    }
    for chunk in ids.chunks(50) {
        futures::future::join_all(chunk.iter().map(|id| delete(&http, &fleet.api, id))).await;
    }
    let api = scrape(fleet.api_metrics.clone()).await;
    let worker = scrape(worker_metrics).await;
    let (api_series, worker_series) = (series(&api), series(&worker));
    // The documented bound (README, "Metrics"): API ≤ 2,600 + 12 × nodes, worker ≤ 400.
    assert!(api_series <= 2_600 + 12, "API exports {api_series} series");
    assert!(
        worker_series <= 400,
        "worker exports {worker_series} series"
    );
    assert!(
        api_series <= before + 10,
        "1,000 instances added series: {before} before, {api_series} after"
    );
    for id in &ids {
        assert!(
            !api.contains(id.as_str()) && !worker.contains(id.as_str()),
            "{id} in a label"
        );
    }
    assert!(!api.contains("load-"), "an instance name in a label");
}

async fn create(http: &reqwest::Client, api: &str, name: &str) -> String {
    let r = http
        .post(format!("{api}/api/v1/instances"))
        .json(&json!({"name": name, "platform": "process", "config": common::sensor_config()}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    let body: serde_json::Value = r.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

async fn delete(http: &reqwest::Client, api: &str, id: &str) {
    let r = http
        .delete(format!("{api}/api/v1/instances/{id}?wait=30"))
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
}

/// Spans received by the test OTLP receiver: span id → (service, name, parent span id,
/// trace id), all hex.
type Spans = HashMap<String, (String, String, String, String)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_start_is_one_trace_across_the_api_and_the_worker() {
    let (receiver, spans) = common::otlp::Receiver::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("DRAAS_LOG_FORMAT", "json".to_owned()),
        // 4xx refusals are logged at debug.
        ("RUST_LOG", "info,draas_api::error=debug".to_owned()),
    ];
    let fleet = Fleet::start(&env);
    let (_worker, _) = fleet.worker("w1", &env);
    let http = reqwest::Client::new();
    common::wait_for_workers(&http, &fleet.api, 1).await;
    let id = create(&http, &fleet.api, "traced").await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = http
        .post(format!("{}/api/v1/instances/{id}/start?wait=30", fleet.api))
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status().as_u16(), 200, "{}", fleet.logs());

    // Span names as exported (`otel.name`): the request by its route template, the command
    // by its kind.
    let wanted = [
        "POST /api/v1/instances/{id}/start",
        "command start",
        "driver.start",
        "process.spawn",
        "readiness",
        "reply",
    ];
    let spans_seen = spans.clone();
    let _report = Report(Box::new(move || {
        let names: Vec<_> = spans_seen.lock().unwrap().values().cloned().collect();
        format!("spans received: {names:?}")
    }));
    let got: Spans = within(Duration::from_secs(30), "the start's spans", || async {
        let all = spans.lock().unwrap().clone();
        let of_trace: Spans = all.into_iter().filter(|(_, s)| s.3 == trace).collect();
        wanted
            .iter()
            .all(|w| of_trace.values().any(|s| s.1 == *w))
            .then_some(of_trace)
    })
    .await;
    let find = |name: &str| {
        got.iter()
            .find(|(_, s)| s.1 == name)
            .map(|(id, s)| (id.clone(), s.clone()))
            .unwrap_or_else(|| panic!("no {name} span"))
    };
    let (http_id, http_span) = find("POST /api/v1/instances/{id}/start");
    assert_eq!(http_span.0, "draas-api");
    assert_eq!(
        http_span.2, caller_span,
        "the request span continues the caller's"
    );
    let (command_id, command) = find("command start");
    assert_eq!(command.0, "draas-worker");
    // The command's parent is a span of the API's part of the trace (the request or a
    // span inside it).
    let mut up = command.2.clone();
    let mut reached_request = false;
    for _ in 0..10 {
        if up == http_id {
            reached_request = true;
            break;
        }
        match got.get(&up) {
            Some(parent) if parent.0 == "draas-api" => up = parent.2.clone(),
            _ => break,
        }
    }
    assert!(
        reached_request,
        "the command span hangs under the HTTP request: {got:?}"
    );
    // The driver's steps and the reply hang under the command.
    for name in ["driver.start", "reply"] {
        assert_eq!(find(name).1.2, command_id, "{name} is a child of command");
    }
    // JSON log lines carry the trace id of the span they were written in: a second start of
    // the running instance is refused (409), and the refusal is logged (at debug) inside the
    // request.
    let again = http
        .post(format!("{}/api/v1/instances/{id}/start", fleet.api))
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .send()
        .await
        .expect("start again");
    assert_eq!(again.status().as_u16(), 409);
    let logged = within(
        Duration::from_secs(10),
        "a log line with the trace id",
        || async {
            fleet
                .logs()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| l["span"]["trace_id"] == trace)
        },
    )
    .await;
    assert!(logged["fields"]["message"].is_string(), "{logged}");
    let (driver_id, _) = find("driver.start");
    for name in ["process.spawn", "readiness"] {
        let (_, span) = find(name);
        let mut up = span.2.clone();
        while up != driver_id {
            up = got
                .get(&up)
                .unwrap_or_else(|| panic!("{name} not under driver.start"))
                .2
                .clone();
        }
    }
}

/// Prints what it describes when a test fails (drops while panicking).
struct Report(Box<dyn Fn() -> String>);

impl Drop for Report {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", (self.0)());
        }
    }
}

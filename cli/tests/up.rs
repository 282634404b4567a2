//! `draas up` end to end, as a user runs it: a private redis-server child, the API and a
//! process worker; Ctrl-C (SIGINT) stops everything and leaves no process behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(url: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })
}

#[test]
fn up_runs_everything_and_ctrl_c_stops_everything() {
    let data = std::env::temp_dir().join(format!("draas-up-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_draas"))
        .arg("up")
        .env("DRAAS_LISTEN", format!("127.0.0.1:{port}"))
        .env("DRAAS_DATA_DIR", &data)
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("draas up");
    // If an assertion fails, SIGINT still reaches `draas up`, so it stops what it started.
    let _guard = StopOnDrop(child.id());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "DRaaS is up.");
    let api_line = lines.next().unwrap().unwrap();
    assert!(
        api_line.contains(&format!("http://127.0.0.1:{port}")),
        "{api_line}"
    );

    let url = format!("http://127.0.0.1:{port}/api/v1/platforms");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = get(&url).unwrap_or_default();
        if body.contains(r#""available":true"#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "process platform never became available: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let redis_pid: i32 = std::fs::read_to_string(data.join("redis").join("redis.pid"))
        .expect("the private redis-server writes a pid file")
        .trim()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{redis_pid}")).exists());

    // An instance is running when Ctrl-C comes.
    let base = format!("http://127.0.0.1:{port}");
    let instance_pid = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let http = reqwest::Client::new();
            let created: serde_json::Value = http
                .post(format!("{base}/api/v1/instances"))
                .json(&serde_json::json!({"name": "demo", "platform": "process", "config": {}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = created["id"].as_str().expect("created").to_owned();
            let op: serde_json::Value = http
                .post(format!("{base}/api/v1/instances/{id}/start"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(op["state"], "succeeded", "{op}");
            op["result"]["pid"].as_i64().unwrap()
        });

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "draas up exited with {status}");
    assert!(
        !std::path::Path::new(&format!("/proc/{redis_pid}")).exists(),
        "redis-server {redis_pid} outlived draas up"
    );
    assert!(
        data.join("redis").join("appendonlydir").exists(),
        "the private Redis keeps an AOF"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{instance_pid}")).exists(),
        "instance {instance_pid} outlived draas up"
    );
}

/// Sends SIGINT to a process when dropped (a no-op once it has exited and been reaped).
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let pid = nix::unistd::Pid::from_raw(self.0 as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        }
    }
}

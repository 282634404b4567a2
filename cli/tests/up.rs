//! `draas up` end to end, as a user runs it: a private redis-server child, the API and a
//! process worker; its context lets `draas ops` in the same directory find that Redis; Ctrl-C
//! (SIGINT) stops the running instances in order (recorded `stopped`), then everything else,
//! and leaves no process behind; the next `draas up` on the same directory shows the instance
//! `stopped` and starts it again. Also: an unreachable Redis fails within seconds, in one line.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

fn get(url: &str, token: &str) -> Option<String> {
    block_on(async {
        let request = reqwest::Client::new().get(url).bearer_auth(token);
        request.send().await.ok()?.text().await.ok()
    })
}

fn status_of(url: &str) -> u16 {
    block_on(async { reqwest::get(url).await.unwrap().status().as_u16() })
}

fn post(url: &str, token: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    block_on(async {
        let mut request = reqwest::Client::new().post(url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    })
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `draas` with none of the variables that would point it elsewhere.
fn draas(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_draas"));
    command.current_dir(dir);
    for var in [
        "REDIS_URL",
        "DRAAS_DATA_DIR",
        "DRAAS_CONTEXT",
        "DRAAS_PREFIX",
    ] {
        command.env_remove(var);
    }
    command
}

/// A running `draas up` in `dir` (data in `dir/.draas`, the default), read up to its banner.
struct Up {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    api: String,
    redis_url: String,
    /// The administrator token, from the data directory's `admin-token`.
    token: String,
    /// The banner line about the token.
    token_line: String,
    _guard: StopOnDrop,
}

impl Up {
    fn start(dir: &Path) -> Up {
        let port = free_port();
        let mut child = draas(dir)
            .arg("up")
            .env("DRAAS_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("draas up");
        // If an assertion fails, SIGINT still reaches `draas up`, so it stops what it started.
        let guard = StopOnDrop(child.id());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("Press Ctrl-C");
            banner.push(line);
            if done {
                break;
            }
        }
        assert_eq!(banner.first().map(String::as_str), Some("DRaaS is up."));
        let api = format!("http://127.0.0.1:{port}");
        assert!(banner[1].contains(&api), "{banner:?}");
        let redis_url = banner
            .iter()
            .find_map(|l| l.strip_prefix("Other shells:  export REDIS_URL="))
            .unwrap_or_else(|| panic!("no export line: {banner:?}"))
            .to_owned();
        let token = std::fs::read_to_string(dir.join(".draas").join("admin-token"))
            .expect("draas up writes its administrator token")
            .trim()
            .to_owned();
        let token_line = banner
            .iter()
            .find(|l| l.starts_with("  Token:"))
            .unwrap_or_else(|| panic!("no token line: {banner:?}"))
            .clone();
        let up = Up {
            child,
            lines,
            api,
            redis_url,
            token,
            token_line,
            _guard: guard,
        };
        up.wait_available();
        up
    }

    fn wait_available(&self) {
        let url = format!("{}/api/v1/platforms", self.api);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = get(&url, &self.token).unwrap_or_default();
            if body.contains(r#""available":true"#) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "process platform never became available: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl-C; waits for a clean exit and returns what it printed after the banner.
    fn interrupt(mut self) -> Vec<String> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let rest: Vec<String> = self.lines.by_ref().map(Result::unwrap).collect();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "draas up exited with {status}: {rest:?}");
        rest
    }

    fn start_instance(&self, id: &str) -> i64 {
        let op = post(
            &format!("{}/api/v1/instances/{id}/start", self.api),
            &self.token,
            None,
        );
        assert_eq!(op["state"], "succeeded", "{op}");
        op["result"]["pid"].as_i64().unwrap()
    }
}

fn up_token_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".draas").join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("draas-up-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn up_runs_everything_and_ctrl_c_stops_everything_in_order() {
    let dir = scratch();
    let data = dir.join(".draas");
    let up = Up::start(&dir);
    let redis_pid: i64 = std::fs::read_to_string(data.join("redis").join("redis.pid"))
        .expect("the private redis-server writes a pid file")
        .trim()
        .parse()
        .unwrap();
    assert!(alive(redis_pid));
    let context: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("context.json")).unwrap()).unwrap();
    assert_eq!(context["redisUrl"], up.redis_url.as_str());
    assert_eq!(context["apiUrl"], up.api.as_str());

    // The API needs a token; up made an administrator token, shown once and kept 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin-token mode {mode:o}");
    assert!(
        up.token_line.contains(&up.token) && up.token.starts_with("draas_"),
        "the first run shows the token: {}",
        up.token_line
    );
    assert_eq!(status_of(&format!("{}/api/v1/instances", up.api)), 401);

    // `draas ops` in the same directory, with no REDIS_URL, uses up's Redis.
    let ops = draas(&dir)
        .args(["ops", "--json", "streams"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ops.stderr);
    assert!(ops.status.success(), "{stderr}");
    assert!(
        stderr.contains(&up.redis_url),
        "names the URL it uses: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&ops.stdout);
    assert!(
        stdout.contains("draas:{process}:commands"),
        "sees up's worker stream: {stdout}"
    );

    // A `draas worker` there would share up's worker directory (and node): refused.
    let worker = draas(&dir)
        .arg("worker")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&worker.stderr);
    assert!(!worker.status.success(), "{stderr}");
    assert!(
        stderr.contains("give this worker its own with --data-dir"),
        "{stderr}"
    );

    // An instance is running when Ctrl-C comes.
    let created = post(
        &format!("{}/api/v1/instances", up.api),
        &up.token,
        Some(serde_json::json!({"name": "demo", "platform": "process", "config": {}})),
    );
    let id = created["id"].as_str().expect("created").to_owned();
    let instance_pid = up.start_instance(&id);

    let said = up.interrupt();
    assert!(
        said.iter().any(|l| l == "  demo: stopped"),
        "the instance is stopped in order: {said:?}"
    );
    assert_eq!(said.last().map(String::as_str), Some("DRaaS stopped."));
    assert!(
        !alive(redis_pid),
        "redis-server {redis_pid} outlived draas up"
    );
    assert!(
        data.join("redis").join("appendonlydir").exists(),
        "the private Redis keeps an AOF"
    );
    assert!(
        !alive(instance_pid),
        "instance {instance_pid} outlived draas up"
    );
    assert!(
        !data.join("context.json").exists(),
        "a stopped up leaves no context behind"
    );

    // The next `draas up` on the same directory: the instance is `stopped`, and starts again.
    let first_token = up_token_of(&dir);
    let up = Up::start(&dir);
    assert_eq!(up.token, first_token, "the next run keeps the token");
    assert!(
        !up.token_line.contains(&up.token),
        "the token is shown only once: {}",
        up.token_line
    );
    let instance: serde_json::Value = serde_json::from_str(
        &get(&format!("{}/api/v1/instances/{id}", up.api), &up.token).unwrap(),
    )
    .unwrap();
    assert_eq!(instance["state"], "stopped", "{instance}");
    let second_pid = up.start_instance(&id);
    assert!(alive(second_pid));
    let said = up.interrupt();
    assert!(said.iter().any(|l| l == "  demo: stopped"), "{said:?}");
    assert!(
        !alive(second_pid),
        "instance {second_pid} outlived draas up"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unreachable_redis_fails_fast_in_one_line_without_its_password() {
    let dir = scratch();
    // A port nothing listens on.
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let shown = format!("redis://:***@127.0.0.1:{port}");
    let commands: [&[&str]; 3] = [
        &["ops", "streams"],
        &["worker"],
        &["api", "--listen", "127.0.0.1:0"],
    ];
    for args in commands {
        let started = Instant::now();
        let out = draas(&dir)
            .args(args)
            .env("REDIS_URL", &url)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {stderr}");
        assert!(
            lines[0].starts_with(&format!("error: cannot connect to Redis at {shown}: ")),
            "{args:?}: {stderr}"
        );
        // With logging on, the password appears nowhere either.
        let out = draas(&dir)
            .args(args)
            .env("REDIS_URL", &url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
        assert!(stderr.contains(&shown), "{args:?}: {stderr}");
    }
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing was created before the check"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sends SIGINT to a process when dropped during a panic (a no-op once it has exited).
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let pid = nix::unistd::Pid::from_raw(self.0 as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        }
    }
}

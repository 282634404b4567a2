//! `draas api` and `draas tokens` as an operator runs them, against a private redis-server:
//! the API refuses to start without a token and refuses `--auth none` off loopback; the first
//! token is made with `draas tokens create` (its secret printed once, never listed); then the
//! API serves requests with that token and refuses them without it; a revoked token is refused.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server, killed on drop.
struct Redis(Child, String);

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child, url)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn draas(redis: &Redis, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_draas"));
    // The connection options follow the top-level command (`api`, `tokens`).
    command
        .arg(args[0])
        .args(["--redis-url", &redis.1, "--prefix", "authcli"])
        .args(&args[1..])
        .env("RUST_LOG", "off")
        .env_remove("REDIS_URL")
        .env_remove("DRAAS_CONTEXT")
        .stdin(Stdio::null());
    command
}

fn run(redis: &Redis, args: &[&str]) -> (bool, String, String) {
    let out = draas(redis, args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(url: &str, token: Option<&str>) -> Option<u16> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut req = reqwest::Client::new().get(url);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            Some(req.send().await.ok()?.status().as_u16())
        })
}

#[test]
fn the_first_token_the_api_and_revocation() {
    let redis = Redis::start();

    let (ok, _, err) = run(&redis, &["api", "--listen", "0.0.0.0:0", "--auth", "none"]);
    assert!(!ok, "--auth none on 0.0.0.0 must be refused");
    assert!(err.contains("--auth none is for development only"), "{err}");

    let (ok, _, err) = run(&redis, &["api", "--listen", "127.0.0.1:0"]);
    assert!(!ok, "an API without any token must not start");
    assert!(err.contains("draas tokens create"), "says how: {err}");

    let (ok, out, err) = run(
        &redis,
        &[
            "tokens",
            "create",
            "--tenant",
            "default",
            "--scope",
            "*",
            "--description",
            "first",
        ],
    );
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find(|l| l.starts_with("draas_"))
        .unwrap_or_else(|| panic!("no secret printed: {out}"))
        .to_owned();
    assert!(secret.len() >= 6 + 52, "at least 256 bits: {secret}");
    let (ok, listed, _) = run(&redis, &["tokens", "list"]);
    assert!(ok && listed.contains("first"), "{listed}");
    assert!(
        !listed.contains(&secret[6..]),
        "a listing never shows a secret: {listed}"
    );
    let id = listed
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();

    let port = free_port();
    let mut api: Child = draas(&redis, &["api", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/instances");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&url, Some(&secret)) != Some(200) {
        assert!(Instant::now() < deadline, "the API never served the token");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&url, None), Some(401));
    assert_eq!(
        status(&format!("http://127.0.0.1:{port}/healthz"), None),
        Some(200)
    );

    let (ok, said, err) = run(&redis, &["tokens", "revoke", &id]);
    assert!(ok, "{err}");
    assert!(said.contains("revoked"), "{said}");
    let deadline = Instant::now() + Duration::from_secs(1);
    while status(&url, Some(&secret)) != Some(401) {
        assert!(
            Instant::now() < deadline,
            "a revoked token still served after 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = api.kill();
    let _ = api.wait();
}

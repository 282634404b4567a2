//! The runtime as a hostile world treats it: its output reader vanishes (a crashed worker), and
//! a tenant's http reaction aims at addresses the operator's egress policy denies.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use common::{
    BIN, HOT_QUERY, Runtime, TempDir, free_port, pipeline_config, post_event, sensor_reading,
    wait_for,
};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post_reading(source_port: u16, id: &str, temperature: i64) -> Result<()> {
    post_event(source_port, sensor_reading(id, temperature)).await
}

#[tokio::test]
async fn survives_a_vanished_output_reader() -> Result<()> {
    let dir = TempDir::new("epipe");
    let (api_port, source_port) = (free_port(), free_port());
    let config_path = dir.write("config.yaml", &pipeline_config(api_port, source_port));
    // stdout and stderr are pipes whose read ends are closed at once, as when the worker that
    // spawned the runtime dies.
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir.path())
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    drop(child.stderr.take());
    let mut rt = Runtime {
        child,
        api: format!("http://127.0.0.1:{api_port}"),
        workdir: dir.path().to_path_buf(),
    };
    rt.wait_ready(Duration::from_secs(60)).await?;
    // Every event makes the log reaction and the tracing layer write.
    for i in 0..20 {
        post_reading(source_port, &format!("s{i}"), 80 + i).await?;
    }
    wait_for("20 hot sensors", Duration::from_secs(20), || async {
        let (_, body) = rt.get("/api/v1/queries/hot/results").await?;
        Ok((body["data"].as_array().map(Vec::len) == Some(20)).then_some(()))
    })
    .await?;
    assert!(
        rt.child.try_wait()?.is_none(),
        "the runtime died with its reader"
    );
    let status = rt.signal_and_wait(Signal::SIGINT, Duration::from_secs(15))?;
    assert_eq!(status.code(), Some(0), "{status}");
    Ok(())
}

/// A one-shot HTTP receiver: the first request's head and body, answered 200.
async fn receiver() -> Result<(u16, tokio::task::JoinHandle<Result<String>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await?;
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        // Read until the body named by content-length is in.
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await?;
        Ok(String::from_utf8_lossy(&got).to_string())
    });
    Ok((port, task))
}

fn http_reaction_config(api_port: u16, source_port: u16, target: u16) -> String {
    format!(
        r#"host: 127.0.0.1
port: {api_port}
sources:
  - {{kind: http, id: sensors, host: 127.0.0.1, port: {source_port}}}
queries:
  - {{id: hot, query: "{HOT_QUERY}", sources: [{{sourceId: sensors}}]}}
reactions:
  - {{kind: http, id: out, queries: [hot], baseUrl: "http://127.0.0.1:{target}", token: "t0ken"}}
"#
    )
}

/// Starts the runtime with only the environment a worker gives it: the egress proxy settings.
async fn start_guarded(
    dir: &TempDir,
    config: &str,
    api_port: u16,
    policy: &str,
) -> Result<Runtime> {
    let proxy = format!("127.0.0.1:{}", free_port());
    let config_path = dir.write("config.yaml", config);
    let stdout = std::fs::File::create(dir.path().join("stdout.log"))?;
    let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "info")
        .env("DRAAS_EGRESS", policy)
        .env("DRAAS_EGRESS_PROXY", &proxy)
        .env("HTTP_PROXY", format!("http://{proxy}"))
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("spawn draas-runtime")?;
    let mut rt = Runtime {
        child,
        api: format!("http://127.0.0.1:{api_port}"),
        workdir: dir.path().to_path_buf(),
    };
    rt.wait_ready(Duration::from_secs(60)).await?;
    Ok(rt)
}

#[tokio::test]
async fn the_egress_proxy_enforces_the_policy_when_the_request_is_made() -> Result<()> {
    // Denied: the default policy refuses loopback, so the receiver is never reached.
    let dir = TempDir::new("egress-deny");
    let (api_port, source_port) = (free_port(), free_port());
    let (target, mut untouched) = receiver().await?;
    let rt = start_guarded(
        &dir,
        &http_reaction_config(api_port, source_port, target),
        api_port,
        "deny-local",
    )
    .await?;
    post_reading(source_port, "s1", 90).await?;
    wait_for(
        "the refusal in the log",
        Duration::from_secs(20),
        || async { Ok(rt.logs().contains("egress refused").then_some(())) },
    )
    .await?;
    assert!(rt.logs().contains("127.0.0.1 is loopback"), "{}", rt.logs());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut untouched)
            .await
            .is_err(),
        "a denied destination was reached"
    );
    drop(rt);

    // Allowed by a CIDR list that names it: delivered, through the proxy.
    let dir = TempDir::new("egress-allow");
    let (api_port, source_port) = (free_port(), free_port());
    let (target, delivered) = receiver().await?;
    let _rt = start_guarded(
        &dir,
        &http_reaction_config(api_port, source_port, target),
        api_port,
        "127.0.0.1/32",
    )
    .await?;
    post_reading(source_port, "s2", 91).await?;
    let request = tokio::time::timeout(Duration::from_secs(20), delivered).await???;
    assert!(request.starts_with("POST /changes/hot "), "{request}");
    assert!(request.contains("s2"), "{request}");
    Ok(())
}

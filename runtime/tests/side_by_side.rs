//! Two instances with the same component ids run side by side in different working
//! directories (on-disk state stays under each one), with `--port` overriding the config.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Runtime, TempDir, free_port, pipeline_config, post_event, sensor_reading};
use nix::sys::signal::Signal;
use serde_json::json;

#[tokio::test]
async fn two_instances_in_different_working_directories() -> Result<()> {
    let (dir_a, dir_b) = (TempDir::new("side-a"), TempDir::new("side-b"));
    let mut runtimes = Vec::new();
    for dir in [&dir_a, &dir_b] {
        let (config_port, api_port, source_port) = (free_port(), free_port(), free_port());
        let config = pipeline_config(config_port, source_port).replace(
            "logLevel: info\n",
            "logLevel: info\nstateStore:\n  kind: redb\n  path: data/state.redb\n",
        );
        let port_arg = api_port.to_string();
        let mut rt = Runtime::spawn(dir.path(), &config, &["--port", &port_arg])?;
        rt.api = format!("http://127.0.0.1:{api_port}");
        rt.wait_ready(Duration::from_secs(60)).await?;
        runtimes.push((rt, source_port));
    }

    // Each instance sees only its own events.
    for (i, (_, source_port)) in runtimes.iter().enumerate() {
        let id = format!("only-{i}");
        post_event(*source_port, sensor_reading(&id, 100 + i as i64)).await?;
    }
    for (i, (rt, _)) in runtimes.iter().enumerate() {
        let expected = json!([{"id": format!("only-{i}"), "temperature": 100 + i}]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = rt.get("/api/v1/queries/hot/results").await?;
            if body["data"] == expected {
                break;
            }
            assert!(Instant::now() < deadline, "instance {i}: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    for dir in [&dir_a, &dir_b] {
        assert!(
            dir.path().join("data/state.redb").exists(),
            "state lives under the working directory"
        );
    }
    for (mut rt, _) in runtimes {
        let status = rt.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
        assert_eq!(status.code(), Some(0), "{}", rt.logs());
    }
    Ok(())
}

//! Docker workers ask their image what it runs: the kinds they advertise, an image that cannot
//! answer or is missing, and no probe container left behind.

use super::*;

/// What `draas-runtime capabilities` prints, the binary the test image is built from.
fn runtime_kinds() -> anyhow::Result<draas_protocol::capabilities::WorkloadKinds> {
    let out = Command::new(runtime_binary())
        .arg("capabilities")
        .output()?;
    assert!(out.status.success(), "{out:?}");
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The test image with an entrypoint that does not know `capabilities` (as drasi-server's
/// does not): `draas-runtime validate capabilities` is a usage error.
fn mute_image() -> &'static str {
    const MUTE: &str = "draas-runtime:test-mute";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dockerfile = format!(
            "FROM {}\nENTRYPOINT [\"/draas-runtime\", \"validate\"]\n",
            image()
        );
        let mut build = Command::new("docker")
            .args(["build", "-q", "-t", MUTE, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("docker build");
        use std::io::Write;
        build
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        assert!(build.wait().unwrap().success(), "building {MUTE} failed");
    });
    MUTE
}

/// Docker workers ask their image what it runs (a throwaway container with `capabilities`)
/// and advertise the answer; an image that does not answer, or is not there, makes a worker
/// that advertises nothing and serves all the same. No question's container is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_worker_advertises_what_its_image_runs() -> anyhow::Result<()> {
    let sys = DockerSystem::start().await?;
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&sys.redis.url).await?,
        sys.keys.clone(),
    );
    let advertised = store.advertisements(Platform::Docker).await?;
    assert_eq!(advertised.len(), 1, "{advertised:?}");
    assert_eq!(advertised[0].kinds, Some(runtime_kinds()?));

    // Two more workers: one whose image does not know `capabilities`, one whose image is
    // not present.
    let mute = mute_image();
    let mut others = Vec::new();
    for image in [mute, "draas-no-such-image:nope"] {
        others.push(
            WorkerNode::start_tuned(
                &sys.redis.url,
                &sys.keys,
                runtime_binary(),
                scratch("docker-worker"),
                |c| {
                    c.platform = Platform::Docker;
                    c.docker.image = image.to_owned();
                    c.stop_instances_on_exit = false;
                },
            )
            .await?,
        );
    }
    let all = wait_until(|| async {
        let all = store.advertisements(Platform::Docker).await.ok()?;
        (all.len() == 3).then_some(all)
    })
    .await?;
    let silent = all.iter().filter(|a| a.kinds.is_none()).count();
    assert_eq!(silent, 2, "{all:?}");

    let probes = format!("label=io.draas.capabilities-probe={}", sys.keys.prefix());
    let (listed, left) = docker(&["ps", "-aq", "--filter", &probes]);
    assert!(listed, "docker ps failed");
    assert!(left.is_empty(), "capabilities containers left: {left}");
    for worker in others {
        worker.shutdown().await;
    }
    Ok(())
}

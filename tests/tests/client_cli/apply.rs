//! `draas apply` and `draas diff` of a directory of three instances: all created and
//! running; a second apply changes nothing; one config changed (configured, applied to the
//! running instance); one set to stopped; one file removed and pruned (refused without
//! `--yes` when not on a terminal); `get -o yaml` applied back is unchanged; a stale
//! `If-Match` is a 412.

use serde_json::{Value, json};

use super::common::scratch;
use super::{Env, document, write};

/// Generations of the instances, by name.
async fn generations(env: &Env, names: &[&str]) -> Vec<u64> {
    let mut out = Vec::new();
    for name in names {
        out.push(env.instance(name).await["generation"].as_u64().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_a_directory_then_change_stop_and_prune() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let dir = scratch("cli-apply");
    let path = dir.to_string_lossy().into_owned();
    write(&dir.join("a.yaml"), &document("a", "app: x", "", 75));
    write(&dir.join("b.yaml"), &document("b", "app: x", "", 75));
    // c's config lives in its own file, which is then no document of the directory.
    let c = document("c", "app: x", "", 75);
    let (head, config) = c.split_once("  config:\n").unwrap();
    write(
        &dir.join("c.yaml"),
        &format!("{head}  configFile: ./c-config.yaml\n"),
    );
    let config: String = config.lines().map(|l| format!("{}\n", &l[4..])).collect();
    write(&dir.join("c-config.yaml"), &config);
    // An instance outside the selector, which prune must leave alone.
    let outside = write(
        &dir.join("outside.yaml.off"),
        &document("outside", "app: y", "", 75),
    );
    env.expect(0, &["apply", "-f", &outside, "--wait"]).await;

    // diff before anything exists: changes (exit 1); the plan names the creates.
    let out = env.expect(1, &["diff", "-f", &path]).await;
    assert!(out.stdout.contains("instance/a: create, start"), "{out:?}");
    assert!(out.stdout.contains("+++ instance/c ("), "{out:?}");

    let out = env.expect(0, &["apply", "-f", &path, "--wait"]).await;
    for name in ["a", "b", "c"] {
        assert!(
            out.stdout.contains(&format!("instance/{name} created")),
            "{out:?}"
        );
        assert!(
            out.stdout.contains(&format!("instance/{name} started")),
            "{out:?}"
        );
        assert_eq!(env.instance(name).await["state"], "running");
    }
    let c_view = env.instance("c").await;
    assert_eq!(c_view["config"]["sources"][0]["id"], "readings", "{c_view}");

    // Again: nothing to do, said so; generations unchanged; diff exits 0.
    let before = generations(&env, &["a", "b", "c"]).await;
    assert_no_changes(&env, &path).await;
    assert_eq!(generations(&env, &["a", "b", "c"]).await, before);
    env.expect(0, &["diff", "-f", &path]).await;

    // a's query changes: configured, applied to the running instance.
    write(&dir.join("a.yaml"), &document("a", "app: x", "", 90));
    let out = env.expect(1, &["diff", "-f", &path]).await;
    assert!(out.stdout.contains("instance/a: configure"), "{out:?}");
    assert!(out.stdout.contains("temperature > 90"), "{out:?}");
    assert!(out.stdout.contains("instance/b: unchanged"), "{out:?}");
    let out = env.expect(0, &["apply", "-f", &path, "--wait"]).await;
    assert!(out.stdout.contains("instance/a configured"), "{out:?}");
    assert!(out.stdout.contains("instance/a reconfigured"), "{out:?}");
    assert!(out.stdout.contains("instance/b unchanged"), "{out:?}");
    let a = env.instance("a").await;
    assert_eq!(a["state"], "running", "{a}");
    assert_eq!(a["generation"].as_u64(), Some(before[0] + 1), "{a}");
    assert!(
        a["config"]["queries"][0]["query"]
            .as_str()
            .unwrap()
            .contains("> 90"),
        "{a}"
    );

    // b is to be stopped.
    write(
        &dir.join("b.yaml"),
        &document("b", "app: x", "  desiredState: stopped\n", 75),
    );
    let out = env.expect(0, &["apply", "-f", &path, "--wait"]).await;
    assert!(
        out.stdout.contains("instance/b: configure, stop"),
        "{out:?}"
    );
    assert!(out.stdout.contains("instance/b stopped"), "{out:?}");
    let b = env.instance("b").await;
    assert_eq!(
        (b["state"].as_str(), b["desiredState"].as_str()),
        (Some("stopped"), Some("stopped")),
        "{b}"
    );

    // c's files are removed: prune deletes it, only with --yes when not on a terminal. (Its
    // config file left alone would be read as a document, and refused as one.)
    std::fs::remove_file(dir.join("c.yaml"))?;
    let out = env.expect(2, &["diff", "-f", &path]).await;
    assert!(
        out.stderr.contains("c-config.yaml: apiVersion: missing"),
        "{out:?}"
    );
    std::fs::remove_file(dir.join("c-config.yaml"))?;
    let out = env
        .expect(2, &["apply", "-f", &path, "--prune", "-l", "app=x"])
        .await;
    assert!(out.stdout.contains("instance/c: delete"), "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(
        env.instance("c").await["state"],
        "running",
        "nothing changed"
    );
    let out = env
        .expect(
            0,
            &["apply", "-f", &path, "--prune", "-l", "app=x", "--yes"],
        )
        .await;
    assert!(out.stdout.contains("instance/c deleted"), "{out:?}");
    assert_eq!(env.get("/api/v1/instances/c").await.0, 404);
    assert_eq!(
        env.instance("outside").await["state"],
        "running",
        "outside the selector"
    );
    let before = generations(&env, &["a", "b"]).await;
    assert_no_changes(&env, &path).await;
    let out = env
        .expect(0, &["apply", "-f", &path, "--prune", "-l", "app=x"])
        .await;
    assert!(out.stdout.contains("No changes"), "{out:?}");
    assert_eq!(generations(&env, &["a", "b"]).await, before);

    // get -o yaml, applied back: unchanged.
    let yaml = env.expect(0, &["get", "a", "-o", "yaml"]).await.stdout;
    let back = write(&dir.join("roundtrip.yml.txt"), &yaml);
    let out = env.expect(0, &["apply", "-f", &back]).await;
    assert!(
        out.stdout.contains("instance/a unchanged") && out.stdout.contains("No changes"),
        "{out:?}"
    );
    assert_eq!(generations(&env, &["a"]).await, before[..1]);

    stale_write(&env, before[0]).await?;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

async fn assert_no_changes(env: &Env, path: &str) {
    let out = env.expect(0, &["apply", "-f", path]).await;
    assert!(out.stdout.contains("No changes"), "{out:?}");
    for line in out.stdout.lines().filter(|l| l.starts_with("instance/")) {
        assert!(line.ends_with("unchanged"), "{line} in {out:?}");
    }
}

/// A write with an old generation is a 412 naming the current one (the CLI's own stale
/// write, an `edit` racing another apply, is in the walk-through: exit 4).
async fn stale_write(env: &Env, generation: u64) -> anyhow::Result<()> {
    let put = |if_match: String, threshold: u32| {
        let doc: Value = serde_yaml::from_str(&document("a", "app: x", "", threshold)).unwrap();
        env.http
            .put(format!("{}/api/v1/instances/a", env.api.url))
            .bearer_auth(&env.token)
            .header("if-match", if_match)
            .json(&doc)
            .send()
    };
    let resp = put(format!("\"{generation}\""), 91).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["etag"],
        format!("\"{}\"", generation + 1).as_str()
    );
    let resp = put(format!("\"{generation}\""), 92).await?;
    assert_eq!(resp.status(), 412);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "precondition_failed", "{body}");
    assert_eq!(
        body["error"]["details"]["generation"],
        json!(generation + 1),
        "{body}"
    );

    Ok(())
}

//! The walk-through's `draas instances edit` (a change, no change, and a change made by
//! someone else while the editor was open: 412, exit 4) and the exit codes of errors.

use std::path::Path;

use draas_protocol::auth::Scope;

use super::common::draas_binary;
use super::{Env, document, write};

/// `edit`: a change through $EDITOR, an edit that changes nothing, and a change made by
/// someone else while the editor was open (If-Match: 412, exit 4).
pub async fn edit(env: &Env, dir: &Path) -> anyhow::Result<()> {
    let generation = env.instance("sensors").await["generation"]
        .as_u64()
        .unwrap();
    let sed = [(
        "EDITOR",
        "sed -i s/description:.first/description:\\ second/",
    )];
    let out = env
        .run_as(Some(&env.token), &["instances", "edit", "sensors"], &sed)
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("instance/sensors edited"), "{out:?}");
    let inst = env.instance("sensors").await;
    assert_eq!(inst["description"], "second", "{inst}");
    assert_eq!(inst["generation"].as_u64(), Some(generation + 1), "{inst}");

    let out = env
        .run_as(
            Some(&env.token),
            &["instances", "edit", "sensors"],
            &[("EDITOR", "true")],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("Edit cancelled, no changes made."),
        "{out:?}"
    );

    // The "editor" first applies another change (as a colleague would), then edits.
    let other = write(
        &dir.join("other.yaml"),
        &document(
            "sensors",
            "app: walk",
            "  desiredState: stopped\n  description: theirs\n",
            75,
        ),
    );
    let script = write(
        &dir.join("editor.sh"),
        &format!(
            "#!/bin/sh\n{} apply -f {other} --api {} >/dev/null || exit 9\nsed -i 's/second/mine/' \"$1\"\n",
            draas_binary().display(),
            env.api.url
        ),
    );
    let editor = format!("sh {script}");
    let out = env
        .run_as(
            Some(&env.token),
            &["instances", "edit", "sensors"],
            &[("EDITOR", &editor)],
        )
        .await;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("precondition_failed") && out.stderr.contains("HTTP 412"),
        "{out:?}"
    );
    assert_eq!(env.instance("sensors").await["description"], "theirs");
    Ok(())
}

/// 3 not found, 5 unauthorised and forbidden, 6 unreachable, 2 usage.
pub async fn exit_codes(env: &Env) {
    let out = env.expect(3, &["instances", "get", "nosuch"]).await;
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not_found"),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
    let out = env
        .run_as(Some("draas_not-a-token"), &["instances", "list"], &[])
        .await;
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr.contains("unauthorized") && !out.stderr.contains("draas_not-a-token"),
        "{out:?}"
    );
    assert_eq!(env.run_as(None, &["instances", "list"], &[]).await.code, 5);
    let reader = env
        .store
        .create_token(
            "default",
            [Scope::InstancesRead].into_iter().collect(),
            None,
            None,
        )
        .await
        .unwrap()
        .secret;
    let out = env
        .run_as(Some(&reader), &["instances", "start", "sensors"], &[])
        .await;
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("insufficient_scope"), "{out:?}");
    let out = env
        .run(&["instances", "list", "--api", "http://127.0.0.1:1"])
        .await;
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("cannot reach the API"), "{out:?}");
    env.expect(2, &["instances", "frobnicate"]).await;
    env.expect(2, &["instances", "list", "-l", "novalue"]).await;
    env.expect(2, &["apply", "-f", "x.yaml", "--prune"]).await;
}

//! Compiles the gRPC kinds' own wire contracts for `tests/grpc.rs`: the `.proto` files that
//! ship inside the drasi-source-grpc and drasi-reaction-grpc crates draas-runtime builds
//! with, found through `cargo metadata`, so the tests speak exactly what the plugins speak.
//! Both declare package `drasi.v1` with clashing message names, so each is generated into a
//! directory of its own under `OUT_DIR` (`source/drasi.v1.rs`, `reaction/drasi.v1.rs`).
//! Needs `protoc` (Debian: protobuf-compiler and libprotobuf-dev).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate's directory of each plugin, from the workspace's resolved dependency graph.
fn crate_dir(metadata: &serde_json::Value, name: &str) -> PathBuf {
    let packages = metadata["packages"]
        .as_array()
        .expect("cargo metadata packages");
    let manifest = packages
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("{name} is not in the workspace's dependency graph"));
    Path::new(manifest)
        .parent()
        .expect("a manifest has a directory")
        .to_path_buf()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let run = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(&manifest_dir);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output()
    };
    // Offline first: the build that runs this script has fetched every package already.
    let out = match run(true)? {
        out if out.status.success() => out,
        _ => run(false)?,
    };
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    for (name, dir, protos) in [
        (
            "drasi-source-grpc",
            "source",
            &["drasi/v1/source.proto", "drasi/v1/common.proto"][..],
        ),
        (
            "drasi-reaction-grpc",
            "reaction",
            &["drasi/v1/reaction.proto"][..],
        ),
    ] {
        let include = crate_dir(&metadata, name).join("proto");
        let files: Vec<PathBuf> = protos.iter().map(|p| include.join(p)).collect();
        for file in &files {
            println!("cargo:rerun-if-changed={}", file.display());
        }
        let target = out_dir.join(dir);
        std::fs::create_dir_all(&target)?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .out_dir(&target)
            .compile_protos(&files, &[include])?;
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    Ok(())
}

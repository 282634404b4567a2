#!/usr/bin/env bash
# Runs every test of the workspace: unit, golden, and end-to-end with real redis-server,
# real processes and real HTTP, after validating deploy/kubernetes offline. Installs
# redis-server from apt and kubernetes-validate from PyPI when they are missing.
# Arguments go to `cargo test`: CI passes `--no-fail-fast`, so every test binary runs even when
# one fails (cargo still exits non-zero if any test failed).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# The Kubernetes manifests, offline (schemas bundled with kubernetes-validate; no cluster).
# kmock: the in-memory Kubernetes API the kubernetes-platform contract tests run against.
if ! command -v kubernetes-validate >/dev/null 2>&1 || ! python3 -c 'import kmock' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kmock==0.8 kubernetes-validate==1.37.0
fi
bash deploy/kubernetes/validate.sh
cargo test --workspace --locked "$@"

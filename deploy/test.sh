#!/usr/bin/env bash
# Runs every test of the workspace: unit, golden, and end-to-end with real redis-server,
# real processes and real HTTP. Installs redis-server from apt when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# One command to run DRaaS locally: installs redis-server when missing, builds the workspace,
# then runs `draas up` (a private Redis, the API on 127.0.0.1:8080 and a process worker).
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --workspace --locked
exec target/debug/draas up "$@"

#!/usr/bin/env bash
# One command to run DRaaS locally: installs redis-server, and the OpenSSL headers,
# pkg-config, protoc, a C++ compiler and libclang the build needs, when missing, builds the
# workspace, puts `draas` and `draas-runtime` on PATH (symlinks to target/debug/ in
# /usr/local/bin, or in ~/.local/bin when /usr/local/bin is not writable), then runs
# `draas up` (a private Redis, the API on 127.0.0.1:8080 and a process worker). Ctrl-C stops
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server redis-tools)
# draas-runtime's PostgreSQL crates link the system's OpenSSL, found through pkg-config.
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
# draas-runtime's gRPC kinds generate their code with protoc (and its well-known types).
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/struct.proto ] || need+=(libprotobuf-dev)
# persistIndex (drasi-index-rocksdb) compiles RocksDB's C++ (librocksdb-sys, a C++ compiler)
# and generates its bindings with bindgen, which loads libclang.
command -v c++ >/dev/null 2>&1 || need+=(g++)
compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --workspace --locked

bin=/usr/local/bin
if [ ! -w "$bin" ]; then
  bin="$HOME/.local/bin"
  mkdir -p "$bin"
fi
for exe in draas draas-runtime; do
  ln -sf "$PWD/target/debug/$exe" "$bin/$exe"
done
echo "up.sh: draas and draas-runtime are $PWD/target/debug/{draas,draas-runtime}, linked into $bin"
case ":$PATH:" in
  *":$bin:"*) ;;
  *) echo "up.sh: $bin is not on your PATH; add it with: export PATH=\"$bin:\$PATH\"" ;;
esac
exec target/debug/draas up "$@"

#!/usr/bin/env bash
# Builds the official drasi-server and the dynamic plugins DRaaS checks it with, from source,
# into OUT_DIR:
#
#   OUT_DIR/bin/drasi-server                        drasi-server 0.2.2 (git tag 0.2.2, commit
#                                                    af9a48fb2208e603b1b5eafb00b78d1c65e5087f;
#                                                    drasi-lib 0.9.0, drasi-host-sdk 0.11.0,
#                                                    drasi-plugin-sdk 0.11.0, as its Cargo.lock pins)
#   OUT_DIR/plugins/libdrasi_source_http.so         drasi-source-http 0.2.9   (crates.io)
#   OUT_DIR/plugins/libdrasi_source_mock.so         drasi-source-mock 0.2.8   (crates.io)
#   OUT_DIR/plugins/libdrasi_reaction_log.so        drasi-reaction-log 0.2.6  (crates.io)
#   OUT_DIR/VERSIONS                                what was built, from the lockfiles
#
# The plugins are the newest releases built against drasi-lib 0.9.0 and drasi-plugin-sdk 0.11.0,
# the versions drasi-server 0.2.2 pins: drasi-server's loader refuses a plugin whose FFI
# version differs in major.minor (plugin-sdk 0.11.0 says FFI 0.13.0, 0.11.3 already 0.14.0).
# They are built with their `dynamic-plugin` feature (cdylib exporting drasi_plugin_init and
# drasi_plugin_metadata), in one cargo project whose lockfile starts as drasi-server's, so every
# crate the two share has the version the server was built with.
#
#   deploy/official/build-drasi-server.sh OUT_DIR
#
# drasi-server is not published on crates.io; its source is DRASI_SERVER_SRC (a tree of tag
# 0.2.2, e.g. `git archive 0.2.2` of a clone) or, without it, a shallow clone of
# https://github.com/drasi-project/drasi-server at tag 0.2.2. Either is checked against the
# Cargo.lock of 0.2.2 (sha256 below) before anything is built.
#
# Environment: DRASI_BUILD_DIR (sources and the plugin project; default OUT_DIR/.build),
# CARGO_TARGET_DIR (default DRASI_BUILD_DIR/target), DRASI_PROFILE (`debug`, the default and
# the faster build, or `release`). Idempotent: a second run rebuilds nothing that is current.
# Installs the Debian packages the build needs when missing (libjq-dev, libonig-dev,
# libssl-dev, pkg-config, g++, libclang-dev); drasi-server's `jq` middleware links the system
# libjq, OpenSSL is Debian's (OPENSSL_NO_VENDOR=1), RocksDB's C++ is compiled by
# librocksdb-sys (the longest part of a cold build).
set -euo pipefail

out=${1:?usage: $0 OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
build=${DRASI_BUILD_DIR:-$out/.build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$build/target}
profile=${DRASI_PROFILE:-debug}
case "$profile" in
  debug) profile_flag=() ;;
  release) profile_flag=(--release) ;;
  *) echo "DRASI_PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac

server_version=0.2.2
server_commit=af9a48fb2208e603b1b5eafb00b78d1c65e5087f
server_lock_sha256=3537a79434b8016017c4cdbb84b1cf9ae54be58faef8d65c25a415f1a7731e5c
plugins=(
  "drasi-source-http 0.2.9"
  "drasi-source-mock 0.2.8"
  "drasi-reaction-log 0.2.6"
)
# The plugins' dependencies that drasi-server's Cargo.lock lacks, pinned to the versions checked.
pins=(
  "drasi-source-mapping 0.1.5"
  "handlebars 5.1.2"
  "quick-xml 0.37.5"
  "sha1 0.10.7"
)

# Build prerequisites (Debian).
need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
[ -f /usr/include/jq.h ] || need+=(libjq-dev)
[ -f /usr/include/oniguruma.h ] || need+=(libonig-dev)
command -v c++ >/dev/null 2>&1 || need+=(g++)
compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || need+=(libclang-dev)
command -v git >/dev/null 2>&1 || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
jq_lib=$(dirname "$(find /usr/lib -name 'libjq.so' -print -quit)")
export JQ_LIB_DIR=$jq_lib OPENSSL_NO_VENDOR=1

# drasi-server's source, checked.
src=$build/drasi-server-$server_version
if [ ! -f "$src/Cargo.lock" ]; then
  rm -rf "$src.tmp"
  if [ -n "${DRASI_SERVER_SRC:-}" ]; then
    cp -a "$DRASI_SERVER_SRC" "$src.tmp"
  else
    git clone --quiet --depth 1 --branch "$server_version" \
      https://github.com/drasi-project/drasi-server "$src.tmp"
    [ "$(git -C "$src.tmp" rev-parse HEAD)" = "$server_commit" ] ||
      { echo "tag $server_version is not commit $server_commit" >&2; exit 1; }
  fi
  mv "$src.tmp" "$src"
fi
echo "$server_lock_sha256  $src/Cargo.lock" | sha256sum --check --quiet ||
  { echo "$src is not drasi-server $server_version (its Cargo.lock differs)" >&2; exit 1; }
grep -q "^version = \"$server_version\"" "$src/Cargo.toml" ||
  { echo "$src/Cargo.toml is not version $server_version" >&2; exit 1; }

echo "build-drasi-server: drasi-server $server_version ($profile) in $CARGO_TARGET_DIR" >&2
(cd "$src" && cargo build --locked "${profile_flag[@]}" --bin drasi-server)

# The plugins: one project depending on each with `dynamic-plugin` (cargo builds a
# dependency's cdylib alongside its rlib), its lockfile seeded with drasi-server's; what that
# lacks is pinned above, so the resolution is the one checked.
proj=$build/plugins
mkdir -p "$proj"
{
  printf '[package]\nname = "drasi-official-plugins"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
  printf '[lib]\npath = "lib.rs"\n\n[dependencies]\n'
  for p in "${plugins[@]}"; do
    set -- $p
    printf '%s = { version = "=%s", features = ["dynamic-plugin"] }\n' "$1" "$2"
  done
  for p in "${pins[@]}"; do
    set -- $p
    printf '%s = "=%s"\n' "$1" "$2"
  done
} > "$proj/Cargo.toml.new"
cmp -s "$proj/Cargo.toml.new" "$proj/Cargo.toml" || mv "$proj/Cargo.toml.new" "$proj/Cargo.toml"
rm -f "$proj/Cargo.toml.new"
[ -f "$proj/lib.rs" ] || echo '//! Empty: the plugins are this project'"'"'s dependencies.' > "$proj/lib.rs"
[ -f "$proj/Cargo.lock" ] || cp "$src/Cargo.lock" "$proj/Cargo.lock"
# The same toolchain as the server (rust-toolchain.toml: 1.95.0).
cp "$src/rust-toolchain.toml" "$proj/rust-toolchain.toml"
echo "build-drasi-server: plugins ($profile)" >&2
(cd "$proj" && cargo build "${profile_flag[@]}")

# Install.
mkdir -p "$out/bin" "$out/plugins"
# Installed copies without debug information (a debug build's binary is ~600 MB with it).
strip_debug() { command -v strip >/dev/null 2>&1 && strip --strip-debug "$1" || true; }
install -m 0755 "$CARGO_TARGET_DIR/$profile/drasi-server" "$out/bin/drasi-server"
strip_debug "$out/bin/drasi-server"
for p in "${plugins[@]}"; do
  set -- $p
  lib=lib${1//-/_}
  # The cdylib of a registry dependency carries cargo's metadata hash in its name.
  built=$(ls -t "$CARGO_TARGET_DIR/$profile/deps/$lib"-*.so 2>/dev/null | head -1)
  [ -n "$built" ] || { echo "no $lib-*.so was built" >&2; exit 1; }
  install -m 0755 "$built" "$out/plugins/$lib.so"
  strip_debug "$out/plugins/$lib.so"
done

locked() { # name lockfile → version
  awk -v n="$1" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' "$2"
}
{
  echo "drasi-server $server_version (commit $server_commit, $profile build, $(cd "$src" && rustc --version))"
  for c in drasi-lib drasi-core drasi-host-sdk drasi-plugin-sdk drasi-ffi-primitives; do
    echo "  $c $(locked "$c" "$src/Cargo.lock")"
  done
  echo "plugins (one lockfile, seeded from drasi-server's):"
  for p in "${plugins[@]}"; do
    set -- $p
    echo "  $1 $(locked "$1" "$proj/Cargo.lock") -> plugins/lib${1//-/_}.so"
  done
  for c in drasi-lib drasi-core drasi-plugin-sdk drasi-ffi-primitives; do
    echo "  $c $(locked "$c" "$proj/Cargo.lock")"
  done
} > "$out/VERSIONS"
cat "$out/VERSIONS"
echo "build-drasi-server: done; run a worker with" \
  "--runtime $out/bin/drasi-server --runtime-arg=--plugins-dir --runtime-arg=$out/plugins" \
  "--runtime-arg=--skip-verification" >&2

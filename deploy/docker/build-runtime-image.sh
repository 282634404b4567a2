#!/usr/bin/env bash
# Builds the draas-runtime container image without a registry: a minimal root filesystem
# holding the binary and exactly the shared libraries it links (`ldd`: libc, libm, libgcc_s,
# libstdc++ for RocksDB, and libssl3 and libcrypto3 for the PostgreSQL crates) plus the host's
# CA bundle,
# imported with `docker import`.
#
#   deploy/docker/build-runtime-image.sh [BINARY] [TAG]
#
# BINARY defaults to target/debug/draas-runtime (build it first: cargo build -p draas-runtime),
# TAG to draas-runtime:local. Uses DOCKER_HOST like the docker CLI does.
set -euo pipefail
bin=${1:-target/debug/draas-runtime}
tag=${2:-draas-runtime:local}
[ -x "$bin" ] || { echo "no executable at $bin; run: cargo build -p draas-runtime" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/app/config" "$root/app/data" "$root/tmp" "$root/etc"
cp "$bin" "$root/draas-runtime"
strip --strip-debug "$root/draas-runtime" 2>/dev/null || true
# The dynamic loader and every library the binary links, at the same paths.
for lib in $(ldd "$bin" | grep -o '/[^ )]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' > "$root/etc/passwd"
# The CA bundle, where OpenSSL (libssl3, linked by the PostgreSQL crates) looks for it, so
# `sslMode: require` and `ssl: true` can verify servers.
ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$ca" ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp -L "$ca" "$root$ca"
else
  echo "warning: no $ca here (apt-get install ca-certificates); TLS to PostgreSQL cannot verify servers in the image" >&2
fi

tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/draas-runtime"]' \
  --change 'CMD ["--config", "/app/config/server.yaml"]' \
  --change 'WORKDIR /app' \
  --change 'EXPOSE 8080' \
  - "$tag-rootfs" >/dev/null
# `docker import` cannot set STOPSIGNAL; one classic-builder step adds it (drasi-server and
# draas-runtime stop gracefully on SIGINT). No registry is involved: FROM names a local image.
printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$tag-rootfs" | DOCKER_BUILDKIT=0 docker build -q -t "$tag" - >/dev/null
docker rmi "$tag-rootfs" >/dev/null
echo "built $tag"

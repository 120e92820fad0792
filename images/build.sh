#!/usr/bin/env bash
# Builds the aefm-stress container image without pulling anything:
#   1. cargo build --release of aefm-stress (honours CARGO_TARGET_DIR),
#   2. assembles images/rootfs/: aefm-stress, iperf3 and every shared library `ldd` lists for them
#      (with the dynamic loader), an empty /tmp (iperf3 creates its buffer file there),
#   3. docker build -t ${IMAGE:-aefm-stress:dev} images/  (Dockerfile: FROM scratch, COPY rootfs/ /).
# Needs: cargo, docker, iperf3 installed on the host (Debian: apt-get install -y iperf3).
# Usage: images/build.sh [--rootfs-only]      env: IMAGE (tag), IPERF3 (path to iperf3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
image="${IMAGE:-aefm-stress:dev}"
target="${CARGO_TARGET_DIR:-$repo/target}"

(cd "$repo" && cargo build --release -p aefm-interference --bin aefm-stress)
stress="$target/release/aefm-stress"
iperf3="${IPERF3:-$(command -v iperf3 || true)}"
[ -x "$stress" ] || { echo "build.sh: $stress missing after cargo build" >&2; exit 1; }
[ -n "$iperf3" ] && [ -x "$iperf3" ] || { echo "build.sh: iperf3 not found (apt-get install -y iperf3)" >&2; exit 1; }

rootfs="$here/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/bin" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$stress" "$rootfs/usr/local/bin/aefm-stress"
strip "$rootfs/usr/local/bin/aefm-stress" 2>/dev/null || true
install -m 0755 "$iperf3" "$rootfs/usr/bin/iperf3"

# Shared libraries (resolved paths, copied under the path the loader looks for) and the loader.
copy_lib() {
  local src="$1" dst="$2"
  mkdir -p "$rootfs$(dirname "$dst")"
  cp -L "$src" "$rootfs$dst"
}
for bin in "$stress" "$iperf3"; do
  ldd "$bin" | while read -r a b c _; do
    if [ "$b" = "=>" ] && [ -n "$c" ] && [ -e "$c" ]; then
      copy_lib "$c" "$c"                                   # libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1
    elif [ -e "$a" ]; then
      copy_lib "$a" "$a"                                   # /lib64/ld-linux-x86-64.so.2 (loader)
    fi
  done
done
# Minimal name-service files (docker bind-mounts hosts and resolv.conf over /etc at run time).
printf 'root:x:0:0:root:/:/usr/local/bin/aefm-stress\nnobody:x:65534:65534:nobody:/:/nonexistent\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

[ "${1:-}" = "--rootfs-only" ] && { echo "rootfs ready: $rootfs"; exit 0; }
docker build -t "$image" "$here"
echo "built $image ($(du -sh "$rootfs" | cut -f1) rootfs)"

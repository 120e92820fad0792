#!/usr/bin/env bash
# Builds both AEFM container images from this checkout without pulling anything:
#   aefm/aefm-stress:<version>  aefm-stress, iperf3 (and sh, sleep for the iperf3 ring's client loop)
#   aefm/aefm-load:<version>    aefm-load
# <version> is the workspace version in Cargo.toml: the tags the manager's defaults name
# (aefm::config::kubernetes::{STRESS_IMAGE, LOAD_IMAGE}).
#   1. cargo build --release of aefm-stress and aefm-load (honours CARGO_TARGET_DIR),
#   2. assembles images/rootfs/stress/ and images/rootfs/load/: each binary with every shared
#      library `ldd` lists (and the dynamic loader), an empty /tmp, minimal /etc files,
#   3. docker build -f images/Dockerfile.prebuilt --target stress|load images/rootfs/
#      (FROM scratch: COPY the rootfs, nothing else).
# Needs: cargo, docker, iperf3 on the host (Debian: apt-get install -y iperf3).
# Usage: images/build.sh [--rootfs-only | --print-tags] [stress] [load]   (default: both)
# Env:   STRESS_IMAGE, LOAD_IMAGE (tags), IPERF3 (path to iperf3), CARGO_TARGET_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$repo/target}"

# The version of [workspace.package] in Cargo.toml.
version="$(awk '/^\[/{s=($0=="[workspace.package]")} s&&/^version *=/{gsub(/[" ]/,"",$0); sub(/^version=/,"",$0); print; exit}' "$repo/Cargo.toml")"
[ -n "$version" ] || { echo "build.sh: no version in [workspace.package] of $repo/Cargo.toml" >&2; exit 1; }
stress_image="${STRESS_IMAGE:-aefm/aefm-stress:$version}"
load_image="${LOAD_IMAGE:-aefm/aefm-load:$version}"

mode=build
which=()
for a in "$@"; do
  case "$a" in
    --rootfs-only) mode=rootfs ;;
    --print-tags) mode=tags ;;
    stress|load) which+=("$a") ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $a (see --help)" >&2; exit 1 ;;
  esac
done
[ ${#which[@]} -gt 0 ] || which=(stress load)
want() { [[ " ${which[*]} " == *" $1 "* ]]; }

if [ "$mode" = tags ]; then
  want stress && echo "$stress_image"
  want load && echo "$load_image"
  exit 0
fi

bins=()
want stress && bins+=(--bin aefm-stress)
want load && bins+=(--bin aefm-load)
(cd "$repo" && cargo build --release -p aefm-interference -p aefm-loadgen "${bins[@]}")

# Copies a file under the path the loader looks for (symlinks resolved).
copy_to() {
  local root="$1" src="$2" dst="$3"
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
}
# Every shared library a binary loads, and the dynamic loader, into root.
copy_libs() {
  local root="$1" bin="$2"
  ldd "$bin" | while read -r a b c _; do
    if [ "$b" = "=>" ] && [ -n "$c" ] && [ -e "$c" ]; then
      copy_to "$root" "$c" "$c"      # libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1
    elif [ -e "$a" ]; then
      copy_to "$root" "$a" "$a"      # /lib64/ld-linux-x86-64.so.2 (loader)
    fi
  done
}
# A root with /tmp and the name-service files (docker and the kubelet mount hosts and
# resolv.conf over /etc at run time; glibc's files and dns lookups are built into libc).
new_root() {
  local root="$1" entry="$2"
  rm -rf "$root"
  mkdir -p "$root/usr/local/bin" "$root/usr/bin" "$root/bin" "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/:%s\nnobody:x:65534:65534:nobody:/:/nonexistent\n' "$entry" >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}
add_bin() {
  local root="$1" src="$2" dst="$3"
  [ -x "$src" ] || { echo "build.sh: $src missing" >&2; exit 1; }
  install -m 0755 "$src" "$root$dst"
  strip "$root$dst" 2>/dev/null || true
  copy_libs "$root" "$src"
}

# Both stage folders exist: the classic builder runs every stage up to the target.
mkdir -p "$here/rootfs/stress" "$here/rootfs/load"
if want stress; then
  iperf3="${IPERF3:-$(command -v iperf3 || true)}"
  [ -n "$iperf3" ] && [ -x "$iperf3" ] || { echo "build.sh: iperf3 not found (apt-get install -y iperf3)" >&2; exit 1; }
  root="$here/rootfs/stress"
  new_root "$root" /usr/local/bin/aefm-stress
  add_bin "$root" "$target/release/aefm-stress" /usr/local/bin/aefm-stress
  add_bin "$root" "$iperf3" /usr/bin/iperf3
  # The iperf3 ring (kind: net on Kubernetes) runs its client in a `sh -c` retry loop.
  add_bin "$root" "$(readlink -f /bin/sh)" /bin/sh
  add_bin "$root" "$(command -v sleep)" /bin/sleep
fi
if want load; then
  root="$here/rootfs/load"
  new_root "$root" /usr/local/bin/aefm-load
  add_bin "$root" "$target/release/aefm-load" /usr/local/bin/aefm-load
fi

if [ "$mode" = rootfs ]; then
  echo "rootfs ready: $here/rootfs/{${which[*]}}"
  exit 0
fi
for w in "${which[@]}"; do
  tag="$stress_image"; [ "$w" = load ] && tag="$load_image"
  docker build -q -f "$here/Dockerfile.prebuilt" --target "$w" -t "$tag" "$here/rootfs" >/dev/null
  echo "built $tag ($(du -sh "$here/rootfs/$w" | cut -f1) rootfs)"
done

#!/usr/bin/env bash
# Manager overhead benchmark: runs examples/local.yaml (or $1) with a release build and prints
#  - wall time of `aefm run`,
#  - overhead per case = (wall - sum of configured load durations) / cases, and the same net of
#    the configured warm-up and settle pauses (what the manager itself adds),
#  - peak RSS of the aefm process (it runs the load generator in process).
# Usage: bench/manager.sh [config.yaml]     (needs /usr/bin/time, python3)
#        PROFILE=debug bench/manager.sh       (use a debug build; figures are then pessimistic)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-examples/local.yaml}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet -p aefm -p aefm-interference
else
  cargo build --quiet -p aefm -p aefm-interference
fi
AEFM="$CARGO_TARGET_DIR/$PROFILE/aefm"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
/usr/bin/time -v "$AEFM" run "$CONFIG" --no-progress >"$OUT/stdout" 2>"$OUT/stderr"
DIR="$(sed -n 's/^results: //p' "$OUT/stdout")"
python3 - "$DIR" "$OUT/stderr" <<'PY'
import json, re, sys, datetime
d, err = sys.argv[1], open(sys.argv[2]).read()
def secs(s):
    m = re.fullmatch(r"(?:(\d+)m)?(?:([\d.]+)s)?(?:(\d+)ms)?", s.strip())
    if not m:
        return float(s)
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0) + int(m.group(3) or 0) / 1000
cfg = open(f"{d}/config.resolved.yaml").read()
get = lambda k: secs(re.search(rf"^{k}: (\S+)", cfg, re.M).group(1))
duration, warmup, settle = get("duration"), get("warmup"), get("settle")
rows = [json.loads(l) for l in open(f"{d}/journal.jsonl")]
cases = len(rows)
case_json = [json.load(open(f"{d}/cases/{r['case']}/case.json")) for r in rows]
interf = [k for k in re.findall(r"^  interference:\n((?:    .*\n)+)", cfg, re.M)]
wall_m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", err).group(1)
parts = [float(p) for p in wall_m.split(":")]
wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
# settle pauses happen when an interference dimension changed and a stressor runs
stress_dims = set(re.findall(r"^    (\S+):$", interf[0], re.M)) if interf else set()
settles = sum(1 for c in case_json
              if set(c["case"]["changed"]) & stress_dims
              and any(isinstance(v, dict) for _, v in c["case"]["values"]))
print(f"config: {d}/config.yaml")
print(f"cases: {cases}, configured load {duration:g}s + warm-up {warmup:g}s per case, {settles} settle pauses of {settle:g}s")
print(f"wall time of aefm run: {wall:.1f} s")
print(f"overhead per case vs configured load durations: {(wall - cases * duration) / cases:.2f} s")
print(f"manager overhead per case (net of warm-up and settle): {(wall - cases * (duration + warmup) - settles * settle) / cases:.2f} s")
print(f"peak RSS of aefm (load generator in process): {rss_kb / 1024:.1f} MiB")
PY

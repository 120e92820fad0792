#!/usr/bin/env bash
# Issue 12's benchmark, with a release build:
#  1. `aefm validate` on a sweep of 10^12 rates (refused arithmetically, never expanded): wall
#     time and peak RSS, three times;
#  2. RUNS (default 3) runs of examples/local.yaml: wall time, how many cases came out valid, and
#     per interference level the p99 at the top rate with its 95 % interval (points.csv), with
#     whether the ordering none < cpu and none < membw held in that run.
# Run it on a quiet machine: the demo measures interference, and a busy machine is interference.
# Usage: bench/validity.sh        (needs /usr/bin/time, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p aefm -p aefm-interference
AEFM="$CARGO_TARGET_DIR/release/aefm"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

printf 'name: huge\nsweep:\n  rate: {min: 1, max: 1000000000000, step: 1}\n' >"$OUT/huge.yaml"
echo "== aefm validate, 10^12 rates"
for i in 1 2 3; do
  /usr/bin/time -f "   wall %e s, peak RSS %M KiB, exit %x" "$AEFM" validate "$OUT/huge.yaml" \
    2>&1 >/dev/null | grep -v '^aefm: error' | grep -v '^Command exited' || true
done
"$AEFM" validate "$OUT/huge.yaml" 2>&1 | sed 's/^/   /' || true

for i in $(seq 1 "${RUNS:-3}"); do
  echo "== examples/local.yaml, run $i"
  /usr/bin/time -f "%e" -o "$OUT/wall" "$AEFM" run examples/local.yaml --no-progress \
    >"$OUT/stdout" 2>"$OUT/stderr" || true
  DIR="$(sed -n 's/^results: //p' "$OUT/stdout")"
  echo "   wall $(cat "$OUT/wall") s; $(grep '^cases:' "$OUT/stdout" | sed 's/^cases: *//')"
  python3 - "$DIR" <<'PY'
import csv, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f"{d}/points.csv")))
top = max(float(r["rate"]) for r in rows)
p99 = {}
for r in rows:
    if float(r["rate"]) != top:
        continue
    lo, hi = r["p99_ms_ci95_low"], r["p99_ms_ci95_high"]
    mean = r["p99_ms_mean"]
    p99[r["stress"]] = float(mean) if mean else None
    print(f"   p99 at {top:g} req/s  {r['stress']:<10} {mean or '-':>8} ms  95% CI [{lo or '-'}, {hi or '-'}]"
          f"  ({r['valid_rounds']} of {r['rounds']} rounds valid)")
none = p99.get("none")
held = [k for k, v in p99.items() if k != "none" and None not in (v, none) and v > none]
print(f"   ordering none < level held for: {', '.join(held) or 'none'}"
      f" (of {', '.join(k for k in p99 if k != 'none')})")
PY
done

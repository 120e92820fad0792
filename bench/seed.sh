#!/usr/bin/env bash
# Seeding throughput: `aefm seed` of a generated social graph (USERS users, EDGES edges; default
# 1,000 and 20,000, i.e. 1,000 registrations and 40,000 follows with `follow: both`) against
# stall-server (answers every request at once, never stalls) on 127.0.0.1. Prints the wall time
# of `aefm seed` and requests per second, in all and per phase (from its --json figures).
# Usage: bench/seed.sh                 (needs python3; taskset pins server and seeder when present)
#   env: USERS (1000), EDGES (20000), CONCURRENCY (32), PROFILE (release | debug), CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${USERS:-1000}"
EDGES="${EDGES:-20000}"
CONCURRENCY="${CONCURRENCY:-32}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet -p aefm --bin aefm -p aefm-tests --bin stall-server
else
  cargo build --quiet -p aefm --bin aefm -p aefm-tests --bin stall-server
fi
BIN="$CARGO_TARGET_DIR/$PROFILE"
OUT="$(mktemp -d)"
SRV=""
cleanup() {
  if [ -n "$SRV" ]; then kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; fi
  rm -rf "$OUT"
}
trap cleanup EXIT
PIN_SRV=() PIN_SEED=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SRV=(taskset -c 1) PIN_SEED=(taskset -c 0)
fi

# A fixed pseudo-random graph (the same every run), DeathStarBench's .nodes/.edges layout.
awk -v n="$USERS" -v m="$EDGES" 'BEGIN { srand(1); for (i = 0; i < m; i++) {
  a = int(rand() * n); b = int(rand() * n); if (a == b) b = (a + 1) % n; print a, b } }' >"$OUT/g.edges"
printf '%s' "$USERS" >"$OUT/g.nodes"

"${PIN_SRV[@]}" "$BIN/stall-server" --port 0 --stall-for 0 >"$OUT/port" 2>"$OUT/server.log" &
SRV=$!
for _ in $(seq 100); do [ -s "$OUT/port" ] && break; sleep 0.05; done
PORT="$(head -n1 "$OUT/port")"
cat >"$OUT/c.yaml" <<YAML
name: seed-bench
sweep:
  rate: [1]
seed:
  kind: social-graph
  url: http://127.0.0.1:$PORT
  graph: g.edges
  concurrency: $CONCURRENCY
YAML

T0="$(date +%s.%N)"
"${PIN_SEED[@]}" "$BIN/aefm" --log-level warn seed "$OUT/c.yaml" --json "$OUT/seed.json" >/dev/null
T1="$(date +%s.%N)"
python3 - "$OUT/seed.json" "$T0" "$T1" "$PROFILE" "$CONCURRENCY" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
total = sum(p["requests"] for p in rep["phases"])
print(f"aefm seed ({sys.argv[4]} build, concurrency {sys.argv[5]}): {rep['users']} users, "
      f"{total} requests, status {rep['status']}")
print(f"  wall time of the command: {wall:.2f} s  ({total / wall:,.0f} requests/s, "
      f"process start and graph parsing included)")
print(f"  seeding alone:            {rep['seconds']:.2f} s  ({total / rep['seconds']:,.0f} requests/s)")
for p in rep["phases"]:
    print(f"  {p['phase']:<9} {p['requests']:>7} requests  {p['seconds']:>6.2f} s  "
          f"{p['requests_per_second']:>9,.0f} requests/s  failures {p['failures']}  retries {p['retries']}")
PY

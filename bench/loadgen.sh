#!/usr/bin/env bash
# Benchmarks of aefm-load (issue 3). Prints figures; not part of `cargo test`.
#
#   bench/loadgen.sh [co|co0|rate|max|hyper|mem|all]     (default: all)
#
#   co    coordinated omission: bench/lib/stall_server.py (core 1) freezes for a while, three tests
#         (5 s stall in 40 s; 1 s stall in 30 s; three 1 s stalls every 5 s in 40 s) at
#         -t1 -c10 -R1000 -U --warmup 10s, i.e. the window wrk2 records (its calibration).
#         bench/lib/co_check.py ends each test with a verdict: corrected p90, p99, p99.9 and max
#         within 2 % (or 2 ms) of the open-loop expectation, wherever it lies on the stall's ramp.
#   co0   the same three tests without a warm-up (aefm-load's default: record from the start,
#         --record-start 0). The recorded window is 40 s instead of 30 s, so test 1's p90 falls
#         at 1.0 s, low on the stall's ramp, where the server's finite drain after the stall
#         adds R/X * (1-q) * W to the open-loop value: 40 ms (4 %) for a drain rate X of
#         100k req/s, against 30 ms (1.5 %) at test 1's p90 in `co`.
#   rate  rate and timer precision: nginx (bench/lib/nginx.sh, 1 worker, core 1) at -R 5k, 20k,
#         50k with -t1 -c50 -d15s -U on core 0, REPEAT times: achieved rate, CPU us/request,
#         corrected vs uncorrected p50; medians per rate at the end.
#   max   maximum requests/s at -t1 -c50 -d10s: aefm-load (rate far above capacity, so every
#         connection sends back to back) next to Debian's `wrk` in the same run, alternating,
#         REPEAT times; median ratio at the end.
#   hyper hand-written HTTP/1.1 client vs hyper 1 (issue 3): aefm-load at -t1 -c50 -d10s (rate
#         far above capacity, as in max) and loadgen/examples/hyper_client.rs (one thread, 50
#         keep-alive connections, 10 s), alternating, both on core 0 (nginx core 1): requests/s,
#         CPU us/request (user+sys from /usr/bin/time over all requests), median ratios.
#   mem   peak RSS of aefm-load at -t2 -c10000 -R20000 (open-files limit raised).
#
# Environment: PORT (nginx, default 18080), CO_PORT (stall server, 18090), REPEAT (rate, max, hyper; 3),
# CARGO_TARGET_DIR. Everything the benchmark runs besides the peers is in bench/lib/.
# Needs: python3, taskset, /usr/bin/time, nginx (nginx-light), wrk.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=$ROOT/bench/lib
PORT=${PORT:-18080}
CO_PORT=${CO_PORT:-18090}
REPEAT=${REPEAT:-3}
what=${1:-all}

cd "$ROOT"
cargo build --quiet --release -p aefm-loadgen --bin aefm-load
LOAD=${CARGO_TARGET_DIR:-$ROOT/target}/release/aefm-load
URL=http://127.0.0.1:$PORT/index.html
ulimit -n "$(ulimit -Hn)" || true

nginx_up() { bash "$LIB/nginx.sh" start "$PORT" 1 >/dev/null; }
nginx_down() { bash "$LIB/nginx.sh" stop "$PORT" >/dev/null 2>&1 || true; }

# co_test DURATION AT STALL EVERY COUNT WARMUP: one stall test. The stall server freezes STALL s
# at AT s after the first request (COUNT times, EVERY s apart); the generator records after its
# warm-up, so the window holds DURATION - WARMUP seconds and every stall.
co_test() {
  local dur=$1 at=$2 stall=$3 every=$4 count=$5 warm=$6 json
  json=$(mktemp)
  taskset -c 1 python3 "$LIB/stall_server.py" "$CO_PORT" "$at" "$stall" "$every" "$count" &
  local srv=$!
  sleep 0.5
  taskset -c 0 "$LOAD" -t1 -c10 -d"${dur}s" -R1000 -U --warmup "${warm}s" --json "$json" \
    "http://127.0.0.1:$CO_PORT/" >/dev/null
  kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true
  python3 "$LIB/co_check.py" "$json" "$((dur - warm))" "$stall" "$count"
  rm -f "$json"
}

# co_tests WARMUP: the three stall tests.
co_tests() {
  echo "-- test 1: 5 s stall at +15 s in 40 s"
  co_test 40 15 5 0 1 "$1"
  echo "-- test 2: 1 s stall at +15 s in 30 s"
  co_test 30 15 1 0 1 "$1"
  echo "-- test 3: three 1 s stalls every 5 s from +12 s in 40 s"
  co_test 40 12 1 5 3 "$1"
}

run_co() {
  echo "== coordinated omission (-t1 -c10 -R1000 -U --warmup 10s: wrk2's recorded window)"
  co_tests 10
}

run_co0() {
  echo "== coordinated omission without warm-up (-t1 -c10 -R1000 -U, recorded from the start)"
  co_tests 0
}

run_rate() {
  echo "== rate and timer precision (nginx core 1, generator core 0, -t1 -c50 -d15s -U, $REPEAT runs per rate)"
  nginx_up
  trap nginx_down EXIT
  local dir rate i
  dir=$(mktemp -d)
  for rate in 5000 20000 50000; do
    for i in $(seq "$REPEAT"); do
      taskset -c 0 /usr/bin/time -o "$dir/$rate-$i.time" -f '%U %S' \
        "$LOAD" -t1 -c50 -d15s -R"$rate" -U --json "$dir/$rate-$i.json" "$URL" >/dev/null
      sleep 1
    done
  done
  nginx_down
  python3 - "$dir" <<'PY'
import glob, json, os, statistics, sys
d = sys.argv[1]
print("-- medians per rate (CPU us/request = generator user+sys / completed requests)")
print("%8s %12s %10s %12s %12s %12s %10s" % ("rate", "achieved/s", "error%", "us/request", "corr p50 us", "unc p50 us", "gap us"))
for rate in (5000, 20000, 50000):
    runs = []
    for j in sorted(glob.glob(f"{d}/{rate}-*.json")):
        r = json.load(open(j))
        u, s = map(float, open(j[:-5] + ".time").read().split()[-2:])
        runs.append((r["summary"]["achieved_rate"], (u + s) * 1e6 / max(r["summary"]["requests"], 1),
                     r["corrected"]["stats"]["p50"], r["uncorrected"]["stats"]["p50"]))
    m = [statistics.median(x[k] for x in runs) for k in range(4)]
    gap = statistics.median(x[2] - x[3] for x in runs)
    print("%8d %12.1f %10.3f %12.2f %12.0f %12.0f %10.0f" % (rate, m[0], 100 * (m[0] - rate) / rate, m[1], m[2], m[3], gap))
PY
  rm -rf "$dir"
}

# Requests/sec of one report on stdin.
rps() { awk '/^Requests\/sec:/ {print $2}'; }

run_max() {
  echo "== max requests/s at -t1 -c50 -d10s (core 0; nginx core 1), aefm-load vs wrk, alternating"
  nginx_up
  trap nginx_down EXIT
  local a w ratios=()
  for i in $(seq "$REPEAT"); do
    w=$(taskset -c 0 wrk -t1 -c50 -d10s "$URL" | rps)
    sleep 1
    a=$(taskset -c 0 "$LOAD" -t1 -c50 -d10s -R10M "$URL" 2>/dev/null | rps)
    sleep 1
    ratios+=("$(python3 -c "import sys; a,w=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/w:.3f}')" "$a" "$w")")
    printf 'run %s: aefm-load %10.2f  wrk %10.2f  ratio %s\n' "$i" "$a" "$w" "${ratios[-1]}"
  done
  python3 -c "import statistics, sys; print('median ratio aefm-load/wrk: %.3f' % statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
  nginx_down
}

# Total requests of one report (wrk's "N requests in Xs" line) in a file.
total() { awk '/ requests in / {print $1}' "$1"; }

# CPU us/request from a /usr/bin/time -f '%U %S' file and a request count.
us_per_req() { awk -v n="$2" '{printf "%.2f", ($1 + $2) * 1e6 / n}' "$1"; }

run_hyper() {
  echo "== hand-written client vs hyper 1 at -t1 -c50 -d10s (core 0; nginx core 1), alternating"
  cargo build --quiet --release -p aefm-loadgen --example hyper_client
  local hyper=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hyper_client
  local i a ah ac hr hh hc
  tmp=$(mktemp -d)
  nginx_up
  trap 'nginx_down; rm -rf "$tmp"' EXIT
  : >"$tmp/rows"
  for i in $(seq "$REPEAT"); do
    taskset -c 0 /usr/bin/time -o "$tmp/a.time" -f '%U %S' \
      "$LOAD" -t1 -c50 -d10s -R10M "$URL" >"$tmp/a.out" 2>/dev/null
    sleep 1
    taskset -c 0 /usr/bin/time -o "$tmp/h.time" -f '%U %S' \
      "$hyper" "$URL" 50 10 >"$tmp/h.out"
    sleep 1
    a=$(rps <"$tmp/a.out"); ah=$(total "$tmp/a.out"); ac=$(us_per_req "$tmp/a.time" "$ah")
    hr=$(rps <"$tmp/h.out"); hh=$(total "$tmp/h.out"); hc=$(us_per_req "$tmp/h.time" "$hh")
    echo "$a $hr $ac $hc" >>"$tmp/rows"
    printf 'run %s: aefm-load %10.2f req/s %5.2f us/req (%s req, cpu %s)  hyper %10.2f req/s %5.2f us/req (%s req, cpu %s)\n' \
      "$i" "$a" "$ac" "$ah" "$(cat "$tmp/a.time")" "$hr" "$hc" "$hh" "$(cat "$tmp/h.time")"
  done
  python3 - "$tmp/rows" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
rate = statistics.median(a / h for a, h, _, _ in rows)
cpu = statistics.median(ac / hc for _, _, ac, hc in rows)
print(f"median ratio aefm-load/hyper: req/s {rate:.3f}  CPU us/req {cpu:.3f}")
PY
  nginx_down
  rm -rf "$tmp"
}

run_mem() {
  echo "== peak RSS at -t2 -c10000 -R20000 -d10s (open-files limit $(ulimit -n))"
  nginx_up
  trap nginx_down EXIT
  local out
  out=$( { /usr/bin/time -v "$LOAD" -t2 -c10000 -d10s -R20000 "$URL" >/tmp/aefm-bench-mem.txt; } 2>&1 )
  grep -E "requests in|Socket errors|Requests/sec" /tmp/aefm-bench-mem.txt || true
  echo "$out" | grep -E "Maximum resident set size|Elapsed" || true
  echo "$out" | grep -E "aefm-load" || true
  nginx_down
}

case "$what" in
co) run_co ;;
co0) run_co0 ;;
rate) run_rate ;;
max) run_max ;;
hyper) run_hyper ;;
mem) run_mem ;;
all) run_co; run_co0; run_rate; run_max; run_hyper; run_mem ;;
*) echo "usage: $0 [co|co0|rate|max|hyper|mem|all]" >&2; exit 1 ;;
esac

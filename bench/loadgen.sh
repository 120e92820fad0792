#!/usr/bin/env bash
# Benchmarks of aefm-load against wrk (Debian) and wrk2 (built from source, optional). Prints
# figures; not part of `cargo test`. What each mode measures: bench/README.md.
#
#   bench/loadgen.sh [table|syscalls|stall|co|co0|lua|mem|hyper|traceparent|all]     (default: all)
#
# Environment: WRK2 (path to a wrk2 binary; when set, every table also runs wrk2, alternating
# with the others in the same invocation), WRK (wrk; default `wrk`), REPEAT (runs per table row;
# 3), PORT (nginx; 18080), GEN_CORE (0) and SRV_CORE (1) for taskset, CO_TOL (relative tolerance
# of the stall tests; 0.015), CARGO_TARGET_DIR.
# Needs: cargo, taskset, nginx (nginx-light), wrk; strace for `syscalls`. The harness itself is
# Rust: stall-server and loadbench from the tests crate (aefm-tests), built here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=$ROOT/bench/lib
PORT=${PORT:-18080}
REPEAT=${REPEAT:-3}
WRK=${WRK:-wrk}
WRK2=${WRK2:-}
GEN_CORE=${GEN_CORE:-0}
SRV_CORE=${SRV_CORE:-1}
CO_TOL=${CO_TOL:-0.015}
what=${1:-all}

cd "$ROOT"
cargo build --quiet --release -p aefm-loadgen --bin aefm-load -p aefm-tests --bin stall-server --bin loadbench
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
LOAD=$BIN/aefm-load
LB=$BIN/loadbench
URL=http://127.0.0.1:$PORT/index.html
ulimit -n "$(ulimit -Hn)" || true
if [ -n "$WRK2" ] && [ ! -x "$WRK2" ]; then
  echo "WRK2=$WRK2 is not an executable (build it: see bench/README.md)" >&2
  exit 1
fi

nginx_up() { bash "$LIB/nginx.sh" start "$PORT" "$SRV_CORE" >/dev/null; trap nginx_down EXIT; }
nginx_down() { bash "$LIB/nginx.sh" stop "$PORT" >/dev/null 2>&1 || true; }
need() { command -v "$1" >/dev/null || { echo "$1 not found (apt-get install $2)" >&2; exit 1; }; }

# sweep ARGS...: loadbench sweep against nginx with the generator on GEN_CORE.
sweep() { "$LB" sweep --url "$URL" --core "$GEN_CORE" --repeat "$REPEAT" "$@"; }

run_table() {
  need "$WRK" wrk
  nginx_up
  local base=wrk cpu_base=aefm-load wrk2_max=() wrk2_cpu=()
  if [ -n "$WRK2" ]; then
    base=wrk2 cpu_base=wrk2
    wrk2_max=(--cmd "wrk2=$WRK2 -t1 -c50 -d6s -R10M {url}")
    wrk2_cpu=(--cmd "wrk2=$WRK2 -t1 -c50 -d10s -R{rate} -U {url}")
  fi
  echo "== max requests/s at -t1 -c50 -d6s (generator core $GEN_CORE, nginx core $SRV_CORE; -R10M for the rate-driven ones), median of $REPEAT"
  sweep --rates max --baseline "$base" --cmd "wrk=$WRK -t1 -c50 -d6s {url}" "${wrk2_max[@]}" \
    --cmd "aefm-load=$LOAD -t1 -c50 -d6s -R10M {url}"
  echo
  echo "== generator CPU us per request at -t1 -c50 -d10s -U (user+sys / completed), median of $REPEAT"
  echo "   (wrk2 records latencies only after its ~10.25 s calibration: its latency columns stay empty at -d10s)"
  sweep --rates 5000,20000,50000 --baseline "$cpu_base" "${wrk2_cpu[@]}" \
    --cmd "aefm-load=$LOAD -t1 -c50 -d10s -R{rate} -U {url}"
  nginx_down
}

# strace_one NAME RATE CMD...: syscalls of one 5 s run into $tmp/NAME-RATE.{strace,out}.
strace_one() {
  local name=$1 rate=$2; shift 2
  strace -f -c -o "$tmp/$name-$rate.strace" taskset -c "$GEN_CORE" "$@" >"$tmp/$name-$rate.out" 2>/dev/null
}

# Per-request syscall counts of every traced run: "run syscall calls/request" rows, pivoted.
syscall_table() {
  local f name n
  for f in "$tmp"/*.strace; do
    name=$(basename "$f" .strace)
    n=$(awk '/ requests in / {print $1}' "$tmp/$name.out")
    awk -v run="$name" -v n="${n:-0}" '
      /^-+/ {body = !body; next}
      body && $NF != "total" && n > 0 {print run, $NF, $4 / n}' "$f"
  done | awk '
    {v[$2, $1] = $3; runs[$1] = 1; calls[$2] += $3}
    END {
      printf "%-16s", "syscall"; for (r in runs) printf " %16s", r; printf "\n"
      fflush()
      sort = "sort -k2 -g -r"
      for (s in calls) { if (calls[s] < 0.001) continue
        line = sprintf("%-16s", s); for (r in runs) line = line sprintf(" %16.3f", v[s, r])
        print line | sort }
      close(sort)
    }'
}

run_syscalls() {
  need strace strace
  nginx_up
  tmp=$(mktemp -d)
  local rate
  echo "== syscalls per request under strace -f -c, -t1 -c50 -d5s (strace slows the generator: counts, not rates)"
  for rate in 5000 20000; do
    strace_one aefm-load "$rate" "$LOAD" -t1 -c50 -d5s -R"$rate" "$URL"
    [ -z "$WRK2" ] || strace_one wrk2 "$rate" "$WRK2" -t1 -c50 -d5s -R"$rate" "$URL"
  done
  for f in "$tmp"/*.out; do echo "$(basename "$f" .out): $(awk '/ requests in /' "$f")"; done
  syscall_table
  rm -rf "$tmp"
  nginx_down
}

# co_run ARGS...: one loadbench co test (a FAIL verdict does not stop the script).
co_run() { "$LB" co --gen-core "$GEN_CORE" --server-core "$SRV_CORE" --tolerance "$CO_TOL" "$@" || true; }

AEFM_CO="$LOAD -t{threads} -c{conns} -d{duration}s -R{rate} -U --json {json} {url}"
WRK2_CO="$WRK2 -t{threads} -c{conns} -d{duration}s -R{rate} -U {url}"

run_stall() {
  echo "== the issue's stall test: -t2 -c8 -R800, 35 s, one 4 s stall at +15 s; corrected p90 vs the model"
  echo "-- aefm-load (records from the start: W = 35 s, p90 model 4 - 0.1 * 35 = 0.5 s)"
  co_run --cmd "$AEFM_CO" --threads 2 --conns 8 --rate 800 --duration 35 --stall-at 15 --stall-for 4 --judge p90
  echo "-- aefm-load --catch-up pipeline (the backlog drains at the server's speed)"
  co_run --cmd "${AEFM_CO/ -U / -U --catch-up pipeline }" --threads 2 --conns 8 --rate 800 --duration 35 \
    --stall-at 15 --stall-for 4 --judge p90
  if [ -n "$WRK2" ]; then
    echo "-- wrk2 (records after its calibration, 10 s + 5 ms x 4 connections per thread)"
    co_run --cmd "$WRK2_CO" --threads 2 --conns 8 --rate 800 --duration 35 --stall-at 15 --stall-for 4 \
      --judge p90 --record-start wrk2
  fi
}

# co_tests CMD EXTRA...: the three stall tests at -t1 -c10 -R1000.
co_tests() {
  local cmd=$1; shift
  echo "-- test 1: 5 s stall at +15 s in 40 s"
  co_run --cmd "$cmd" --duration 40 --stall-at 15 --stall-for 5 "$@"
  echo "-- test 2: 1 s stall at +15 s in 30 s"
  co_run --cmd "$cmd" --duration 30 --stall-at 15 --stall-for 1 "$@"
  echo "-- test 3: three 1 s stalls every 5 s from +12 s in 40 s"
  co_run --cmd "$cmd" --duration 40 --stall-at 12 --stall-for 1 --stall-every 5 --stall-count 3 "$@"
}

run_co() {
  echo "== coordinated omission, aefm-load -t1 -c10 -R1000 -U --warmup 10s (wrk2's recorded window)"
  co_tests "$LOAD -t{threads} -c{conns} -d{duration}s -R{rate} -U --warmup 10s --json {json} {url}"
  if [ -n "$WRK2" ]; then
    echo "== coordinated omission, wrk2 -t1 -c10 -R1000 -U"
    co_tests "$WRK2_CO" --record-start wrk2
  fi
}

run_co0() {
  echo "== coordinated omission without warm-up, aefm-load -t1 -c10 -R1000 -U (recorded from the start)"
  co_tests "$AEFM_CO"
}

run_mem() {
  echo "== peak RSS of aefm-load at -t2 -c10000 -R20000 -d10s (not pinned; open-files limit $(ulimit -n))"
  nginx_up
  "$LB" sweep --url "$URL" --core "" --repeat 1 --rates 20000 \
    --cmd "aefm-load=$LOAD -t2 -c10000 -d10s -R{rate} {url}"
  nginx_down
}

run_traceparent() {
  echo "== cost of --traceparent 1 (every request traced, the slowest kept) at -t1 -c50 -d10s, median of $REPEAT"
  nginx_up
  sweep --rates 5000,20000 --baseline plain --cmd "plain=$LOAD -t1 -c50 -d10s -R{rate} -U {url}" \
    --cmd "traced=$LOAD -t1 -c50 -d10s -R{rate} -U --traceparent 1 {url}"
  nginx_down
}

run_hyper() {
  echo "== hand-written client vs hyper 1 at -t1 -c50 -d10s, alternating (loadgen/examples/hyper_client.rs)"
  cargo build --quiet --release -p aefm-loadgen --example hyper_client
  nginx_up
  sweep --rates max --baseline hyper --cmd "hyper=$BIN/examples/hyper_client {url} 50 10" \
    --cmd "aefm-load=$LOAD -t1 -c50 -d10s -R10M {url}"
  nginx_down
}

case "$what" in
table) run_table ;;
syscalls) run_syscalls ;;
stall) run_stall ;;
co) run_co ;;
co0) run_co0 ;;
lua) WRK=$WRK AEFM_LOAD=$LOAD PORT=$PORT REPEAT=$REPEAT bash "$ROOT/bench/lua.sh" ;;
mem) run_mem ;;
hyper) run_hyper ;;
traceparent) run_traceparent ;;
all) run_table; run_syscalls; run_stall; run_co; run_co0; run_mem
  WRK=$WRK AEFM_LOAD=$LOAD PORT=$PORT REPEAT=$REPEAT bash "$ROOT/bench/lua.sh" ;;
*) echo "usage: $0 [table|syscalls|stall|co|co0|lua|mem|hyper|traceparent|all]" >&2; exit 1 ;;
esac

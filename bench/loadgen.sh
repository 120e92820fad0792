#!/usr/bin/env bash
# Benchmarks of aefm-load (issue 3). Prints figures; not part of `cargo test`.
#
#   bench/loadgen.sh [co|rate|max|hyper|mem|all]     (default: all)
#
#   co    coordinated omission: ../shared/bench/co_test.py with stall_server.py, three tests
#         (5 s stall in 40 s; 1 s stall in 30 s; three 1 s stalls every 5 s in 40 s) at
#         -t1 -c10 -R1000 -U. aefm-load records from the start (no warm-up by default), so the
#         expectations use --record-start 0.
#   rate  rate and timer precision: nginx (1 worker, core 1) and rate_sweep.py at -R 5k, 20k,
#         50k with -t1 -c50 -d15s -U on core 0: achieved rate, CPU us/request, corrected vs
#         uncorrected p50.
#   max   maximum requests/s at -t1 -c50 -d10s: aefm-load (rate far above capacity, so every
#         connection sends back to back) next to Debian's `wrk` in the same run, alternating.
#   hyper hand-written HTTP/1.1 client vs hyper 1 (issue 3): aefm-load at -t1 -c50 -d10s (rate
#         far above capacity, as in max) and loadgen/examples/hyper_client.rs (one thread, 50
#         keep-alive connections, 10 s), alternating, both on core 0 (nginx core 1): requests/s,
#         CPU us/request (user+sys from /usr/bin/time over all requests), median ratios.
#   mem   peak RSS of aefm-load at -t2 -c10000 -R20000 (open-files limit raised).
#
# Environment: PORT (nginx, default 18080), CO_PORT (stall server, 18090), REPEAT (max and hyper, 3),
# SHARED (bench harness, default ../shared/bench from the repo root), CARGO_TARGET_DIR.
# Needs: python3, taskset, /usr/bin/time, nginx (nginx-light), wrk.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
PORT=${PORT:-18080}
CO_PORT=${CO_PORT:-18090}
REPEAT=${REPEAT:-3}
what=${1:-all}

cd "$ROOT"
cargo build --quiet --release -p aefm-loadgen --bin aefm-load
LOAD=${CARGO_TARGET_DIR:-$ROOT/target}/release/aefm-load
URL=http://127.0.0.1:$PORT/index.html
ulimit -n "$(ulimit -Hn)" || true

nginx_up() { bash "$SHARED/nginx_small.sh" start "$PORT" 1 >/dev/null; }
nginx_down() { bash "$SHARED/nginx_small.sh" stop "$PORT" >/dev/null 2>&1 || true; }
nginx_pid() { cat "${TMPDIR:-/tmp}/aefm-bench-nginx-$PORT/nginx.pid"; }

run_co() {
  echo "== coordinated omission (co_test.py, -t1 -c10 -R1000 -U, --record-start 0)"
  local cmd="$LOAD -t{threads} -c{conns} -d{duration}s -R{rate} -U {url}"
  echo "-- test 1: 5 s stall at +15 s in 40 s"
  python3 "$SHARED/co_test.py" --cmd "$cmd" --rate 1000 --conns 10 --threads 1 \
    --duration 40 --stall-at 15 --stall-for 5 --record-start 0 --port "$CO_PORT"
  echo "-- test 2: 1 s stall at +15 s in 30 s"
  python3 "$SHARED/co_test.py" --cmd "$cmd" --rate 1000 --conns 10 --threads 1 \
    --duration 30 --stall-at 15 --stall-for 1 --record-start 0 --port "$CO_PORT"
  echo "-- test 3: three 1 s stalls every 5 s from +12 s in 40 s"
  python3 "$SHARED/co_test.py" --cmd "$cmd" --rate 1000 --conns 10 --threads 1 \
    --duration 40 --stall-at 12 --stall-for 1 --stall-every 5 --stall-count 3 \
    --record-start 0 --port "$CO_PORT"
}

run_rate() {
  echo "== rate and timer precision (nginx core 1, generator core 0, -t1 -c50 -d15s -U)"
  nginx_up
  trap nginx_down EXIT
  python3 "$SHARED/rate_sweep.py" --cmd "$LOAD -t1 -c50 -d15s -R{rate} -U {url}" \
    --url "$URL" --rates 5000,20000,50000 --core 0 --server-pid "$(nginx_pid)"
  nginx_down
}

# Requests/sec of one report on stdin.
rps() { awk '/^Requests\/sec:/ {print $2}'; }

run_max() {
  echo "== max requests/s at -t1 -c50 -d10s (core 0; nginx core 1), aefm-load vs wrk, alternating"
  nginx_up
  trap nginx_down EXIT
  local a w
  for i in $(seq "$REPEAT"); do
    w=$(taskset -c 0 wrk -t1 -c50 -d10s "$URL" | rps)
    sleep 1
    a=$(taskset -c 0 "$LOAD" -t1 -c50 -d10s -R10M "$URL" 2>/dev/null | rps)
    sleep 1
    python3 -c "import sys; a,w=float(sys.argv[1]),float(sys.argv[2]); print(f'run {sys.argv[3]}: aefm-load {a:10.2f}  wrk {w:10.2f}  ratio {a/w:.3f}')" "$a" "$w" "$i"
  done
  echo "-- CPU per request at -R20000 (-t1 -c50 -d15s): see the rate sweep (us/req column)"
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
rate) run_rate ;;
max) run_max ;;
hyper) run_hyper ;;
mem) run_mem ;;
all) run_co; run_rate; run_max; run_hyper; run_mem ;;
*) echo "usage: $0 [co|rate|max|hyper|mem|all]" >&2; exit 1 ;;
esac

#!/usr/bin/env bash
# Benchmark of aefm-stress against its anchors and peers, measured in the same run
# (anchors and samplers: bench/lib/stream_copy.c, memhold.c, proc_sample.py).
# Prints the issue's figures: membw max vs a STREAM copy, membw 25/50 % targets, cpu 10/50/75 %
# vs a reference spinner (and stress-ng --cpu-load as peer), memcap 1 and 4 GiB (RSS, CPU while
# holding, memhold peer), net 1 Gbit/s on loopback (iperf3 -b as peer), and wall time vs duration
# (also with a spinner sharing the stressor's core).
# Usage: bench/interference.sh [outdir]     env: REPS (5), DUR (10), CPU (1: stressor CPU)
# Needs: cargo, gcc, python3, iperf3, stress-ng, taskset.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/bench/lib
OUT=${1:-$REPO/results/bench-interference}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
REPS=${REPS:-5}; DUR=${DUR:-10}; CPU=${CPU:-1}
JL="python3 $REPO/bench/interference/jl.py"
PS="python3 $HERE/proc_sample.py -i 1"
log() { echo "$*" | tee -a "$OUT/summary.txt"; }
# step OUTFILE CMD...: CMD's stdout to OUTFILE, its stderr to OUTFILE.err.
step() { local o=$1; shift; "$@" >"$o" 2>"$o.err"; }
: >"$OUT/summary.txt"

(cd "$REPO" && cargo build --release -q -p aefm-interference --bin aefm-stress) || exit 1
S="${CARGO_TARGET_DIR:-$REPO/target}/release/aefm-stress"
gcc -O2 -o "$OUT/stream_anchor" "$HERE/stream_copy.c" || exit 1
gcc -O2 -o "$OUT/memhold" "$HERE/memhold.c" || exit 1
cat >"$OUT/spin.c" <<'C'
#include <stdlib.h>
#include <time.h>
int main(int c, char **v) { struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
  volatile unsigned long x = 0; double d = c > 1 ? strtod(v[1], 0) : 10;
  do { for (int i = 0; i < 100000; i++) x++; clock_gettime(CLOCK_MONOTONIC, &b); }
  while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9 < d); return 0; }
C
gcc -O2 -o "$OUT/spin" "$OUT/spin.c" || exit 1
med() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:] if x!="nan"]; print(round(statistics.median(v),3) if v else "nan")' "$@"; }
ratio() { python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(round(a/b,3) if b else "nan")' "$1" "$2"; }
log "machine: $(nproc) CPUs, $(uptime | sed 's/.*load/load/'); REPS=$REPS DUR=${DUR}s stressor CPU=$CPU; $(date -u +%FT%TZ)"

# --- B1: membw max, 1 worker, vs the 1-thread STREAM anchor, interleaved -----------------------
ours=(); best=(); avg=()
for r in $(seq "$REPS"); do
  step "$OUT/anchor$r.txt" env OMP_NUM_THREADS=1 taskset -c "$CPU" "$OUT/stream_anchor" -r 10
  best+=("$($JL anchor "$OUT/anchor$r.txt" copy best_GBps)"); avg+=("$($JL anchor "$OUT/anchor$r.txt" copy avg_GBps)")
  step "$OUT/membw_max$r.jsonl" taskset -c "$CPU" "$S" membw --rate max --workers 1 --duration "${DUR}s"
  ours+=("$($JL median "$OUT/membw_max$r.jsonl" 2)")
done
M=$(med "${ours[@]}"); AB=$(med "${best[@]}"); AA=$(med "${avg[@]}")
log "B1 membw max 1 worker: per-run medians ${ours[*]} GB/s -> median $M; anchor copy best ${best[*]} (median $AB), avg ${avg[*]} (median $AA); ratio vs anchor avg $(ratio "$M" "$AA"), vs best $(ratio "$M" "$AB")  [issue: >= 0.90]"
# stress-ng stream as peer (read+write MB/s from its metrics).
step "$OUT/sng_stream.txt" stress-ng --stream 1 --taskset "$CPU" -t "$DUR" --metrics-brief
log "   peer stress-ng --stream 1: $(grep -E 'stream' "$OUT/sng_stream.txt.err" | grep -iE 'read|write|MB' | tr -s ' ' | head -3 | tr '\n' ';')"

# --- B3: membw targets at 25 % and 50 % of the measured max ------------------------------------
for pct in 25 50; do
  tgt=$(python3 -c "print(round($M*$pct/100,3))")
  step "$OUT/membw_$pct.jsonl" taskset -c "$CPU" "$S" membw --rate "${tgt}GB/s" --workers 1 --duration "${DUR}s"
  md=$($JL median "$OUT/membw_$pct.jsonl" 2)
  log "B3 membw target $pct % = $tgt GB/s: per-second median $md (ratio $(ratio "$md" "$tgt"), spread $($JL spread "$OUT/membw_$pct.jsonl" 2))  [issue: median within 10 %]"
done

# --- C1: cpu duty cycle vs the reference spinner and stress-ng ---------------------------------
sp=()
for r in $(seq 2); do step "$OUT/spin$r.json" $PS -- taskset -c "$CPU" "$OUT/spin" "$DUR"; sp+=("$($JL ps "$OUT/spin$r.json" cpu_pct_mean)"); done
SP=$(med "${sp[@]}")
log "C1 reference spinner alone on CPU$CPU: ${sp[*]} % (S = $SP)"
for load in 10 50 75; do
  step "$OUT/cpu$load.json" $PS -- "$S" cpu --workers 1 --load "$load" --cpus "$CPU" --duration "${DUR}s"
  step "$OUT/sng$load.json" $PS -- stress-ng --cpu 1 --cpu-load "$load" --taskset "$CPU" -t "$DUR"
  exp=$(python3 -c "print(round($load*$SP/100,2))")
  log "C1 cpu $load %: mean $($JL ps "$OUT/cpu$load.json" cpu_pct_mean) stdev $($JL ps "$OUT/cpu$load.json" cpu_pct_stdev) (expected $exp; self-reported $($JL final "$OUT/cpu$load.json" achieved)); peer stress-ng mean $($JL ps "$OUT/sng$load.json" cpu_pct_mean) stdev $($JL ps "$OUT/sng$load.json" cpu_pct_stdev)  [issue: within 3 points, stdev <= 3]"
done

# --- M1/M3: memcap 1 and 4 GiB: RSS and CPU while holding, memhold as peer ---------------------
for gib in 1 4; do
  # First touch runs at host speed (~3 s/GiB on the project VM): hold long enough to fill and hold.
  MDUR=$(( DUR > 20 ? DUR : 20 ))
  step "$OUT/memcap$gib.json" python3 "$HERE/proc_sample.py" -i 0.5 -- "$S" memcap --size "${gib}GiB" --duration "${MDUR}s"
  fill=$(python3 -c "
import json; ls=[json.loads(l) for l in open('$OUT/memcap$gib.json') if l.startswith('{\"kind')]
f=[l.get('fill_s') for l in ls if l.get('fill_s') is not None]; print(f[-1] if f else 'nan')")
  req=$((gib * 1024))
  rss=$($JL ps "$OUT/memcap$gib.json" rss_mib_max)
  hold=$($JL hold_cpu "$OUT/memcap$gib.json" "$(python3 -c "print(float('$fill')+1 if '$fill'!='nan' else 1e9)")")
  step "$OUT/memhold$gib.json" python3 "$HERE/proc_sample.py" -i 0.5 -- "$OUT/memhold" "$req" 3
  mh_fill=$(python3 -c "
import json; s=json.loads(open('$OUT/memhold$gib.json').read().strip().splitlines()[-1])['samples']
t=[x['t'] for x in s if x['rss_mib'] >= 0.99*$req]; print(t[0] if t else 'nan')")
  log "M1 memcap ${gib} GiB: RSS max $rss MiB (request $req MiB, ratio $(ratio "$rss" "$req"), bound +2 % +16 MiB = $(python3 -c "print($req*1.02+16)")), fill ${fill} s, CPU while holding $hold %; peer memhold RSS $($JL ps "$OUT/memhold$gib.json" rss_mib_max) MiB, fill <= ${mh_fill} s  [issue: RSS within bound, CPU < 5 %]"
done

# --- N1: net 1 Gbit/s on loopback, vs iperf3 -b directly -----------------------------------------
PORT=$((20000 + RANDOM % 20000))
"$S" net --server --port "$PORT" --duration "$((DUR * 2 + 10))s" >"$OUT/net_server.jsonl" 2>&1 &
SRV=$!
sleep 1
step "$OUT/net_client.jsonl" "$S" net --target "127.0.0.1:$PORT" --bandwidth 1G --streams 1 --duration "${DUR}s"
step "$OUT/iperf3_peer.json" iperf3 -c 127.0.0.1 -p "$PORT" -b 1G -t "$DUR" -J
kill "$SRV"; wait "$SRV" 2>/dev/null
nach=$($JL final "$OUT/net_client.jsonl" achieved)
peer=$(python3 -c "import json; print(json.load(open('$OUT/iperf3_peer.json'))['end']['sum_sent']['bits_per_second'])" 2>/dev/null || echo nan)
log "N1 net 1 Gbit/s loopback: achieved $nach bit/s (ratio $(ratio "$nach" 1e9)), per-second median $($JL median "$OUT/net_client.jsonl" 1); peer iperf3 -b 1G $peer (ratio $(ratio "$peer" 1e9))  [issue: within 2 %]"

# --- D1: wall time vs duration, alone and with a spinner on the same core ------------------------
for kind in "cpu --load 50 --workers 1 --cpus $CPU" "memcap --size 256MiB" "membw --rate max --workers 1" "cache --level l2 --fraction 0.5"; do
  for co in alone shared; do
    if [ "$co" = shared ]; then taskset -c "$CPU" "$OUT/spin" "$((DUR + 3))" & SPN=$!; fi
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    taskset -c "$CPU" "$S" $kind --duration "${DUR}s" >/dev/null 2>&1
    t1=$(date +%s.%N)
    [ "$co" = shared ] && { kill "$SPN" 2>/dev/null; wait "$SPN" 2>/dev/null; }
    log "D1 ${kind%% *} ($co): wall $(python3 -c "print(round($t1-$t0,3))") s for ${DUR} s  [issue: within 0.5 s]"
  done
done
# --- D2: SIGTERM once memcap 4 GiB is resident: exit time (free included) and final line --------
"$S" memcap --size 4GiB >"$OUT/d2_memcap.jsonl" 2>&1 &
P=$!
for _ in $(seq 240); do grep -q '"fill_s":[0-9]' "$OUT/d2_memcap.jsonl" && break; sleep 0.5; done
t0=$(date +%s.%N); kill -TERM "$P"; wait "$P"; rc=$?; t1=$(date +%s.%N)
log "D2 SIGTERM memcap 4 GiB (resident): exit after $(python3 -c "print(round($t1-$t0,3))") s, rc $rc, final line: $($JL final "$OUT/d2_memcap.jsonl" final)  [issue: within 0.5 s, final report, exit 0]"
echo "summary: $OUT/summary.txt"

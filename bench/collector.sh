#!/usr/bin/env bash
# Trace-processing benchmark: 100,000 generated traces x 20 spans, from Jaeger JSON on disk to the
# trace tables (spans, edges, operations, pods, end-to-end). The rows are produced on one thread;
# the big tables are written with O_DIRECT by a background thread per table (output/direct.rs).
# Prints, per run, wall, user and system seconds (/usr/bin/time of the whole process), spans per
# wall second and per CPU second (user + system, both threads), and peak RSS; for aefm-collector
# and for the peer: a straightforward pure-Python implementation of the same computation
# (json.load + per-parent interval union + csv), the stack the original AEFM used minus pandas
# (not installed here), run on a 10,000-trace subset on the same machine in the same run.
# Usage: bench/collector.sh [TRACES] [SPANS]
set -euo pipefail
cd "$(dirname "$0")/.."
TRACES=${1:-100000}
SPANS=${2:-20}
PEER_TRACES=${PEER_TRACES:-10000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo build --release -q -p aefm-collector --example trace_bench
BIN="$CARGO_TARGET_DIR/release/examples/trace_bench"
"$BIN" generate "$WORK/traces.json" "$TRACES" "$SPANS"
"$BIN" generate "$WORK/peer.json" "$PEER_TRACES" "$SPANS"
echo "input: $TRACES traces x $SPANS spans, $(du -h "$WORK/traces.json" | cut -f1) of JSON"

run() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  local spans
  spans=$(sed -n 's/.*spans=\([0-9]*\) .*/\1/p' "$WORK/$name.out")
  # The box may be shared: CPU seconds (user+sys) measure the work better than wall time.
  tail -n1 "$WORK/$name.time" | awk -v name="$name" -v n="$spans" '{
    wall = $1 > 0.005 ? $1 : 0.005; cpu = $2 + $3 > 0.005 ? $2 + $3 : 0.005
    printf "%s: spans=%d wall_s=%.2f user_s=%.2f sys_s=%.2f cpu_s=%.2f spans_per_wall_s=%.0f spans_per_cpu_s=%.0f peak_rss_mib=%.1f\n",
      name, n, $1, $2, $3, $2 + $3, n / wall, n / cpu, $4 / 1024 }'
}
echo "machine: $(nproc) cores, $(uname -r), output on $(df -T "$WORK" | awk 'NR == 2 {print $2}'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
# Warm the page cache so both read from memory.
cat "$WORK/traces.json" "$WORK/peer.json" > /dev/null
run aefm-collector "$BIN" process "$WORK/traces.json" "$WORK/out"
run aefm-collector-10k "$BIN" process "$WORK/peer.json" "$WORK/out10k"
run python-peer-10k python3 - "$WORK/peer.json" "$WORK/outpy" <<'PY'
import csv, json, os, sys, time
t0 = time.time()
data = json.load(open(sys.argv[1]))["data"]
os.makedirs(sys.argv[2], exist_ok=True)
spans_n = 0
stats = {}
with open(os.path.join(sys.argv[2], "spans.csv"), "w", newline="") as sf, \
     open(os.path.join(sys.argv[2], "edges.csv"), "w", newline="") as ef, \
     open(os.path.join(sys.argv[2], "end_to_end.csv"), "w", newline="") as tf:
    sw, ew, tw = csv.writer(sf), csv.writer(ef), csv.writer(tf)
    for tr in data:
        procs = {k: (v["serviceName"], next((t["value"] for t in v.get("tags", []) if t["key"] == "hostname"), ""))
                 for k, v in tr["processes"].items()}
        spans = {s["spanID"]: s for s in tr["spans"]}
        kids = {}
        for s in tr["spans"]:
            refs = s.get("references") or []
            if refs and refs[0]["spanID"] in spans:
                kids.setdefault(refs[0]["spanID"], []).append(s)
        for s in tr["spans"]:
            ps, pe = s["startTime"], s["startTime"] + s["duration"]
            iv = sorted((max(c["startTime"], ps), min(c["startTime"] + c["duration"], pe)) for c in kids.get(s["spanID"], []))
            union, cs, ce = 0, None, None
            for a, b in iv:
                if b <= a: continue
                if ce is None or a > ce:
                    if ce is not None: union += ce - cs
                    cs, ce = a, b
                else:
                    ce = max(ce, b)
            if ce is not None: union += ce - cs
            self_t = s["duration"] - union
            svc, pod = procs.get(s["processID"], ("", ""))
            sw.writerow([tr["traceID"], s["spanID"], svc, pod, s["operationName"], s["startTime"], s["duration"], self_t])
            st = stats.setdefault((svc, s["operationName"]), ([], []))
            st[0].append(self_t); st[1].append(s["duration"])
            refs = s.get("references") or []
            if refs and refs[0]["spanID"] in spans:
                p = spans[refs[0]["spanID"]]
                ew.writerow([tr["traceID"], p["spanID"], s["spanID"], svc, p["operationName"], s["duration"]])
            spans_n += 1
        roots = [s for s in tr["spans"] if not s.get("references")]
        tw.writerow([tr["traceID"], roots[0]["duration"] if roots else ""])
def q(v, p):
    v = sorted(v); x = p * (len(v) - 1); lo = int(x); hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (x - lo)
with open(os.path.join(sys.argv[2], "operations.csv"), "w", newline="") as of:
    w = csv.writer(of)
    for k, (a, b) in stats.items():
        w.writerow([*k, len(a)] + [q(a, p) for p in (.5, .9, .95, .99)] + [q(b, p) for p in (.5, .9, .95, .99)])
secs = time.time() - t0
print(f"traces={len(data)} spans={spans_n} seconds={secs:.3f} spans_per_second={spans_n/secs:.0f}")
PY
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a/b}'; }
cpu_of() { tail -n1 "$WORK/$1.time" | awk '{print $2 + $3}'; }
echo "ratio python-peer/aefm-collector CPU seconds (10k traces, same run): $(ratio "$(cpu_of python-peer-10k)" "$(cpu_of aefm-collector-10k)")x"

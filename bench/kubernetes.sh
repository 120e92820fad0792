#!/usr/bin/env bash
# Issue 13's benchmark: the Kubernetes backend against `fake-kube` (tests/src/bin/fake-kube.rs)
# with faults on — every watch cut 1 s after it opened, every open watch expired with 410 Gone
# every 2 s — and, as the reference, without.
# The sweep of examples/kubernetes/ (3 rates x 3 CPU levels x 2 rounds = 18 cases) with 1 s cases,
# load always as 4 Jobs (fake-kube runs each as a real aefm-load process against a pinned nginx on
# 127.0.0.1; app and stress pods run nothing, so every interference case is judged
# `stressor_no_reports`: the figures are the manager's, not the app's).
# Reports: wall time, cases per hour, the manager's overhead per case (case wall time minus the
# 1 s of load, mean and max), and the start spread of the 4 load pods per case (latest start minus
# earliest, from case.json; every pod starts its schedule at the barrier's instant on its own
# clock, so this is 0 unless a pod missed the instant) and how late any request left after its
# scheduled time (send lag max, which includes each pod's wake-up at the instant). RUNS (default 2).
# Usage: bench/kubernetes.sh        (needs nginx, python3; KEEP=1 keeps the results)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p aefm -p aefm-loadgen -p aefm-tests \
  --bin aefm --bin aefm-load --bin fake-kube
REL="$(cd "$CARGO_TARGET_DIR/release" && pwd)"
OUT="$(mktemp -d)"
PORT="${PORT:-18913}"
cleanup() {
  [ -n "${FAKE:-}" ] && kill "$FAKE" 2>/dev/null || true
  bench/lib/nginx.sh stop "$PORT" >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "results kept in $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT
bench/lib/nginx.sh start "$PORT" 1 >/dev/null

start_fake() {
  [ -n "${FAKE:-}" ] && { kill "$FAKE" 2>/dev/null || true; wait "$FAKE" 2>/dev/null || true; }
  rm -f "$OUT/kc"
  PATH="$REL:$PATH" "$REL/fake-kube" --kubeconfig "$OUT/kc" --nodes 4 --node-cpu 8 \
    --run-jobs --ready-delay 200ms "$@" >"$OUT/fake.log" 2>&1 &
  FAKE=$!
  for _ in $(seq 100); do [ -s "$OUT/kc" ] && break; sleep 0.1; done
  [ -s "$OUT/kc" ] || { echo "fake-kube did not start:"; cat "$OUT/fake.log"; exit 1; }
}

EX="$(pwd)/examples/kubernetes"
# examples/kubernetes/config.yaml's sweep and app, pointed at the fake and the local nginx.
cat >"$OUT/config.yaml" <<YAML
name: hotel-k8s
backend: kubernetes
duration: 1s
warmup: 0s
settle: 0s
results_dir: $OUT/results
load: {url: "http://127.0.0.1:$PORT/", threads: 1, connections: 4}
$(sed -n '/^sweep:/,/^collect:/p' "$EX/config.yaml" | sed '$d')
kubernetes:
  kubeconfig: $OUT/kc
  namespace: hotel-reserv
  yaml_repo: $EX/repo
  app_image: nicklin9907/aefm:hotel-1.0
  pod_resources: {cpu: "0.5", memory: 256Mi}
  replicas: {frontend: 2, search: 2}
  nodes:
    - {name: w1, roles: [infra]}
    - {name: w2, roles: [testbed]}
    - {name: w3, roles: [testbed]}
    - {name: w4, roles: [loadgen]}
  interference: {namespace: aefm-interference, pods_per_node: 1, cpu: "4", memory: 512Mi}
  load: {always: true, generators: 4, max_rate_per_generator: 5000}
  readiness_timeout_secs: 120
YAML

for i in $(seq 1 "${RUNS:-2}"); do
 for mode in ${MODES:-faults calm}; do
  if [ "$mode" = faults ]; then
    start_fake --drop-watches-every 1s --gone-every 2s
    echo "== run $i, faults on: watch cuts every 1 s, 410 Gone every 2 s"
  else
    start_fake
    echo "== run $i, no faults (the reference)"
  fi
  start=$(date +%s.%N)
  PATH="$REL:$PATH" "$REL/aefm" run "$OUT/config.yaml" --no-progress >"$OUT/stdout" 2>"$OUT/stderr" || true
  end=$(date +%s.%N)
  DIR="$(sed -n 's/^results: //p' "$OUT/stdout")"
  [ -d "$DIR" ] || { echo "no results:"; tail -20 "$OUT/stderr"; exit 1; }
  python3 - "$DIR" "$start" "$end" "$(grep -c '410 Gone' "$DIR/aefm.log" || true)" <<'PY'
import json, glob, sys, datetime, statistics, collections
d, start, end, watch_lines = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def t(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
cases = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/cases/*/case.json"))]
wall = end - start
over = [t(c["ended"]) - t(c["started"]) - 1.0 for c in cases if c.get("ended") and c.get("started")]
spread = [c["load_start_spread_s"] for c in cases if c.get("load_start_spread_s") is not None]
lag = []
for f in sorted(glob.glob(f"{d}/cases/*/loadgen.json")):
    r = json.load(open(f))
    lag.append(r["send_lag"]["stats"]["max"] / 1000.0)
status = collections.Counter(c["status"] for c in cases)
reasons = collections.Counter(r["code"] for c in cases for r in c.get("invalid_reasons") or [])
print(f"   wall {wall:.1f} s for {len(cases)} cases: {len(cases) / wall * 3600:.0f} cases/hour")
print(f"   manager overhead per case: mean {statistics.mean(over):.2f} s, max {max(over):.2f} s")
if spread:
    print(f"   start spread of the 4 load pods (their schedules' start): mean {statistics.mean(spread) * 1000:.3f} ms, max {max(spread) * 1000:.3f} ms over {len(spread)} cases")
if lag:
    print(f"   how late any pod sent any request after its schedule (send lag max, merged): median {statistics.median(lag):.2f} ms, max {max(lag):.2f} ms")
print(f"   status {dict(status)}; invalid reasons {dict(reasons)}; watches that met a 410 and listed again (aefm.log): {watch_lines}")
PY
done
 done

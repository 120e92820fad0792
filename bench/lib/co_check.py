"""Judges a generator's corrected latencies against the open-loop model of a stalled server.

Usage: co_check.py REPORT.json WINDOW_S STALL_S STALLS
REPORT.json is aefm-load's --json report of a run at a constant rate whose recorded window of
WINDOW_S seconds held STALLS stalls of STALL_S seconds each. Under the open-loop model every
request due inside a stall waits until the stall ends, so a share f = STALLS*STALL_S/WINDOW_S of
the latencies is spread evenly over (0, STALL_S], the rest near zero: the q-quantile on that ramp
is STALL_S * (q - (1 - f)) / f. Prints expected and measured p90, p99, p99.9 and max, and a
verdict: every percentile on the ramp (expected >= 50 ms) within 2 % or 2 ms."""
import json, sys

report, window, stall, stalls = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
r = json.load(open(report))
stats = r["corrected"]["stats"]
f = stalls * stall / window
worst = None
print("%-8s %12s %12s" % ("", "expected s", "measured s"))
for name, q in (("p90", 0.90), ("p99", 0.99), ("p99_9", 0.999), ("max", 1.0)):
    expected = stall * (q - (1 - f)) / f if q > 1 - f else 0.0
    measured = stats[name] / 1e6
    print("%-8s %12.3f %12.3f" % (name, expected, measured))
    if expected >= 0.05:
        dev = abs(measured - expected)
        rel = 0.0 if dev <= 0.002 else dev / expected
        if worst is None or rel > worst[0]:
            worst = (rel, name)
if worst is None:
    print("verdict: none (no percentile on the stall ramp)")
else:
    print("verdict: %s (worst %.2f %% at %s)" % ("PASS" if worst[0] <= 0.02 else "FAIL", 100 * worst[0], worst[1]))

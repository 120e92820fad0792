#!/usr/bin/env python3
"""jl.py - figures from aefm-stress JSON report lines and proc_sample.py summaries.

  jl.py final FILE KEY          value of KEY in the final report line ("achieved", "elapsed_s", details...)
  jl.py median FILE [SKIP]      median of per-second `achieved` (non-final lines, first SKIP dropped, default 1)
  jl.py spread FILE [SKIP]      (max - min) of per-second `achieved`
  jl.py ps FILE KEY             KEY of a proc_sample.py JSON summary (last line of FILE)
  jl.py hold_cpu FILE AFTER_S   mean cpu_pct of proc_sample samples with t > AFTER_S
  jl.py anchor FILE KIND FIELD  stream_anchor output: FIELD (best_GBps/avg_GBps) of KIND (copy/triad)
"""
import json, statistics, sys

def lines(path):
    out = []
    for l in open(path):
        l = l.strip()
        if l.startswith("{"):
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
    return out

def per_second(path, skip):
    v = [l["achieved"] for l in lines(path) if "kind" in l and not l.get("final")]
    return v[skip:] or v

cmd, path = sys.argv[1], sys.argv[2]
if cmd == "final":
    f = [l for l in lines(path) if l.get("final")]
    print(f[-1].get(sys.argv[3], "nan") if f else "nan")
elif cmd == "median":
    print(round(statistics.median(per_second(path, int(sys.argv[3]) if len(sys.argv) > 3 else 1)), 3))
elif cmd == "spread":
    v = per_second(path, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    print(round(max(v) - min(v), 3))
elif cmd == "ps":
    print(lines(path)[-1].get(sys.argv[3], "nan"))
elif cmd == "hold_cpu":
    s = [x["cpu_pct"] for x in lines(path)[-1]["samples"] if x["t"] > float(sys.argv[3])]
    print(round(statistics.mean(s), 2) if s else "nan")
elif cmd == "anchor":
    for l in open(path):
        p = l.split()
        if p and p[0] == sys.argv[3]:
            for kv in p[1:]:
                k, _, v = kv.partition("=")
                if k == sys.argv[4]:
                    print(v)
                    sys.exit(0)
    print("nan")

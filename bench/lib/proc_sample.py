"""Runs a command and samples its process tree's CPU (percent of one core) and resident memory
every INTERVAL seconds. The command's stdout passes through; the last line printed is a JSON
summary: samples [{t, cpu_pct, rss_mib}], cpu_pct_mean, cpu_pct_stdev, rss_mib_max.
Usage: proc_sample.py [-i INTERVAL] -- CMD ARGS..."""
import json, os, statistics, subprocess, sys, time

args = sys.argv[1:]
interval = 1.0
if args[:1] == ["-i"]:
    interval, args = float(args[1]), args[2:]
if args[:1] == ["--"]:
    args = args[1:]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(root):
    """The pids of root and its descendants."""
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            kids.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(p))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def usage(root):
    """(CPU seconds, resident bytes) of the tree."""
    cpu = rss = 0
    for p in tree(root):
        try:
            f = open(f"/proc/{p}/stat").read()
            f = f[f.rfind(")") + 2:].split()
            cpu += (int(f[11]) + int(f[12])) / TICK
            rss += int(open(f"/proc/{p}/statm").read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return cpu, rss


child = subprocess.Popen(args)
start = last_t = time.monotonic()
last_cpu, samples = 0.0, []
while child.poll() is None:
    time.sleep(interval)
    cpu, rss = usage(child.pid)
    t = time.monotonic()
    if child.poll() is None:
        samples.append({"t": round(t - start, 3), "cpu_pct": round(100 * (cpu - last_cpu) / (t - last_t), 2),
                        "rss_mib": round(rss / 2**20, 1)})
    last_cpu, last_t = cpu, t
cpus = [s["cpu_pct"] for s in samples] or [0.0]
print(json.dumps({"samples": samples, "cpu_pct_mean": round(statistics.mean(cpus), 2),
                  "cpu_pct_stdev": round(statistics.pstdev(cpus), 2),
                  "rss_mib_max": max([s["rss_mib"] for s in samples] or [0.0]), "exit": child.returncode}),
      flush=True)

"""Saves one model RUNS times while `strata watch` runs, and prints a README
table: the time from each save to the watch event that reports its result,
and the duration watch measures itself.

Usage: watch_saves.py BIN RUNS MODEL_PATH EVENT LABEL [WATCH_ARG ...]
(run from the project directory)."""
import json, queue, statistics, subprocess, sys, threading, time

bin_, runs, path, event, label = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
p = subprocess.Popen([bin_, "watch", "--log-format", "json", *sys.argv[6:]],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
q = queue.Queue()


def read():
    for line in p.stdout:
        try:
            q.put(json.loads(line))
        except ValueError:
            pass


threading.Thread(target=read, daemon=True).start()


def wait(code):
    while True:
        e = q.get(timeout=120)
        if e.get("code") == code:
            return e


wait("watch_ready")
base = open(path).read()
totals, inner = [], []
try:
    for i in range(runs):
        time.sleep(0.5)
        t0 = time.monotonic()
        with open(path, "w") as f:
            f.write(base + f"\n-- save {i}\n")
        e = wait(event)
        totals.append((time.monotonic() - t0) * 1000)
        inner.append(e["data"]["ms"])
finally:
    open(path, "w").write(base)
p.send_signal(2)
p.wait(timeout=30)
print("| measure | median (ms) | min (ms) | max (ms) |")
print("|---|---|---|---|")
print(f"| save to `{event}` (debounce 80 ms included) | {statistics.median(totals):.0f} | {min(totals):.0f} | {max(totals):.0f} |")
print(f"| {label} (watch's own `ms`) | {statistics.median(inner):.0f} | {min(inner):.0f} | {max(inner):.0f} |")

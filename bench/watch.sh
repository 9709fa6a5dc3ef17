#!/usr/bin/env bash
# Watch benchmark: the demo copied to a scratch directory and built in
# Strata's local Postgres, then `strata watch` running while a staging view
# (stg_merchants) is saved RUNS times; reports the time from each save to
# the rebuild's `watch_rebuilt` event (parse, rebuild and tests included),
# and the rebuild's own duration as watch measures it.
# Usage: bench/watch.sh [RUNS]     (default 10; needs the PostgreSQL server package)
#
# bench/watch.sh --synthetic [N] [RUNS]   (default 10000 models, 10 saves):
# `strata watch --compile-only` on the shared synthetic project while a mart
# model is saved; reports save to `watch_compiled` and the re-parse +
# recompile time watch measures. No warehouse needed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ "${1:-}" = "--synthetic" ]; then
    N="${2:-10000}"; RUNS="${3:-10}"
    DIR="${BENCH_DIR:-/tmp/strata-bench}/synth_$N"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin strata
    BIN="$ROOT/target/release/strata"
    if [ ! -f "$DIR/dbt_project.yml" ]; then
        python3 "$ROOT/../shared/bench/gen_project.py" "$DIR" --models "$N" --force >/dev/null
        printf 'synth:\n  target: dev\n  outputs:\n    dev: {type: postgres, host: localhost, user: strata, dbname: synth, schema: synth}\n' > "$DIR/profiles.yml"
    fi
    cd "$DIR"
    python3 - "$BIN" "$RUNS" <<'PY'
import json, os, subprocess, sys, time, statistics, threading, queue
bin_, runs = sys.argv[1], int(sys.argv[2])
p = subprocess.Popen([bin_, "watch", "--compile-only", "--log-format", "json"],
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
path = "models/marts/" + sorted(f for f in os.listdir("models/marts") if f.endswith(".sql"))[5]
base = open(path).read()
totals, inner = [], []
try:
    for i in range(runs):
        time.sleep(0.5)
        t0 = time.monotonic()
        with open(path, "w") as f:
            f.write(base + f"\n-- save {i}\n")
        e = wait("watch_compiled")
        totals.append((time.monotonic() - t0) * 1000)
        inner.append(e["data"]["ms"])
finally:
    open(path, "w").write(base)
p.send_signal(2)
p.wait(timeout=30)
print("| measure | median (ms) | min (ms) | max (ms) |")
print("|---|---|---|---|")
print(f"| save to `watch_compiled` (debounce 80 ms included) | {statistics.median(totals):.0f} | {min(totals):.0f} | {max(totals):.0f} |")
print(f"| re-parse + recompile (watch's own `ms`) | {statistics.median(inner):.0f} | {min(inner):.0f} | {max(inner):.0f} |")
PY
    exit 0
fi
RUNS="${1:-10}"
DIR="${BENCH_DIR:-/tmp/strata-bench}/watch"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin strata
BIN="$ROOT/target/release/strata"
if [ -d "$DIR" ]; then (cd "$DIR" && "$BIN" pg stop >/dev/null 2>&1 || true); fi
rm -rf "$DIR"
mkdir -p "$DIR"
for item in dbt_project.yml selectors.yml profiles.yml models macros seeds snapshots data_tests analyses data; do
    cp -r "$ROOT/$item" "$DIR/"
done
cd "$DIR"
"$BIN" build -q
python3 - "$BIN" "$RUNS" <<'PY'
import json, subprocess, sys, time, statistics, threading, queue
bin_, runs = sys.argv[1], int(sys.argv[2])
p = subprocess.Popen([bin_, "watch", "--log-format", "json", "--no-preview"],
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
        e = q.get(timeout=60)
        if e.get("code") == code:
            return e
wait("watch_ready")
path = "models/staging/stg_merchants.sql"
base = open(path).read()
totals, inner = [], []
for i in range(runs):
    time.sleep(0.3)
    t0 = time.monotonic()
    with open(path, "w") as f:
        f.write(base + f"\n-- save {i}\n")
    e = wait("watch_rebuilt")
    totals.append((time.monotonic() - t0) * 1000)
    inner.append(e["data"]["ms"])
p.send_signal(2)
p.wait(timeout=30)
print("| measure | median (ms) | min (ms) | max (ms) |")
print("|---|---|---|---|")
print(f"| save to `watch_rebuilt` (debounce 80 ms included) | {statistics.median(totals):.0f} | {min(totals):.0f} | {max(totals):.0f} |")
print(f"| reparse + rebuild + tests (watch's own `ms`) | {statistics.median(inner):.0f} | {min(inner):.0f} | {max(inner):.0f} |")
PY
"$BIN" pg stop >/dev/null

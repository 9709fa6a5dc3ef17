#!/usr/bin/env bash
# Warehouse benchmark: `strata run --threads 4` of the 1,000-view synthetic project
# on Strata's local Postgres (first run, then reruns), its 2,037 data tests, and a
# 1,000,000-row seed.
# Usage: bench/run.sh        (needs the PostgreSQL server package)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GEN="$ROOT/../shared/bench/gen_project.py"
DIR="${BENCH_DIR:-/tmp/strata-bench}/run_1000"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release/strata"
if [ -d "$DIR" ]; then (cd "$DIR" && "$BIN" pg stop >/dev/null 2>&1 || true); fi
rm -rf "$DIR"
python3 "$GEN" "$DIR" --models 1000 --force >/dev/null 2>&1
cat > "$DIR/profiles.yml" <<'YML'
synth:
  target: dev
  outputs:
    dev:
      type: postgres
      local: true
      user: strata
      dbname: synth
      schema: synth
      threads: 4
YML
cd "$DIR"
t() { /usr/bin/time -f "%e s wall, %U s user, %S s sys" "$@" -q 2>&1 | tail -1; }
echo "| step | time |"
echo "|---|---|"
echo "| strata seed (creates the local cluster) | $(t "$BIN" seed) |"
echo "| strata run --threads 4, first run (1,000 views) | $(t "$BIN" run --threads 4) |"
echo "| strata run --threads 4, rerun | $(t "$BIN" run --threads 4) |"
echo "| strata test --threads 4 (2,037 data tests) | $(t "$BIN" test --threads 4) |"
python3 - <<'PY'
import random
r = random.Random(1)
with open("seeds/big_events.csv", "w") as f:
    f.write("id,customer_id,amount,status,created_at,flag\n")
    for i in range(1, 1_000_001):
        f.write(f"{i},{r.randint(1,5000)},{r.randint(1,100000)/100},{r.choice(['placed','shipped','returned'])},"
                f"2024-01-{(i%28)+1:02d} 10:{i%60:02d}:00,{'true' if i%2 else 'false'}\n")
PY
echo "| strata seed of 1,000,000 rows (52 MB CSV) | $(t "$BIN" seed -s big_events) |"
"$BIN" pg stop >/dev/null

#!/usr/bin/env bash
# Parse/compile benchmark on the shared synthetic projects (same generator as the
# dbt-core reference numbers). Usage: bench/compile.sh [N ...]   (default: 1000 10000)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GEN="$ROOT/../shared/bench/gen_project.py"
OUT="${BENCH_DIR:-/tmp/strata-bench}"
RUNS="${RUNS:-5}"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release/strata"
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(1000 10000)

printf '| models | command | median wall (s) | max RSS (MB) |\n|---|---|---|---|\n'
for n in "${sizes[@]}"; do
    dir="$OUT/synth_$n"
    if [ ! -f "$dir/dbt_project.yml" ]; then
        python3 "$GEN" "$dir" --models "$n" --force >/dev/null 2>&1
        cat > "$dir/profiles.yml" <<'YML'
synth:
  target: dev
  outputs:
    dev:
      type: postgres
      host: localhost
      user: strata
      dbname: synth
      schema: synth
      threads: 4
YML
    fi
    for cmd in parse compile; do
        walls=(); rss=0
        "$BIN" "$cmd" --project-dir "$dir" -q >/dev/null  # warm the page cache
        for _ in $(seq "$RUNS"); do
            line=$( { /usr/bin/time -f '%e %M' "$BIN" "$cmd" --project-dir "$dir" -q >/dev/null; } 2>&1 | tail -1)
            walls+=("${line% *}")
            r="${line#* }"; [ "$r" -gt "$rss" ] && rss=$r
        done
        median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        printf '| %s | %s | %s | %d |\n' "$n" "$cmd" "$median" $((rss / 1024))
    done
done

#!/usr/bin/env bash
# Parse/compile benchmark on the shared synthetic projects (same generator as the
# dbt-core reference numbers): parse and compile with the parse cache of the
# previous run (unchanged project), a compile after one model was edited,
# without any cache (--no-partial-parse), and a first compile into an empty
# target directory.
# Usage: bench/compile.sh [N ...]   (default: 1000 10000)
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
    measure() {  # label, then the command's arguments
        local label="$1"; shift
        local walls=() rss=0 line r
        for _ in $(seq "$RUNS"); do
            [ "$label" = "first compile, empty target" ] && rm -rf "$dir/target"
            [ "$label" = "compile, one model edited" ] && echo "-- edit $RANDOM" >> "$edited"
            line=$( { /usr/bin/time -f '%e %M' "$BIN" "$@" --project-dir "$dir" -q >/dev/null; } 2>&1 | tail -1)
            walls+=("${line% *}")
            r="${line#* }"; [ "$r" -gt "$rss" ] && rss=$r
        done
        median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        printf '| %s | %s | %s | %d |\n' "$n" "$label" "$median" $((rss / 1024))
    }
    edited=$(find "$dir/models" -name '*.sql' | sort | sed -n 1p)
    cp "$edited" "$OUT/edited.sql.orig"
    "$BIN" compile --project-dir "$dir" -q >/dev/null  # warm the page cache and the parse cache
    measure "parse, cached" parse
    measure "parse --no-partial-parse" parse --no-partial-parse
    "$BIN" compile --project-dir "$dir" -q >/dev/null  # the parses above rewrote manifest.json
    measure "compile, unchanged" compile
    measure "compile, one model edited" compile
    cp "$OUT/edited.sql.orig" "$edited"
    measure "compile --no-partial-parse" compile --no-partial-parse
    measure "first compile, empty target" compile
done

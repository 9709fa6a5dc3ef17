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
    mart="models/marts/$(ls models/marts | grep '[.]sql$' | sort | sed -n 6p)"
    python3 "$ROOT/bench/watch_saves.py" "$BIN" "$RUNS" "$mart" watch_compiled \
        "re-parse + recompile" --compile-only
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
python3 "$ROOT/bench/watch_saves.py" "$BIN" "$RUNS" models/staging/stg_merchants.sql \
    watch_rebuilt "reparse + rebuild + tests" --no-preview
"$BIN" pg stop >/dev/null

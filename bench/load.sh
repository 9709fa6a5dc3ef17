#!/usr/bin/env bash
# Load benchmark: ROWS transaction-shaped rows as day-partitioned Parquet
# loaded by `strata load` into Strata's local Postgres, beside `psql \copy`
# of the same rows as CSV (the physical limit here).
# Usage: bench/load.sh [ROWS] [FILES]     (default 10000000 20; needs the PostgreSQL server package)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROWS="${1:-10000000}"
FILES="${2:-20}"
DIR="${BENCH_DIR:-/tmp/strata-bench}/load_$ROWS"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin strata --example gen_transactions
BIN="$ROOT/target/release/strata"
GEN="$ROOT/target/release/examples/gen_transactions"
if [ -d "$DIR/proj" ]; then (cd "$DIR/proj" && "$BIN" pg stop >/dev/null 2>&1 || true); fi
rm -rf "$DIR"
mkdir -p "$DIR/proj/models"
"$GEN" "$DIR/data" "$ROWS" "$FILES"
cd "$DIR/proj"
cat > dbt_project.yml <<'YML'
name: loadbench
profile: loadbench
YML
cat > profiles.yml <<'YML'
loadbench:
  target: dev
  outputs:
    dev:
      type: postgres
      local: true
      user: strata
      dbname: loadbench
      schema: main
      threads: 4
YML
cat > models/sources.yml <<YML
version: 2
sources:
  - name: curated
    schema: raw
    tables:
      - name: transactions
        external:
          location: $DIR/data/parquet
          file_format: parquet
          partitions: [{name: dt, data_type: date}]
YML
"$BIN" debug >/dev/null   # starts the local cluster
URL="$("$BIN" pg url)"
PSQL=(psql "$URL" -q -v ON_ERROR_STOP=1)
command -v psql >/dev/null || PSQL=("$(ls /usr/lib/postgresql/*/bin/psql | head -1)" "$URL" -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c "create table if not exists public.copy_target (transaction_id text, customer_id text, merchant_id text, amount_cents bigint, currency text, status text, created_at timestamp)"
t0=$(date +%s.%N)
"${PSQL[@]}" -c "\\copy public.copy_target from '$DIR/data/transactions.csv' with (format csv, header true)"
t1=$(date +%s.%N)
psql_s=$(echo "$t1 - $t0" | bc)
/usr/bin/time -f "%e %M" -o "$DIR/strata.time" "$BIN" load -q
read -r strata_s strata_kb < "$DIR/strata.time"
rows=$("${PSQL[@]}" -tA -c "select count(*) from raw.transactions")
csv_mb=$(du -m "$DIR/data/transactions.csv" | cut -f1)
pq_mb=$(du -sm "$DIR/data/parquet" | cut -f1)
printf '| rows | tool | input | seconds | rows/s | max RSS (MB) |\n|---|---|---|---|---|---|\n'
printf '| %s | psql \\copy | CSV, %s MB | %.1f | %.0f | - |\n' "$rows" "$csv_mb" "$psql_s" "$(echo "$rows / $psql_s" | bc -l)"
printf '| %s | strata load | Parquet (snappy, %s files), %s MB | %.1f | %.0f | %d |\n' "$rows" "$FILES" "$pq_mb" "$strata_s" "$(echo "$rows / $strata_s" | bc -l)" "$((strata_kb / 1024))"
printf 'strata load reaches %.0f%% of psql \\copy throughput\n' "$(echo "100 * $psql_s / $strata_s" | bc -l)"
"$BIN" pg stop >/dev/null

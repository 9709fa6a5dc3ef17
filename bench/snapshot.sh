#!/usr/bin/env bash
# Snapshot benchmark, runnable against dbt-core (the reference) or any tool with the same CLI.
# 100,000-row source table raw.customers; two snapshots (check_cols='all' and timestamp on
# updated_at), each timed separately:
#   1. first `snapshot` (builds the snapshot tables),
#   2. second `snapshot` after 10% of the source rows changed,
#   3. third `snapshot` with nothing changed.
# Prints a Markdown table of wall seconds and checks the row counts after each step.
#
# Usage:
#   PGHOST=/tmp/pgsock PGPORT=5432 PGUSER=postgres DBT=/path/to/venv/bin/dbt bench/snapshot_dbt.sh
#   PGHOST=... PGPORT=... PGUSER=... TOOL=/path/to/strata bench/snapshot_dbt.sh
# Needs a running Postgres reachable with psql as PGHOST/PGPORT/PGUSER (PGPASSWORD if needed)
# whose user may create databases. TOOL takes precedence over DBT; it is called as
#   $TOOL snapshot --select NAME --profiles-dir DIR     (from inside the project directory)
# Optional env: ROWS (default 100000), SNAPBENCH_DB (default snapbench; dropped and recreated),
# KEEP=1 keeps the temporary project directory (its path is printed).
# (dbt-core reference venv: ../shared/tools/setup-dbt-reference.sh /tmp/dbtref)
set -euo pipefail

BIN="${TOOL:-${DBT:-}}"
[ -n "$BIN" ] || { echo "set TOOL=/path/to/tool or DBT=/path/to/dbt" >&2; exit 2; }
command -v "$BIN" >/dev/null 2>&1 || { echo "not executable: $BIN" >&2; exit 2; }
command -v psql >/dev/null 2>&1 || { echo "psql not found" >&2; exit 2; }
: "${PGHOST:?set PGHOST}" "${PGPORT:?set PGPORT}" "${PGUSER:?set PGUSER}"
export PGHOST PGPORT PGUSER
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
ROWS="${ROWS:-100000}"
DB="${SNAPBENCH_DB:-snapbench}"
export DO_NOT_TRACK=1 DBT_SEND_ANONYMOUS_USAGE_STATS=false

WORK="$(mktemp -d "${TMPDIR:-/tmp}/snapbench.XXXXXX")"
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

# --- fresh database and source data ---------------------------------------------------------
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "drop database if exists \"$DB\"" -c "create database \"$DB\"" >/dev/null
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
sql >/dev/null <<SQL
create schema raw;
create table raw.customers (id int primary key, name text, tier text, updated_at timestamp);
insert into raw.customers
select g, 'customer ' || g, (array['bronze','silver','gold'])[1 + g % 3],
       timestamp '2024-01-01' + g * interval '1 second'
from generate_series(1, $ROWS) g;
analyze raw.customers;
SQL

# --- project ----------------------------------------------------------------------------------
mkdir -p "$WORK/snapshots" "$WORK/models"
cat > "$WORK/dbt_project.yml" <<'YML'
name: snapbench
version: '1.0.0'
config-version: 2
profile: snapbench
model-paths: ["models"]
snapshot-paths: ["snapshots"]
YML
cat > "$WORK/profiles.yml" <<YML
snapbench:
  target: dev
  outputs:
    dev:
      type: postgres
      host: "$PGHOST"
      port: $PGPORT
      user: "$PGUSER"
      password: "${PGPASSWORD:-}"
      dbname: "$DB"
      schema: public
      threads: 1
YML
cat > "$WORK/models/sources.yml" <<'YML'
version: 2
sources:
  - name: raw
    schema: raw
    tables:
      - name: customers
YML
cat > "$WORK/snapshots/customers_check.sql" <<'SQL'
{% snapshot customers_check %}
{{ config(target_schema='snapshots', unique_key='id', strategy='check', check_cols='all') }}
select * from {{ source('raw', 'customers') }}
{% endsnapshot %}
SQL
cat > "$WORK/snapshots/customers_ts.sql" <<'SQL'
{% snapshot customers_ts %}
{{ config(target_schema='snapshots', unique_key='id', strategy='timestamp', updated_at='updated_at') }}
select * from {{ source('raw', 'customers') }}
{% endsnapshot %}
SQL

# --- helpers ----------------------------------------------------------------------------------
# Runs one snapshot and prints its wall seconds; on failure shows the tool's output and exits.
timed_snapshot() {
  local name="$1" log="$WORK/$1.$2.log" t0 t1
  t0=$(date +%s.%N)
  if ! (cd "$WORK" && "$BIN" snapshot --select "$name" --profiles-dir "$WORK") >"$log" 2>&1; then
    echo "FAILED: $BIN snapshot --select $name (step $2)" >&2; tail -40 "$log" >&2; exit 1
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
# Checks total rows and current rows (dbt_valid_to is null) of a snapshot table.
expect_counts() {
  local tbl="$1" total="$2" current="$3" got
  got=$(sql -c "select count(*) || ' ' || count(*) filter (where dbt_valid_to is null) from snapshots.$tbl")
  if [ "$got" != "$total $current" ]; then
    echo "BAD COUNTS: snapshots.$tbl has total/current = $got, expected $total $current" >&2; exit 1
  fi
}

CHANGED=$(( ROWS / 10 ))
VERSION=$("$BIN" --version 2>&1 || true)
echo "tool: $BIN ($(printf '%s\n' "$VERSION" | grep -m1 -Ei 'installed|[0-9]+\.[0-9]+' | sed 's/^ *//'))"
echo "rows: $ROWS, changed in step 2: $CHANGED"
echo
declare -A T

# 1. first snapshot
T[1c]=$(timed_snapshot customers_check 1)
T[1t]=$(timed_snapshot customers_ts 1)
expect_counts customers_check "$ROWS" "$ROWS"
expect_counts customers_ts "$ROWS" "$ROWS"

# 2. 10% of rows changed
sql -c "update raw.customers set tier = tier || 'x', updated_at = updated_at + interval '1 day' where id % 10 = 0" >/dev/null
sql -c "analyze raw.customers" >/dev/null
T[2c]=$(timed_snapshot customers_check 2)
T[2t]=$(timed_snapshot customers_ts 2)
expect_counts customers_check $(( ROWS + CHANGED )) "$ROWS"
expect_counts customers_ts $(( ROWS + CHANGED )) "$ROWS"

# 3. nothing changed
T[3c]=$(timed_snapshot customers_check 3)
T[3t]=$(timed_snapshot customers_ts 3)
expect_counts customers_check $(( ROWS + CHANGED )) "$ROWS"
expect_counts customers_ts $(( ROWS + CHANGED )) "$ROWS"

echo "| step | check | timestamp |"
echo "|---|---|---|"
echo "| 1. first snapshot ($ROWS rows) | ${T[1c]} s | ${T[1t]} s |"
echo "| 2. after $CHANGED rows changed | ${T[2c]} s | ${T[2t]} s |"
echo "| 3. nothing changed | ${T[3c]} s | ${T[3t]} s |"
echo
echo "row counts verified: after step 2 and 3 each snapshot has $(( ROWS + CHANGED )) rows, $ROWS current"

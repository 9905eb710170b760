#!/usr/bin/env bash
# Batch prediction benchmark (docs/batch.md): N rows (default 1,000,000) of the churn features from Parquet into
# a PostgreSQL table through Slipway, next to one Python script doing pandas read + the model's predict() +
# COPY on the same data, and the pure predict() throughput measured in that script. Target: Slipway's rows/s
# ≥ 0.8× the pure predict() rows/s.
#
#   ./bench/batch/run.sh [--rows N] [--chunk-size N] [--parallelism N]
#
# Environment: SLIPWAY_BIN (default bin/slipway, built when missing), PYTHON (default /usr/bin/python3),
# WORK (scratch folder, default a new temp folder, removed at the end unless KEEP=1).
# Starts a throwaway PostgreSQL cluster (Debian's /usr/lib/postgresql/*/bin; as root, run as the postgres user)
# and a Slipway server, both stopped at exit. Writes bench/results/batch-<UTC timestamp>.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

rows=1000000 chunk=10000 par=2
while (($#)); do
  case $1 in
    --rows) rows=${2:?}; shift ;;
    --chunk-size) chunk=${2:?}; shift ;;
    --parallelism) par=${2:?}; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

py=${PYTHON:-/usr/bin/python3}
bin=${SLIPWAY_BIN:-$root/bin/slipway}
[[ -x $bin ]] || go build -o "$bin" ./cmd/slipway
./examples/build.sh >/dev/null

work=${WORK:-$(mktemp -d /tmp/slipway-batch-bench-XXXXXX)}
mkdir -p "$work"
chmod 755 "$work"
pgbin=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[[ -x $pgbin/initdb ]] || { echo "run.sh: PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2; exit 1; }
asPG=()
if [[ $(id -u) == 0 ]]; then asPG=(runuser -u postgres --); fi

server_pid=""
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [[ -d $work/pg/data ]] && "${asPG[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT

echo "== data: $rows rows resampled from examples/data/churn.csv"
mkdir -p "$work/imports"
go run ./bench/batch/gen -rows "$rows" -out "$work/imports"
ls -l "$work/imports" | tail -n +2

echo "== PostgreSQL ($pgbin)"
mkdir -p "$work/pg"
[[ ${#asPG[@]} -gt 0 ]] && chown postgres "$work/pg"
"${asPG[@]}" "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null
"${asPG[@]}" mkdir -p "$work/pg/sock"
for attempt in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  if "${asPG[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$work/pg/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null; then
    break
  fi
  grep -q "could not bind\|already in use" "$work/pg/server.log" || { cat "$work/pg/server.log" >&2; exit 1; }
done
psql=("${asPG[@]}" psql -h "$work/pg/sock" -p "$port" -U postgres)
"${psql[@]}" -d postgres -q -c "CREATE DATABASE bench"

echo "== Slipway server"
"$bin" server --data-dir "$work/data" --addr 127.0.0.1:0 --import-dir "$work/imports" \
  --connection "pg=postgres://postgres@127.0.0.1:$port/bench?sslmode=disable" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 600); do
  addr=$(grep -o 'addr=http://127.0.0.1:[0-9]*' "$work/server.log" | head -1 | cut -d= -f2 || true)
  [[ -n $addr ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
export SLIPWAY_URL=$addr SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
"$bin" models push examples/sklearn-churn --model churn --metadata examples/sklearn-churn/metadata.json --alias champion >/dev/null

echo "== Slipway: Parquet → PostgreSQL (chunk $chunk, parallelism $par)"
t0=$(date +%s.%N)
"$bin" batch run --model churn@champion --import-path customers.parquet --key customer_id \
  --output-table scores --connection pg --chunk-size "$chunk" --parallelism "$par" -o json >"$work/run.json"
t1=$(date +%s.%N)
count=$("${psql[@]}" -d bench -A -t -c "SELECT COUNT(*) FROM scores")
dups=$("${psql[@]}" -d bench -A -t -c "SELECT COUNT(*) - COUNT(DISTINCT customer_id) FROM scores")
[[ $count == "$rows" && $dups == 0 ]] || { echo "run.sh: the table has $count rows ($dups duplicates), want $rows" >&2; exit 1; }
read -r slip_wall slip_server < <("$py" - "$work/run.json" "$t0" "$t1" "$rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
print(round(int(sys.argv[4]) / wall), round(r["rows_per_second"]))
PY
)

echo "== Slipway: Parquet → Parquet file (no database: Slipway's own overhead)"
t2=$(date +%s.%N)
"$bin" batch run --model churn@champion --import-path customers.parquet --key customer_id \
  --output-format parquet --chunk-size "$chunk" --parallelism "$par" -o json >"$work/run-file.json"
t3=$(date +%s.%N)
slip_file=$("$py" -c "import sys; print(round(int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2]))))" "$rows" "$t2" "$t3")

echo "== Python baseline: pandas read_csv + predict() + COPY (psql)"
base=$("$py" bench/batch/baseline.py --csv "$work/imports/customers.csv" --model-dir examples/sklearn-churn \
  --psql "${asPG[*]} psql -h $work/pg/sock -p $port -U postgres -d bench" --chunk-size "$chunk")
echo "$base"

mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report=bench/results/batch-$stamp.md
"$py" - "$base" "$slip_wall" "$slip_server" "$rows" "$chunk" "$par" "$report" "$slip_file" <<'PY'
import json, os, platform, subprocess, sys
b = json.loads(sys.argv[1]); wall, server, rows, chunk, par, report = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
to_file = int(sys.argv[8])
pure = b["pure_predict_rows_per_s"]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [
    "# Batch predictions benchmark", "",
    f"{rows} rows of the churn features, Parquet → PostgreSQL table; chunk {chunk}, parallelism {par}; "
    f"{os.cpu_count()} CPUs, {platform.platform()}, commit {commit}.", "",
    "| what | rows/s |", "|---|---:|",
    f"| Slipway, end to end (CLI start → SUCCEEDED, replica start-up included) | {wall:,} |",
    f"| Slipway, as the run reports it (rows_per_second) | {server:,} |",
    f"| Slipway, Parquet → Parquet file output (no database), end to end | {to_file:,} |",
    f"| Python script: read_csv + predict() + COPY | {b['pipeline_rows_per_s']:,} |",
    f"| COPY alone (psql, the script's CSV, nothing else running): the database's ceiling | {b['copy_only_rows_per_s']:,} |",
    f"| pure predict(), chunks of {chunk} | {pure:,} |",
    f"| pure predict(), one call on all rows | {b['pure_predict_one_call_rows_per_s']:,} |", "",
    f"Slipway end to end / pure predict(): **{wall / pure:.2f}×** (target ≥ 0.8×); as reported: {server / pure:.2f}×; "
    f"vs the Python script: {wall / b['pipeline_rows_per_s']:.2f}×; vs COPY alone: {wall / b['copy_only_rows_per_s']:.2f}×; "
    f"file output / pure predict(): {to_file / pure:.2f}×.", "",
    f"Python script phases: read {b['read_s']} s, predict {b['predict_s']} s, write {b['write_s']} s (of which COPY {b['copy_only_s']} s).",
]
open(report, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo
echo "Report: $report"

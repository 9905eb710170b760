#!/usr/bin/env bash
# Batch prediction benchmark (docs/batch.md, docs/benchmarks.md): N rows (default 1,000,000) of the churn
# features scored by Slipway from Parquet into a PostgreSQL table and into Parquet/CSV files, next to the
# baselines measured in the same run on the same data: one Python script doing pandas read + the model's
# predict() + COPY, COPY alone, pure predict() (the model's own speed), the zero-overhead ceiling of the
# pipeline (predict and COPY back to back, nothing else), and a model-bound case (a RandomForest).
# Target: Slipway's rows/s ≥ 0.8× pure predict(). Every Slipway run also records CPU seconds by process
# (server, replicas, PostgreSQL): wall-clock figures on a shared machine are noisy, CPU per row is not.
#
#   ./bench/batch/run.sh [--rows N] [--chunk-size N] [--parallelism N] [--repeat N] [--no-forest]
#
# --repeat (default 3): runs of each logistic-regression case, the best is reported (noise only slows).
# --no-forest: skip the RandomForest case (same rows; ~7 µs/row, ten times the logistic regression's).
# Environment: SLIPWAY_BIN (default bin/slipway, built when missing), PYTHON (default /usr/bin/python3),
# WORK (scratch folder, default a new temp folder, removed at the end unless KEEP=1), PPROF=1 (save a CPU
# profile of the server during the first PostgreSQL run next to the report).
# Starts a throwaway PostgreSQL cluster (Debian's /usr/lib/postgresql/*/bin; as root, run as the postgres user)
# and a Slipway server, both stopped at exit. Writes bench/results/batch-<UTC timestamp>.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

rows=1000000 chunk=10000 par=2 repeat=3 forest=1
while (($#)); do
  case $1 in
    --rows) rows=${2:?}; shift ;;
    --chunk-size) chunk=${2:?}; shift ;;
    --parallelism) par=${2:?}; shift ;;
    --repeat) repeat=${2:?}; shift ;;
    --no-forest) forest=0 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
mkdir -p "$work/imports" "$work/results"
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
pg_pid=$(head -1 "$work/pg/data/postmaster.pid")
psql=("${asPG[@]}" psql -h "$work/pg/sock" -p "$port" -U postgres)
"${psql[@]}" -d postgres -q -c "CREATE DATABASE bench"

echo "== Slipway server"
debug=()
[[ ${PPROF:-0} == 1 ]] && debug=(--debug-addr 127.0.0.1:0)
"$bin" server --data-dir "$work/data" --addr 127.0.0.1:0 --import-dir "$work/imports" "${debug[@]}" \
  --connection "pg=postgres://postgres@127.0.0.1:$port/bench?sslmode=disable" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 600); do
  addr=$(grep -o 'slipway listening" addr=http://127.0.0.1:[0-9]*' "$work/server.log" | head -1 | cut -d= -f2 || true)
  [[ -n $addr ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
export SLIPWAY_URL=$addr SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
"$bin" models push examples/sklearn-churn --model churn --metadata examples/sklearn-churn/metadata.json --alias champion >/dev/null
if ((forest)); then
  "$py" examples/sklearn-churn/train.py --model forest --out "$work/forest" >/dev/null
  "$bin" models push "$work/forest" --model churn-forest --metadata "$work/forest/metadata.json" --alias champion >/dev/null
fi

# slip NAME MODEL INPUT PARALLELISM OUTPUT-FLAGS...: one Slipway run through the API (bench/batch/slip.py: its
# JSON, created_at → finished_at is the end-to-end time on the server's clock, replica start-up included, and the
# rate after the first committed chunk) and CPU seconds by process, in $work/results.
slip() {
  local name=$1 model=$2 input=$3 p=$4
  shift 4
  rm -f "$work/results/$name.ready"
  "$py" bench/batch/cpu.py --out "$work/results/$name.cpu.json" --ready "$work/results/$name.ready" "$server_pid" "$pg_pid" &
  local cpu=$!
  while [[ ! -e $work/results/$name.ready ]]; do sleep 0.05; done
  "$py" bench/batch/slip.py --out "$work/results/$name.json" --model "$model" --path "$input" \
    --chunk-size "$chunk" --parallelism "$p" "$@"
  kill "$cpu"
  wait "$cpu" || true
}

for i in $(seq 1 "$repeat"); do
  echo "== Slipway: Parquet → PostgreSQL (chunk $chunk, parallelism $par), run $i/$repeat"
  if [[ $i == 1 && ${PPROF:-0} == 1 ]]; then
    dbg=$(grep -o 'pprof listening" addr=http://127.0.0.1:[0-9]*' "$work/server.log" | head -1 | cut -d= -f2)
    curl -s -o "$work/results/server.pprof" "$dbg/debug/pprof/profile?seconds=5" &
    prof_pid=$!
  fi
  slip "pg-$i" churn customers.parquet "$par" --table "scores_$i" --connection pg
  count=$("${psql[@]}" -d bench -A -t -c "SELECT COUNT(*) FROM scores_$i")
  dups=$("${psql[@]}" -d bench -A -t -c "SELECT COUNT(*) - COUNT(DISTINCT customer_id) FROM scores_$i")
  [[ $count == "$rows" && $dups == 0 ]] || { echo "run.sh: the table has $count rows ($dups duplicates), want $rows" >&2; exit 1; }
  echo "== Slipway: Parquet → Parquet file, Parquet → CSV file (no database), run $i/$repeat"
  slip "parquet-$i" churn customers.parquet "$par" --format parquet
  slip "csv-$i" churn customers.parquet "$par" --format csv
done
[[ -n ${prof_pid:-} ]] && wait "$prof_pid"

echo "== Python baseline: pandas read_csv + predict() + COPY (psql), pure predict(), COPY alone"
"$py" bench/batch/baseline.py --csv "$work/imports/customers.csv" --model-dir examples/sklearn-churn \
  --psql "${asPG[*]} psql -h $work/pg/sock -p $port -U postgres -d bench" --chunk-size "$chunk" | tee "$work/results/baseline.json"

if ((forest)); then
  echo "== Model-bound case: RandomForest, the same rows"
  slip forest-1 churn-forest customers.parquet 1 --format parquet
  slip forest-pg churn-forest customers.parquet "$par" --table forest_scores --connection pg
  "$py" bench/batch/baseline.py --csv "$work/imports/customers.csv" --model-dir "$work/forest" --psql - \
    --chunk-size "$chunk" --predict-only | tee "$work/results/forest-baseline.json"
fi

mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report=bench/results/batch-$stamp.md
[[ -f $work/results/server.pprof ]] && cp "$work/results/server.pprof" "bench/results/batch-$stamp-server.pprof"
"$py" bench/batch/report.py --results "$work/results" --rows "$rows" --chunk "$chunk" --parallelism "$par" \
  --repeat "$repeat" --forest "$forest" --load "$(cut -d' ' -f1-3 /proc/loadavg)" >"$report"
cat "$report"
echo
echo "Report: $report"

#!/usr/bin/env bash
# Slipway serving benchmark (see bench/README.md). `make bench` builds bin/slipway and the examples, then runs this.
#
#   ./bench/run.sh [--quick] [--duration 10s] [--warmup 2s] [--rounds 5] [--only LIST] [--loadgen-cpus LIST] [--wrk]
#
#   --quick             3 s per cell after a 1 s warm-up (smoke run, noisier figures)
#   --duration D        measured window per cell (default 10s); --warmup D: unrecorded load before it (default 2s)
#   --rounds N          interleaved rounds for the ONNX / ceiling ratios (default 5; 0: the grid cells only)
#   --only LIST         comma-separated subset of: ceiling,flask,onnx,python,batching,pyfast (default: all)
#   --loadgen-cpus LIST run the load generator under `taskset -c LIST` (e.g. 0 on a 4-core machine, servers elsewhere)
#   --wrk               also cross-check each target at c=32, 1 row with wrk (req/s and latency as wrk measures them)
#
# Environment: SLIPWAY_BIN (default bin/slipway), PYTHON (default /usr/bin/python3), GUNICORN (default gunicorn),
# UVICORN (default: $PYTHON -m uvicorn), BENCH_BASELINE_CLASS (batch or normal, default batch: the Linux scheduling
# class the baselines run in; Slipway's server puts its own threads under SCHED_BATCH, --server-scheduling, and a
# ratio is to compare the work done, not the classes: normal is for a Slipway binary older than that default).
# Writes bench/results/<UTC timestamp>.md (and .jsonl, the raw cells) and prints the table and the ratios.
# The verdicts (PASS/MISS) are information: the exit status is 1 only when something could not be run that
# should have (a baseline did not start, a deployment FAILED, a preflight request was refused).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

duration=10s warmup=2s only=all loadgen_cpus="" use_wrk=0 quick=0 rounds=5
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --quick) quick=1 duration=3s warmup=1s ;;
    --duration) duration=${2:?--duration needs a value}; shift ;;
    --warmup) warmup=${2:?--warmup needs a value}; shift ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift
      [[ $rounds =~ ^[0-9]+$ ]] || { echo "run.sh: --rounds needs a number, got $rounds" >&2; exit 2; } ;;
    --only) only=${2:?--only needs a list}; shift ;;
    --loadgen-cpus) loadgen_cpus=${2:?--loadgen-cpus needs a CPU list}; shift ;;
    --wrk) use_wrk=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
want() { [[ $only == all || ,$only, == *,$1,* ]]; }
case ${BENCH_BASELINE_CLASS:-batch} in
  batch) baseline_class=(chrt --batch 0) ;; # chrt execs the baseline: its pid is the server's
  normal) baseline_class=() ;;
  *) echo "run.sh: BENCH_BASELINE_CLASS must be batch or normal, got ${BENCH_BASELINE_CLASS}" >&2; exit 2 ;;
esac
for t in ${only//,/ }; do
  [[ $t == all || $t =~ ^(ceiling|flask|onnx|python|batching|pyfast)$ ]] || { echo "run.sh: unknown target $t in --only" >&2; exit 2; }
done

PY=${PYTHON:-/usr/bin/python3}
GUNICORN=${GUNICORN:-gunicorn}
SLIPWAY=${SLIPWAY_BIN:-$root/bin/slipway}
work=$root/bench/work
logs=$work/logs
ts=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$root/bench/results"
jsonl=$root/bench/results/$ts.jsonl
md=$root/bench/results/$ts.md
failures=0

say() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'run.sh: ERROR: %s\n' "$*" >&2; failures=$((failures + 1)); }

# ---- processes: every one started here is stopped on exit, by pid ----
pids=()
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do # 30 s for a graceful stop (the server drains and stops its replicas)
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: pid $pid did not stop on SIGTERM, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  pids=()
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

# start LOG CMD...: runs CMD in the background with stdout+stderr in LOG; sets $started to its pid.
start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  started=$!
  pids+=("$started")
}
# stop PID: stops one process started here.
stop() {
  local pid=$1 p keep=()
  stop_pid "$pid"
  for p in "${pids[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}
# wait_for LOG PID REGEX [SECONDS]: prints the first match of REGEX (grep -oE) in LOG once it appears.
wait_for() {
  local log=$1 pid=$2 re=$3 secs=${4:-60} i m
  for ((i = 0; i < secs * 10; i++)); do
    m=$(grep -oE "$re" "$log" 2>/dev/null | head -n1 || true)
    [[ -n $m ]] && { echo "$m"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "exited before it was listening; last lines of $log:" >&2; tail -n 15 "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "not listening after ${secs}s; last lines of $log:" >&2
  tail -n 15 "$log" >&2
  return 1
}

# ---- results ----
json_str() { # a bash string as a JSON string literal
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/ }; s=${s//$'\r'/ }; s=${s//$'\t'/ }
  printf '"%s"' "$s"
}
# skip TARGET REASON: records that a target was not measured, and why (shown in the table and the ratios).
skip() {
  printf '{"meta":{"target":%s},"skipped":%s}\n' "$(json_str "$1")" "$(json_str "$2")" >>"$jsonl"
  printf 'run.sh: %s NOT MEASURED: %s\n' "$1" "$2" >&2
}

lg_prefix=()
[[ -n $loadgen_cpus ]] && lg_prefix=(taskset -c "$loadgen_cpus")
# measure TARGET ROWS C URL BODY [loadgen args...]: one cell. loadgen also splits the CPU time of the window into
# the target ($target_pid and its descendants), itself and everything else: the "other" share shows a cell
# measured while something else ran on the machine.
target_pid=0
measure() {
  local target=$1 rows=$2 c=$3 url=$4 body=$5
  shift 5
  "${lg_prefix[@]}" "$work/bin/loadgen" -url "$url" -body-file "$body" -c "$c" -duration "$duration" -warmup "$warmup" \
    -label "$target rows=$rows" -meta "target=$target" -meta "rows=$rows" -json "$jsonl" -expect predictions \
    -watch-pid "$target_pid" "$@" ||
    fail "loadgen failed for $target rows=$rows c=$c"
}
# grid TARGET URL BODY_PREFIX [loadgen args...]: payloads of 1 and 100 rows × concurrency 1, 8, 32.
grid() {
  local target=$1 url=$2 prefix=$3 rows c
  shift 3
  for rows in 1 100; do
    for c in 1 8 32; do
      measure "$target" "$rows" "$c" "$url" "$prefix-$rows.json" "$@"
    done
  done
}
# preflight TARGET URL BODY [curl args...]: one request that must answer 2xx before load is applied.
preflight() {
  local target=$1 url=$2 body=$3 code out=$logs/preflight-$1.txt
  shift 3
  code=$(curl -sS --max-time 120 -o "$out" -w '%{http_code}' -H 'Content-Type: application/json' "$@" \
    --data-binary "@$body" "$url" 2>>"$out") || code=000
  if [[ $code != 2* ]]; then
    fail "$target: preflight POST $url answered HTTP $code: $(head -c 400 "$out")"
    skip "$target" "preflight request answered HTTP $code: $(head -c 200 "$out")"
    return 1
  fi
  printf '%s preflight: HTTP %s %s\n' "$target" "$code" "$(head -c 160 "$out")" >&2
}
# cross_check TARGET URL BODY [AUTH]: wrk at c=32 with the 1-row payload (when --wrk).
wrk_lines=()
cross_check() {
  ((use_wrk)) || return 0
  local target=$1 url=$2 body=$3 auth=${4:-} out=$logs/wrk-$1.txt
  BODY_FILE=$body AUTH=$auth wrk -t2 -c32 -d"$duration" --latency -s "$root/bench/wrk-post.lua" "$url" >"$out" 2>&1 ||
    { fail "wrk failed for $target: $(tail -n 3 "$out")"; return 0; }
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  errs=$(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd ';' - || true)
  wrk_lines+=("| $target | 1 | 32 | $rps | $p50 | $p99 | ${errs:-0} |")
  printf '%s wrk c=32: %s req/s, p50 %s, p99 %s %s\n' "$target" "$rps" "$p50" "$p99" "$errs"
}

# background_cpu: percentage of the machine's CPU busy over one second (run while nothing of ours is running).
background_cpu() {
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 1
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 idle i
  for ((i = 1; i < ${#a[@]}; i++)); do total=$((total + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5])) # idle + iowait
  ((total > 0)) && echo $((100 * (total - idle) / total)) || echo 0
}

# ---- build and prepare ----
say "preparing bench/work (fresh)"
rm -rf "$work"
mkdir -p "$work/bin" "$logs" "$work/payloads"
[[ -x $SLIPWAY ]] || { say "building bin/slipway"; make -C "$root" build; }
[[ -e examples/sklearn-churn/model.pkl && -e examples/onnx-churn/model.onnx ]] || ./examples/build.sh
go build -o "$work/bin/" ./bench/loadgen ./bench/report ./bench/baseline/gohttp
command -v curl >/dev/null || { echo "run.sh: curl is required" >&2; exit 1; }
((use_wrk)) && { command -v wrk >/dev/null || { echo "run.sh: --wrk needs wrk (apt-get install wrk)" >&2; exit 1; }; }

# Payloads: the first 1 and 100 rows of examples/data/churn.csv, as the ONNX model's tensor (MLflow "inputs",
# the 4 numeric features) and as an MLflow dataframe_split of the 5 features (the Python model and Flask).
"$PY" - "$root/examples/data/churn.csv" "$work/payloads" <<'EOF'
import csv, json, os, sys
src, out = sys.argv[1], sys.argv[2]
features = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]
with open(src) as f:
    rows = [r for _, r in zip(range(100), csv.DictReader(f))]
for n in (1, 100):
    part = rows[:n]
    tensor = [[float(r[c]) for c in features if c != "plan"] for r in part]
    frame = [[r[c] if c == "plan" else float(r[c]) for c in features] for r in part]
    with open(os.path.join(out, "tensor-%d.json" % n), "w") as f:
        json.dump({"inputs": tensor}, f)
    with open(os.path.join(out, "frame-%d.json" % n), "w") as f:
        json.dump({"dataframe_split": {"columns": features, "data": frame}}, f)
EOF

busy_before=$(background_cpu)
if ((busy_before > 15)); then
  echo "run.sh: WARNING: the machine is already ${busy_before}% busy before the benchmark starts: figures will be noisy" >&2
fi
{
  echo "# Slipway serving benchmark, $ts"
  echo
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- machine: $(lscpu 2>/dev/null | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
  echo "- load generator: bench/loadgen on the same machine${loadgen_cpus:+ (taskset -c $loadgen_cpus)}, closed loop, keep-alive; ${warmup} warm-up then ${duration} measured per cell$( ((quick)) && echo ' (--quick)')"
  echo "- $(go version | cut -d' ' -f3), Python $("$PY" -c 'import platform, sklearn, pandas; print(platform.python_version(), "scikit-learn", sklearn.__version__, "pandas", pandas.__version__)'), $("$GUNICORN" --version 2>&1 | head -n1)"
  echo "- baselines (Go ceiling, Python peers) run under $( ((${#baseline_class[@]})) && echo SCHED_BATCH || echo 'the default policy'), as Slipway's server runs its own threads by default (BENCH_BASELINE_CLASS=${BENCH_BASELINE_CLASS:-batch})"
  echo "- background CPU use (1 s sample before the run, nothing of the benchmark running): ${busy_before}%"
  echo "- CPU columns: share of all $(nproc) CPUs during each window used by the target (server and its processes), the load generator, and everything else"
  echo "- req/s counts 2xx responses; latencies are of 2xx responses (ms); errors are non-2xx and transport failures"
  echo
} >"$md"

# ---- 1. ceiling: bare Go net/http ----
if want ceiling; then
  say "ceiling: bare Go net/http handler"
  start "$logs/gohttp.log" "${baseline_class[@]}" "$work/bin/gohttp" -addr 127.0.0.1:0
  target_pid=$started
  if addr=$(wait_for "$logs/gohttp.log" "$started" 'addr=http://[^ ]+' 30); then
    url=${addr#addr=}/invocations
    if preflight ceiling "$url" "$work/payloads/tensor-1.json"; then
      grid ceiling "$url" "$work/payloads/tensor"
      cross_check ceiling "$url" "$work/payloads/tensor-1.json"
    fi
  else
    fail "the Go ceiling server did not start"
    skip ceiling "the Go ceiling server did not start (see bench/work/logs/gohttp.log)"
  fi
  stop "$started"
fi

# ---- 3b. flask-gunicorn: what `mlflow models serve` runs, 2 sync workers ----
if want flask; then
  say "flask-gunicorn: Flask app under gunicorn, 2 sync workers, examples/sklearn-churn/model.pkl"
  start "$logs/gunicorn.log" "${baseline_class[@]}" "$GUNICORN" --workers 2 --worker-class sync --timeout 60 --bind 127.0.0.1:0 \
    --chdir "$root/bench/baseline" flask_app:app
  target_pid=$started
  if addr=$(wait_for "$logs/gunicorn.log" "$started" 'Listening at: http://[^ ]+' 60); then
    url=${addr#Listening at: }/invocations
    if preflight flask-gunicorn "$url" "$work/payloads/frame-1.json"; then
      grid flask-gunicorn "$url" "$work/payloads/frame"
      cross_check flask-gunicorn "$url" "$work/payloads/frame-1.json"
    fi
  else
    fail "gunicorn did not start"
    skip flask-gunicorn "gunicorn did not start (see bench/work/logs/gunicorn.log)"
  fi
  stop "$started"
fi

# ---- 2, 3a, 4: Slipway deployments ----
slipway_targets=()
want onnx && slipway_targets+=(slipway-onnx slipway-onnx-batch)
want python && slipway_targets+=(slipway-python slipway-python-batch)
want batching && slipway_targets+=(slipway-forest-nobatch slipway-forest-batch)
want pyfast && slipway_targets+=(slipway-pywide slipway-pywide-batch)

# api METHOD PATH [BODY]: calls the Slipway API; sets $api_code and $api_body.
api() {
  local out=$logs/api.out
  api_code=$(curl -sS --max-time 60 -o "$out" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$slipway_url$2" 2>>"$logs/api.err") || api_code=000
  api_body=$(cat "$out" 2>/dev/null || true)
}
# field JSON KEY: a top-level field of a JSON object ("" when absent).
field() { "$PY" -c 'import json, sys
try: v = json.loads(sys.argv[1]).get(sys.argv[2], "")
except Exception: v = ""
print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"; }
# push NAME SRC METADATA: registers a model version with the CLI; prints the CLI output on failure.
push() {
  local name=$1 src=$2 meta=$3
  if ! SLIPWAY_URL=$slipway_url SLIPWAY_TOKEN=$token "$SLIPWAY" models push "$src" --model "$name" --metadata "$meta" \
    >"$logs/push-$name.log" 2>&1; then
    tail -n 20 "$logs/push-$name.log" >&2
    return 1
  fi
}
# deploy TARGET NAME MODEL BATCHING_JSON [MORE_JSON]: creates a 2-replica deployment (with MORE_JSON's fields, e.g.
# "isolation": "in-process") and waits until it is ACTIVE.
no_api=""
deploy() {
  local target=$1 name=$2 model=$3 batching=$4 more=${5:-} state reason i
  if [[ -n $no_api ]]; then skip "$target" "$no_api"; return 1; fi
  api POST /api/v1/deployments "{\"name\": \"$name\", \"model\": \"$model\", \"replicas\": 2${batching:+, \"batching\": $batching}${more:+, $more}}"
  if [[ $api_code == 404 || $api_code == 405 ]] && [[ $api_body == *"no route"* || $api_code == 405 ]]; then
    no_api="this server has no deployments API yet (POST /api/v1/deployments answered HTTP $api_code: $(field "$api_body" detail))"
    skip "$target" "$no_api"
    return 1
  fi
  if [[ $api_code != 2* ]]; then
    fail "$target: creating deployment $name answered HTTP $api_code: $api_body"
    skip "$target" "creating the deployment answered HTTP $api_code: $(field "$api_body" detail)"
    return 1
  fi
  for ((i = 0; i < 600; i++)); do # up to 5 minutes for the replicas to load the model
    api GET "/api/v1/deployments/$name"
    state=$(field "$api_body" state)
    reason=$(field "$api_body" reason)
    case $state in
      ACTIVE) echo "deployment $name ACTIVE after $((i / 2)) s" >&2; return 0 ;;
      FAILED)
        fail "$target: deployment $name FAILED: $reason"
        skip "$target" "deployment FAILED: $reason"
        return 1 ;;
    esac
    sleep 0.5
  done
  fail "$target: deployment $name not ACTIVE after 5 minutes (state ${state:-?}, HTTP $api_code: ${reason:-$api_body})"
  skip "$target" "deployment not ACTIVE after 5 minutes (state ${state:-unknown})"
  return 1
}
# undeploy NAME: deletes a deployment so its replicas do not compete for the CPU with the next target.
# serve_grid TARGET MODEL BATCHING_JSON PAYLOAD: deploys MODEL (2 replicas) as TARGET, measures the grid with
# bench/work/payloads/PAYLOAD-{1,100}.json, removes the deployment.
serve_grid() {
  local target=$1 model=$2 batching=$3 payload=$4 url
  say "$target: $model via /deployments/$target/invocations${batching:+, batching $batching}"
  deploy "$target" "$target" "$model" "$batching" || return 0
  url=$slipway_url/deployments/$target/invocations
  if preflight "$target" "$url" "$work/payloads/$payload-1.json" -H "Authorization: Bearer $token"; then
    grid "$target" "$url" "$work/payloads/$payload" "${auth[@]}"
    cross_check "$target" "$url" "$work/payloads/$payload-1.json" "Bearer $token"
  fi
  undeploy "$target"
}
undeploy() {
  api DELETE "/api/v1/deployments/$1"
  local i
  for ((i = 0; i < 60; i++)); do
    api GET "/api/v1/deployments/$1"
    [[ $api_code == 404 ]] && return 0
    sleep 0.5
  done
  echo "run.sh: deployment $1 still present 30 s after DELETE (HTTP $api_code); continuing" >&2
}

# onnx_rounds: the ONNX ratios measured again in interleaved rounds (ceiling, slipway-onnx, slipway-onnx-batch,
# and the same two in-process: slipway-onnx-inproc, slipway-onnx-inproc-batch; then again), c=32, 1 row. This machine's speed drifts by ±15% over minutes, so cells
# measured minutes apart (the grid) compare the drift as much as the servers; the report takes the median of
# the per-round ratios.
onnx_rounds() {
  local k t gohttp_pid addr ceiling_url ok=1
  say "interleaved rounds: ceiling, slipway-onnx(-inproc), slipway-onnx(-inproc)-batch at c=32, 1 row, $rounds rounds"
  deploy slipway-onnx slipway-onnx churn-onnx "" || ok=0
  deploy slipway-onnx-batch slipway-onnx-batch churn-onnx '{"max_batch_size": 64, "max_wait_ms": 0}' || ok=0
  deploy slipway-onnx-inproc slipway-onnx-inproc churn-onnx "" '"isolation": "in-process"' || ok=0
  deploy slipway-onnx-inproc-batch slipway-onnx-inproc-batch churn-onnx '{"max_batch_size": 64, "max_wait_ms": 0}' '"isolation": "in-process"' || ok=0
  if ((ok)); then
    start "$logs/gohttp-rounds.log" "${baseline_class[@]}" "$work/bin/gohttp" -addr 127.0.0.1:0
    gohttp_pid=$started
    if addr=$(wait_for "$logs/gohttp-rounds.log" "$gohttp_pid" 'addr=http://[^ ]+' 30); then
      ceiling_url=${addr#addr=}/invocations
      for ((k = 1; k <= rounds; k++)); do
        target_pid=$gohttp_pid
        measure ceiling 1 32 "$ceiling_url" "$work/payloads/tensor-1.json" -meta "round=$k"
        target_pid=$slipway_pid
        for t in slipway-onnx slipway-onnx-batch slipway-onnx-inproc slipway-onnx-inproc-batch; do
          measure "$t" 1 32 "$slipway_url/deployments/$t/invocations" "$work/payloads/tensor-1.json" "${auth[@]}" -meta "round=$k"
        done
      done
    else
      fail "the Go ceiling server did not start for the interleaved rounds"
    fi
    stop "$gohttp_pid"
  fi
  for t in slipway-onnx slipway-onnx-batch slipway-onnx-inproc slipway-onnx-inproc-batch; do undeploy "$t"; done
}

# wait_workers LOG PID REGEX N SECONDS: waits until REGEX has matched N lines of LOG (one per worker).
wait_workers() {
  local log=$1 pid=$2 re=$3 want=$4 secs=$5 i
  for ((i = 0; i < secs * 10; i++)); do
    (($(grep -cE "$re" "$log" 2>/dev/null || true) >= want)) && return 0
    kill -0 "$pid" 2>/dev/null || { echo "exited before it was ready; last lines of $log:" >&2; tail -n 15 "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "$want workers not ready after ${secs}s; last lines of $log:" >&2
  tail -n 15 "$log" >&2
  return 1
}
# pyfast_rounds: Slipway's Python fast path against the lean Python peer, FastAPI under uvicorn (2 workers, uvloop,
# httptools, numpy in), all serving bench/pywide's model (StandardScaler + LogisticRegression on 30 floats):
# slipway-pywide (2 replicas, no batching) and slipway-pywide-batch (adaptive batching), c=32, 1 row,
# dataframe_split, in interleaved rounds like the ONNX ratios (at least 1 round).
pyfast_rounds() {
  local k t uv_pid addr peer_url body=$work/pywide/frame-1.json ok=1 n=$((rounds > 0 ? rounds : 1))
  say "pyfast: slipway-pywide(-batch) vs fastapi-uvicorn at c=32, 1 row, $n interleaved rounds"
  if [[ ! -e $work/pywide/model.pkl ]]; then
    for t in fastapi-uvicorn slipway-pywide slipway-pywide-batch; do skip $t "the pyfast model was not written (bench/work/logs/pywide-model.log)"; done
    return 0
  fi
  if ! push pywide "$work/pywide" "$work/pywide/metadata.json"; then
    fail "pushing the pyfast model failed"
    for t in slipway-pywide slipway-pywide-batch; do skip $t "pushing the model failed (bench/work/logs/push-pywide.log)"; done
    ok=0
  fi
  ((ok)) && { deploy slipway-pywide slipway-pywide pywide "" || ok=0; }
  ((ok)) && { deploy slipway-pywide-batch slipway-pywide-batch pywide '{"max_batch_size": 1024, "max_wait_ms": 0}' || ok=0; }
  if ((ok)); then
    # uvicorn prints its address only with a fixed port: take a free one from the kernel first.
    local port
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # shellcheck disable=SC2086 # UVICORN may be a command with arguments
    start "$logs/uvicorn.log" "${baseline_class[@]}" env MODEL_PATH="$work/pywide/model.pkl" ${UVICORN:-$PY -m uvicorn} --workers 2 \
      --loop uvloop --http httptools --no-access-log --app-dir "$root/bench/baseline" --host 127.0.0.1 --port "$port" fastapi_app:app
    uv_pid=$started
    if wait_workers "$logs/uvicorn.log" "$uv_pid" 'Application startup complete' 2 60; then
      peer_url=http://127.0.0.1:$port/invocations
      if preflight fastapi-uvicorn "$peer_url" "$body" && preflight slipway-pywide "$slipway_url/deployments/slipway-pywide/invocations" "$body" -H "Authorization: Bearer $token"; then
        for ((k = 1; k <= n; k++)); do
          target_pid=$uv_pid
          measure fastapi-uvicorn 1 32 "$peer_url" "$body" -meta "round=$k"
          target_pid=$slipway_pid
          for t in slipway-pywide slipway-pywide-batch; do
            measure "$t" 1 32 "$slipway_url/deployments/$t/invocations" "$body" "${auth[@]}" -meta "round=$k"
          done
        done
        cross_check fastapi-uvicorn "$peer_url" "$body"
        cross_check slipway-pywide "$slipway_url/deployments/slipway-pywide/invocations" "$body" "Bearer $token"
      fi
    else
      fail "uvicorn did not start"
      skip fastapi-uvicorn "uvicorn did not start (see bench/work/logs/uvicorn.log)"
    fi
    stop "$uv_pid"
    # The per-stage profile of the Python path, from the server's Prometheus histograms (docs/benchmarks.md).
    curl -sS -H "Authorization: Bearer $token" "$slipway_url/metrics" 2>/dev/null |
      grep -E '^slipway_replica_stage_seconds_(sum|count)\{[^}]*deployment="slipway-pywide' >"$logs/pyfast-profile.txt" || true
  fi
  for t in slipway-pywide slipway-pywide-batch; do undeploy "$t"; done
}

if ((${#slipway_targets[@]})); then
  say "Slipway: server, models, deployments (2 replicas each)"
  if want batching; then
    "$PY" examples/sklearn-churn/train.py --model forest --out "$work/forest" >"$logs/train-forest.log" 2>&1 ||
      { fail "training the RandomForest failed: $(tail -n 5 "$logs/train-forest.log")"; }
  fi
  if want pyfast; then
    "$PY" bench/pywide/make_model.py "$work/pywide" >"$logs/pywide-model.log" 2>&1 ||
      { fail "writing the pyfast model failed: $(tail -n 5 "$logs/pywide-model.log")"; }
  fi
  start "$logs/slipway.log" "$SLIPWAY" server --data-dir "$work/data" --addr 127.0.0.1:0
  slipway_pid=$started
  target_pid=$started
  if addr=$(wait_for "$logs/slipway.log" "$slipway_pid" 'addr=http://[^ ]+' 60); then
    slipway_url=${addr#addr=}
    token=$(tr -d '[:space:]' <"$work/data/admin.token")
    auth=(-header "Authorization: Bearer $token")

    # Each model is measured as deployed by default (no batching) and with adaptive batching: batches form when
    # a replica frees up, max_wait_ms 0 (no added delay when idle), max_batch_size in rows.
    if want onnx; then
      if push churn-onnx examples/onnx-churn/model.onnx examples/onnx-churn/metadata.json; then
        serve_grid slipway-onnx churn-onnx "" tensor
        serve_grid slipway-onnx-batch churn-onnx '{"max_batch_size": 64, "max_wait_ms": 0}' tensor
        want ceiling && ((rounds > 0)) && onnx_rounds
      else
        fail "pushing examples/onnx-churn failed"
        for t in slipway-onnx slipway-onnx-batch; do skip $t "pushing the model failed (bench/work/logs/push-churn-onnx.log)"; done
      fi
    fi

    if want python; then
      if push churn examples/sklearn-churn examples/sklearn-churn/metadata.json; then
        serve_grid slipway-python churn "" frame
        serve_grid slipway-python-batch churn '{"max_batch_size": 1024, "max_wait_ms": 0}' frame
      else
        fail "pushing examples/sklearn-churn failed"
        for t in slipway-python slipway-python-batch; do skip $t "pushing the model failed (bench/work/logs/push-churn.log)"; done
      fi
    fi

    want pyfast && pyfast_rounds

    if want batching; then
      say "batching: RandomForest at c=32, 1 row, batching off then on (max_batch_size 32, max_wait_ms 2)"
      if [[ ! -e $work/forest/model.pkl ]]; then
        skip slipway-forest-nobatch "training the RandomForest failed (bench/work/logs/train-forest.log)"
        skip slipway-forest-batch "training the RandomForest failed (bench/work/logs/train-forest.log)"
      elif ! push churn-forest "$work/forest" "$work/forest/metadata.json"; then
        fail "pushing the RandomForest failed"
        skip slipway-forest-nobatch "pushing the model failed (bench/work/logs/push-churn-forest.log)"
        skip slipway-forest-batch "pushing the model failed (bench/work/logs/push-churn-forest.log)"
      else
        for variant in nobatch batch; do
          batching=""
          [[ $variant == batch ]] && batching='{"max_batch_size": 32, "max_wait_ms": 2}'
          if deploy "slipway-forest-$variant" "forest-$variant" churn-forest "$batching"; then
            url=$slipway_url/deployments/forest-$variant/invocations
            if preflight "slipway-forest-$variant" "$url" "$work/payloads/frame-1.json" -H "Authorization: Bearer $token"; then
              measure "slipway-forest-$variant" 1 32 "$url" "$work/payloads/frame-1.json" "${auth[@]}"
            fi
            undeploy "forest-$variant"
          fi
        done
      fi
    fi
  else
    fail "the Slipway server did not start"
    for t in "${slipway_targets[@]}"; do skip "$t" "the Slipway server did not start (see bench/work/logs/slipway.log)"; done
  fi
  stop "$slipway_pid"
fi

# ---- report ----
busy_after=$(background_cpu)
if [[ ! -s $jsonl ]]; then
  echo "run.sh: nothing was measured" >&2
  exit 1
fi
{
  "$work/bin/report" -in "$jsonl"
  echo
  echo "Background CPU use after the run: ${busy_after}% (before: ${busy_before}%)."
} >>"$md"
# CPU per request in the interleaved rounds: on a shared machine the req/s ratios swing with the other tenants,
# the CPU a target spends per request much less (docs/benchmarks.md, "The Go serving path: CPU per request").
"$PY" - "$jsonl" >>"$md" <<'EOF'
import json, statistics, sys
cells = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    cpu, meta = r.get("cpu") or {}, r.get("meta") or {}
    if "round" not in meta or not r.get("rps") or "target" not in cpu:
        continue
    us = lambda pct: pct / 100 * r["cpus"] / r["rps"] * 1e6
    cells.setdefault(meta.get("target", r["label"]), []).append((us(cpu["target"]), us(cpu["loadgen"])))
if cells:
    print("\nCPU per request in the interleaved rounds (µs of CPU per answered request: CPU share × CPUs ÷ req/s; median of the rounds):\n")
    print("| target | rounds | server | load generator |")
    print("|---|--:|--:|--:|")
    for t, v in cells.items():
        print("| %s | %d | %.1f | %.1f |" % (t, len(v), statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)))
EOF
if [[ -s $logs/pyfast-profile.txt ]]; then
  {
    echo
    echo "Python per-call profile (slipway_replica_stage_seconds, mean ms per model call over the pyfast rounds and their warm-ups; a batch is one call):"
    echo
    echo "| deployment | calls | decode | predict | encode | transport | call |"
    echo "|---|--:|--:|--:|--:|--:|--:|"
    awk -F'[{}", =]+' '
      { kind = ($1 ~ /_sum$/) ? "sum" : "count"; v[$3, $5, kind] = $NF; deps[$3] = 1 }
      END {
        for (d in deps) {
          n = v[d, "call", "count"]; if (n == 0) continue
          printf "| %s | %d", d, n
          split("decode predict encode transport call", stages, " ")
          for (i = 1; i <= 5; i++) printf " | %.3f", 1000 * v[d, stages[i], "sum"] / v[d, stages[i], "count"]
          printf " |\n"
        }
      }' "$logs/pyfast-profile.txt" | sort
    # CPU per request (the target's share of the machine × CPUs ÷ req/s): steadier than req/s on a shared machine.
    echo
    echo "Python CPU per request (pyfast rounds; ms of CPU = the target's CPU share × CPUs ÷ req/s, per round):"
    echo
    echo "| target | ms CPU per request, round by round |"
    echo "|---|---|"
    "$PY" -c '
import json, sys
per = {}
for line in open(sys.argv[1]):
    c = json.loads(line)
    m = c.get("meta") or {}
    if m.get("target") in ("fastapi-uvicorn", "slipway-pywide", "slipway-pywide-batch") and m.get("round") and c.get("rps"):
        per.setdefault(m["target"], []).append("%.3f" % (c["cpu"]["target"] / 100 * c["cpus"] / c["rps"] * 1000))
for t in sorted(per):
    print("| %s | %s |" % (t, ", ".join(per[t])))
' "$jsonl" || true
  } >>"$md"
fi
if ((${#wrk_lines[@]})); then
  {
    echo
    echo "wrk cross-check (wrk -t2 -c32 --latency, 1 row; its own counting):"
    echo
    echo "| target | rows | c | req/s | p50 | p99 | errors |"
    echo "|---|--:|--:|--:|--:|--:|---|"
    printf '%s\n' "${wrk_lines[@]}"
  } >>"$md"
fi
if [[ -n $no_api ]]; then
  {
    echo
    echo "**Slipway targets NOT MEASURED**: $no_api."
  } >>"$md"
fi
echo
cat "$md"
echo
echo "Results: ${md#"$root"/} (raw cells: ${jsonl#"$root"/}); logs in bench/work/logs/"
if ((failures)); then
  echo "run.sh: $failures error(s) above: some targets could not be measured" >&2
  exit 1
fi

#!/usr/bin/env bash
# Monitoring overhead on the serving path: req/s of the same deployment with monitoring off (this tree built with
# openMonitor stubbed out), with metrics only (capture sampling 0), and with metrics + capture of every prediction.
#
#   ./bench/monitor/serving.sh [--rounds 3] [--duration 10s] [--warmup 2s] [--c 32] [--base-rev REV] [--model onnx|python]
#                              [--capture-rate 1]   (sampling_rate of the metrics+capture target)
#
# Each round runs the three targets one after the other (A B C, A B C...) so that drift in the machine's load
# affects them alike; the report is the median req/s of each target and the ratios to the base. Scratch files in
# $TMPDIR/slipway-bench-monitor (logs of every server there). Run it on a quiet machine: it measures CPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
rounds=3 duration=10s warmup=2s c=32 base_rev="" model=onnx rate=1
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --duration) duration=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --c) c=$2; shift ;;
    --base-rev) base_rev=$2; shift ;;
    --model) model=$2; shift ;;
    --capture-rate) rate=$2; shift ;;
    *) echo "serving.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
work=${TMPDIR:-/tmp}/slipway-bench-monitor  # not bench/work: bench/run.sh wipes that folder when it starts
rm -rf "$work" && mkdir -p "$work/bin" "$work/logs"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
trap cleanup EXIT

# The base: this same tree with monitoring switched off (openMonitor wires nothing, so the API has no monitor and
# the prediction handlers skip it), so that the comparison is monitoring alone, not other changes since a commit.
# --base-rev REV measures a git revision instead.
if [[ -z $base_rev ]]; then
  base_rev="this tree, monitoring off"
  rm -rf "$work/base-src" && mkdir -p "$work/base-src"
  tar --exclude=./bench/work --exclude=./.git --exclude=./bin -cf - . | tar -xf - -C "$work/base-src"
  python3 - "$work/base-src/internal/app/features.go" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
i = s.index("func (a *App) openMonitor() error {")
j = s.index("\n}\n", i)
s = s[:i] + "func (a *App) openMonitor() error {\n\treturn nil\n}\n" + s[j + 3:]
open(p, "w").write(s)
PY
  (cd "$work/base-src" && go build -o "$work/bin/slipway-base" ./cmd/slipway 2>&1 | grep -v 'declared and not used\|imported and not used' >&2 || true)
  if [[ ! -x $work/bin/slipway-base ]]; then
    # Unused imports after the stub: let goimports-free builds pass by keeping references.
    cat >>"$work/base-src/internal/app/features.go" <<'GO'

var _ = sqlstore.OpenMonitorSQLite
var _ serving.Observer
var _ = monitor.New
var _ = errors.Join
GO
    (cd "$work/base-src" && go build -o "$work/bin/slipway-base" ./cmd/slipway)
  fi
else
  git worktree remove --force "$work/base-src" 2>/dev/null || true
  git worktree add --detach "$work/base-src" "$base_rev" >/dev/null
  (cd "$work/base-src" && go build -o "$work/bin/slipway-base" ./cmd/slipway)
  git worktree remove --force "$work/base-src"
fi
go build -o "$work/bin/slipway" ./cmd/slipway
go build -o "$work/bin/loadgen" ./bench/loadgen
./examples/build.sh >/dev/null

if [[ $model == onnx ]]; then
  push=(models push examples/onnx-churn/model.onnx --model m --metadata examples/onnx-churn/metadata.json)
  body='{"inputs": [[41.0, 12.0, 70.5, 1.0]]}'
else
  push=(models push examples/sklearn-churn --model m --metadata examples/sklearn-churn/metadata.json)
  body='{"dataframe_split": {"columns": ["age","tenure_months","monthly_charges","plan","support_calls"], "data": [[41.0, 12.0, 70.5, "pro", 1.0]]}}'
fi
printf '%s' "$body" >"$work/body.json"

# run TARGET BINARY SAMPLING: one measured cell; prints req/s.
run() {
  local target=$1 bin=$2 sampling=$3 dir log addr pid
  dir=$(mktemp -d "$work/data-XXXX")
  log="$work/logs/$target-$(date +%s%N).log"
  "$bin" server --data-dir "$dir" --addr 127.0.0.1:0 >"$log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do addr=$(grep -oE 'addr=http://127\.0\.0\.1:[0-9]+' "$log" | head -n1 | cut -d= -f2) && [[ -n $addr ]] && break; sleep 0.1; done
  export SLIPWAY_URL=$addr SLIPWAY_TOKEN
  SLIPWAY_TOKEN=$(cat "$dir/admin.token")
  "$bin" "${push[@]}" >/dev/null
  "$bin" deploy m --model m:1 --replicas 2 >/dev/null
  if [[ $sampling != none ]]; then
    curl -sf -X PUT -H "Authorization: Bearer $SLIPWAY_TOKEN" -d "{\"sampling_rate\": $sampling}" "$addr/api/v1/deployments/m/monitoring" >/dev/null
  fi
  "$work/bin/loadgen" -url "$addr/deployments/m/invocations" -body-file "$work/body.json" -header "Authorization: Bearer $SLIPWAY_TOKEN" \
    -c "$c" -duration "$duration" -warmup "$warmup" -label "$target" -expect predictions -json "$work/results.jsonl" \
    -watch-pid "$pid" | tee -a "$work/summary.txt" >&2
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pids=()
}
for ((r = 1; r <= rounds; r++)); do
  run base "$work/bin/slipway-base" none
  run metrics-only "$work/bin/slipway" 0
  run metrics+capture "$work/bin/slipway" "$rate"
done
python3 - "$work/results.jsonl" "$base_rev" "$model" "$c" "$rate" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["label"], []).append(r)
base = statistics.median(r["rps"] for r in by["base"])
print(f"\nMonitoring overhead ({sys.argv[3]} model, 1 row, c={sys.argv[4]}, capture sampling {sys.argv[5]}, base = {sys.argv[2]}), median of {len(by['base'])} rounds:")
def cpu_us(r):  # CPU of the server and its replicas per request (µs): robust to other load on the machine
    c = r.get("cpu")
    return c["target"] / 100 * r["cpus"] * r["duration_s"] / r["ok"] * 1e6 if c and r["ok"] else float("nan")
base_cpu = statistics.median(cpu_us(r) for r in by["base"])
print(f"{'target':18} {'req/s':>9} {'vs base':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req':>11} {'vs base':>8} {'other %':>8}  rounds (req/s)")
for label in ["base", "metrics-only", "metrics+capture"]:
    rs = by[label]
    rps = statistics.median(r["rps"] for r in rs)
    each = ", ".join("%.0f" % r["rps"] for r in rs)
    p50 = statistics.median(r["p50_ms"] for r in rs)
    p99 = statistics.median(r["p99_ms"] for r in rs)
    cpu = statistics.median(cpu_us(r) for r in rs)
    other = statistics.median((r.get("cpu") or {}).get("other", float("nan")) for r in rs)
    print(f"{label:18} {rps:9.0f} {rps/base:8.3f} {p50:7.2f} {p99:7.2f} {cpu:11.1f} {cpu/base_cpu:8.3f} {other:8.1f}  {each}")
PY

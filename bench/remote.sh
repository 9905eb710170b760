#!/usr/bin/env bash
# Network replicas vs local pipes (docs/benchmarks.md, "Replicas over the network").
#
#   ./bench/remote.sh [--quick] [--duration 10s] [--warmup 2s] [--rounds 3]
#
# One server; for the ONNX and the Python example, and for the fast Python model of the pyfast rounds (bench/pywide), a local deployment (2 replica processes over pipes) and an
# external one (2 `slipway worker serve` processes on loopback TCP, same version, same settings). Each round
# measures, at c=32 with 1 row per request, local then remote, for each runtime, and the ratio remote/local is
# taken per round; the median ratio is reported. The two deployments of a runtime never run at the same time
# under load, but both stay up (idle) for the whole run. Writes bench/results/remote-<UTC timestamp>.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
duration=10s warmup=2s rounds=3 quick=0
while (($#)); do
  case $1 in
    --quick) quick=1 duration=3s warmup=1s rounds=3 ;;
    --duration) duration=${2:?}; shift ;;
    --warmup) warmup=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "remote.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-/usr/bin/python3}
SLIPWAY=${SLIPWAY_BIN:-$root/bin/slipway}
work=$root/bench/work-remote
logs=$work/logs
ts=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$root/bench/results"
jsonl=$root/bench/results/remote-$ts.jsonl
md=$root/bench/results/remote-$ts.md

pids=()
cleanup() {
  local pid i
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || continue
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'echo "remote.sh: interrupted" >&2; exit 130' INT TERM

rm -rf "$work"
mkdir -p "$work/bin" "$logs" "$work/payloads"
[[ -x $SLIPWAY ]] || make -C "$root" build
[[ -e examples/sklearn-churn/model.pkl && -e examples/onnx-churn/model.onnx ]] || ./examples/build.sh
go build -o "$work/bin/" ./bench/loadgen

# 1-row payloads: the ONNX model's tensor and the Python model's dataframe_split (as bench/run.sh's).
"$PY" - "$root/examples/data/churn.csv" "$work/payloads" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))[:1]
num = ["age", "tenure_months", "monthly_charges", "support_calls"]
cols = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]
json.dump({"inputs": [[float(r[c]) for c in num] for r in rows]}, open(sys.argv[2] + "/onnx.json", "w"))
json.dump({"dataframe_split": {"columns": cols, "data": [[r["plan"] if c == "plan" else float(r[c]) for c in cols] for r in rows]}},
          open(sys.argv[2] + "/python.json", "w"))
EOF

# wait_line FILE PID REGEX SECONDS: prints the first match of REGEX in FILE once it appears.
wait_line() {
  local i m
  for ((i = 0; i < $4 * 10; i++)); do
    if m=$(grep -Eo "$3" "$1" | head -n 1) && [[ -n $m ]]; then echo "$m"; return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "remote.sh: process $2 exited; log $1:" >&2; tail -n 20 "$1" >&2; return 1; }
    sleep 0.1
  done
  echo "remote.sh: timed out waiting for $3 in $1" >&2
  return 1
}

"$SLIPWAY" server --data-dir "$work/data" --addr 127.0.0.1:0 >"$logs/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
addr=$(wait_line "$logs/server.log" "$server_pid" 'addr=http://127\.0\.0\.1:[0-9]+' 60)
export SLIPWAY_URL=${addr#addr=} SLIPWAY_TOKEN
SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
"$SLIPWAY" models push examples/onnx-churn/model.onnx --model churn-onnx --metadata examples/onnx-churn/metadata.json >"$logs/push.log" 2>&1
"$SLIPWAY" models push examples/sklearn-churn --model churn --metadata examples/sklearn-churn/metadata.json >>"$logs/push.log" 2>&1
# pywide: the fast Python model of bench/run.sh's pyfast rounds (~0.1 ms a call, where the example's takes ~5 ms):
# what a network replica's own overhead per call weighs against a quick predict().
"$PY" bench/pywide/make_model.py "$work/pywide" >"$logs/pywide-model.log" 2>&1
cp "$work/pywide/frame-1.json" "$work/payloads/pywide.json"
"$SLIPWAY" models push "$work/pywide" --model pywide --metadata "$work/pywide/metadata.json" >>"$logs/push.log" 2>&1

for rt in onnx python pywide; do
  case $rt in onnx) model=churn-onnx:1 ;; python) model=churn:1 ;; pywide) model=pywide:1 ;; esac
  "$SLIPWAY" deploy "$rt-local" --model "$model" --replicas 2 >"$logs/deploy-$rt-local.log" 2>&1
  "$SLIPWAY" deploy "$rt-remote" --model "$model" --replicas 2 --engine external --no-wait >"$logs/deploy-$rt-remote.log" 2>&1
  spec=$("$SLIPWAY" deployments replica-spec "$rt-remote")
  for i in 1 2; do
    SLIPWAY_REPLICA_SPEC=$spec "$SLIPWAY" worker serve --listen 127.0.0.1:0 --cache-dir "$work/cache-$rt-$i" \
      >"$logs/worker-$rt-$i.log" 2>&1 &
    pids+=("$!")
    wait_line "$logs/worker-$rt-$i.log" "$!" 'ready: announced' 120 >/dev/null
  done
  for ((i = 0; i < 600; i++)); do
    "$SLIPWAY" deployments get "$rt-remote" -o json 2>/dev/null | grep -Eq '"state": *"ACTIVE"' && break
    sleep 0.5
  done
  ((i < 600)) || { echo "remote.sh: $rt-remote not ACTIVE; see $logs" >&2; exit 1; }
done

measure() { # measure LABEL URL BODY ROUND
  "$work/bin/loadgen" -url "$2" -body-file "$3" -c 32 -duration "$duration" -warmup "$warmup" \
    -header "Authorization:Bearer $SLIPWAY_TOKEN" -expect predictions -label "$1 round $4" \
    -meta "target=$1" -meta "round=$4" -json "$jsonl" -watch-pid "$server_pid" >&2
}
for ((r = 1; r <= rounds; r++)); do
  for rt in onnx python pywide; do
    for kind in local remote; do
      measure "$rt-$kind" "$SLIPWAY_URL/deployments/$rt-$kind/invocations" "$work/payloads/$rt.json" "$r"
    done
  done
done

"$PY" - "$jsonl" "$md" "$duration" "$warmup" "$rounds" "$(git rev-parse --short HEAD)" "$(nproc)" <<'EOF'
import json, statistics, sys
cells = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for c in cells:
    by.setdefault((c["meta"]["target"], c["meta"]["round"]), c)
out = [f"Network replicas vs local pipes: c=32, 1 row, {sys.argv[5]} interleaved rounds of {sys.argv[4]} warm-up + {sys.argv[3]}, "
       f"commit {sys.argv[6]}, {sys.argv[7]} CPUs. 2 replicas each; remote = 2 `slipway worker serve` on loopback TCP.", "",
       "| runtime | local req/s (median) | remote req/s (median) | remote/local (median of per-round ratios) | local p99 ms | remote p99 ms | errors |",
       "|---|---|---|---|---|---|---|"]
for rt in ("onnx", "python", "pywide"):
    rounds = sorted({r for (t, r) in by if t.startswith(rt + "-")})
    loc = [by[(rt + "-local", r)] for r in rounds]
    rem = [by[(rt + "-remote", r)] for r in rounds]
    ratios = [b["rps"] / a["rps"] for a, b in zip(loc, rem) if a["rps"] > 0]
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    errs = sum(c["errors"] for c in loc + rem)
    verdict = "PASS" if med(ratios) >= 0.8 else "MISS"
    out.append(f"| {rt} | {med([c['rps'] for c in loc]):.0f} | {med([c['rps'] for c in rem]):.0f} | "
               f"**{med(ratios):.2f}×** {verdict} (target ≥ 0.8×; rounds: {', '.join(f'{x:.2f}' for x in ratios)}) | "
               f"{med([c['p99_ms'] for c in loc]):.1f} | {med([c['p99_ms'] for c in rem]):.1f} | {errs} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
echo "written: $md" >&2

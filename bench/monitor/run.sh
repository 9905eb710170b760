#!/usr/bin/env bash
# Monitoring benchmarks (see docs/monitoring.md, "Benchmarks"):
#
#   ./bench/monitor/run.sh drift      # drift over 1,000,000 rows x 20 features: Slipway vs numpy/scipy (~1 minute)
#   ./bench/monitor/run.sh serving    # req/s without monitoring, with metrics, with metrics + capture, on SQLite
#                                     # and on PostgreSQL (~10 minutes; add --quick for ~4, see serving.sh)
#   ./bench/monitor/run.sh            # both
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
what=${1:-all}
if [[ $what == drift || $what == all ]]; then
  dir=${TMPDIR:-/tmp}/slipway-bench-drift
  rm -rf "$dir" && mkdir -p "$dir"
  echo "generating 1,000,000 x 20 and timing numpy/scipy (drift.py)..." >&2
  /usr/bin/python3 bench/monitor/drift.py "$dir" >"$dir/python.jsonl"
  go run ./bench/monitor/drift -dir "$dir" -python-results "$dir/python.jsonl"
fi
if [[ $what == serving || $what == all ]]; then
  ./bench/monitor/serving.sh "${@:2}"
fi

#!/usr/bin/env bash
# Many models on one server (docs/benchmarks.md, "Many models"): N small distinct ONNX models deployed lazy and
# in-process (server RSS, idle memory per deployment against process replicas, cold starts), then the e2e test
# of LRU unloading under a small budget at the same count.
#
#   ./bench/manymodels/run.sh [N]     (after make build; default 300)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
n=${1:-300}
go run ./bench/manymodels -bin bin/slipway -n "$n" -process 10
SLIPWAY_MANY_MODELS=$n go test -count=1 -v -run 'TestManyInProcessDeploymentsUnderABudget$' ./e2e/ 2>&1 |
  grep -E '^(=== RUN|--- |ok|FAIL|PASS)|inprocess_test.go'

#!/usr/bin/env bash
# Cold start from zero to the first answer (docs/benchmarks.md, "Cold start"): ONNX process replica and Python
# replica of the example model, each scaled to zero and woken by one request, ROUNDS times.
#
#   ./bench/coldstart/run.sh [ROUNDS]     (after make build examples)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
go run ./bench/coldstart -bin bin/slipway -examples examples -rounds "${1:-10}"

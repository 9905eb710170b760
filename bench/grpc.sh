#!/usr/bin/env bash
# gRPC vs HTTP V2 JSON on the ONNX example (docs/benchmarks.md): starts bin/slipway with --grpc-addr on a fresh
# data folder, deploys examples/onnx-churn on 2 replicas with dynamic batching (max_batch_size 64, max_wait_ms 0: the
# configuration of `make bench`'s slipway-onnx-batch), and runs bench/grpcbench: c=32, 1 row, interleaved rounds.
#
#   ./bench/grpc.sh [grpcbench flags: -c 32 -duration 10s -warmup 2s -rounds 3]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
SLIPWAY=${SLIPWAY_BIN:-$root/bin/slipway}
work=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
[[ -x $SLIPWAY ]] || make build
[[ -e examples/onnx-churn/model.onnx ]] || ./examples/build.sh
go build -o "$work/grpcbench" ./bench/grpcbench

"$SLIPWAY" server --data-dir "$work/data" --addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 >"$work/server.log" 2>&1 &
pid=$!
for ((i = 0; i < 600; i++)); do
  grep -q 'slipway listening' "$work/server.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
url=$(grep -oE 'addr=https?://[^ ]+' "$work/server.log" | head -n1)
url=${url#addr=}
grpc_addr=$(grep -oE 'grpc_addr=[^ ]+' "$work/server.log" | head -n1)
grpc_addr=${grpc_addr#grpc_addr=}
export SLIPWAY_URL=$url SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
"$SLIPWAY" models push examples/onnx-churn/model.onnx --model churn-onnx --metadata examples/onnx-churn/metadata.json >/dev/null
"$SLIPWAY" deploy churn-onnx --model churn-onnx:1 --replicas 2 --batch-size 64 --batch-wait-ms 0 >/dev/null
echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, load generator on the same machine" >&2
"$work/grpcbench" -http "$url" -grpc "$grpc_addr" -model churn-onnx "$@"

#!/usr/bin/env bash
# Installs what Slipway and its tests need on a Debian machine: system packages (apt) and the ONNX Runtime
# library (npm). Idempotent: packages already present are not reinstalled.
set -euo pipefail
packages=(gcc libc6-dev make python3 python3-numpy python3-scipy python3-sklearn python3-pandas python3-onnx
  python3-yaml python3-flask gunicorn postgresql wrk
  python3-fastapi python3-uvicorn python3-uvloop python3-httptools # make bench: the lean Python peer (FastAPI+uvicorn)
  python3-cloudpickle # MLflow sklearn models saved with serialization_format cloudpickle (MLflow's default)
  python3-joblib python3-pip python3-venv # the SDK: prepare() saves models with joblib; its test pip-installs it into a venv
  chromium fonts-dejavu-core # chromium: the web UI's end-to-end test drives it headless
  python3-grpcio python3-grpc-tools python3-protobuf # the gRPC service's Python client test (stubs from the .proto)
  python3-packaging python3-gevent python3-geventhttpclient python3-rapidjson # Triton's client (third_party/tritonclient) in e2e
  containerd runc containernetworking-plugins debootstrap openssl curl) # the Kubernetes engine's node and its image (scripts/k8s-dev.sh)
# npm comes with the machine's Node.js (Debian's npm package conflicts with it); install it only when absent.
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "install-deps: apt-get install ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"$(dirname "$0")/install-ort.sh"

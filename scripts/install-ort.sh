#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that Slipway's onnx runtime loads at run time.
# Source: the npm package onnxruntime-node (the only registry here that ships it), pinned by version and sha256.
# Result: $SLIPWAY_ORT_DIR/libonnxruntime.so.1 (default ~/.cache/slipway/onnxruntime-1.30.0). Idempotent.
set -euo pipefail
version=1.30.0
sha=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
dir=${SLIPWAY_ORT_DIR:-$HOME/.cache/slipway/onnxruntime-$version}
lib=$dir/libonnxruntime.so.1
if [[ -f $lib ]] && echo "$sha  $lib" | sha256sum -c --status; then
  echo "onnxruntime $version: $lib"
  exit 0
fi
command -v npm >/dev/null || { echo "install-ort: npm is required (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "install-ort: downloading onnxruntime-node@$version from npm (~113 MB, once)" >&2
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tar -xzf "$tmp/onnxruntime-node-$version.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
echo "$sha  $tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c --status \
  || { echo "install-ort: checksum mismatch for libonnxruntime.so.1" >&2; exit 1; }
mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp" && mv "$lib.tmp" "$lib"
echo "onnxruntime $version: $lib"

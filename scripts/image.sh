#!/usr/bin/env bash
# Builds Slipway's images as docker-archive tars (`docker load` / `ctr images import` read them; push them to a
# registry with any OCI tool): no registry is reachable where the tests run, so nothing is pulled.
#   scripts/image.sh runtime OUT.tar [TAG]  the image job runs (and replicas) use: Debian bookworm with Python 3,
#                                           scikit-learn, pandas, numpy (scripts/engines/rootfs.sh), bin/slipway
#                                           (or $SLIPWAY_BIN) and the ONNX Runtime library ($SLIPWAY_ORT_LIB).
#                                           TAG: localhost/slipway:dev
#   scripts/image.sh pause OUT.tar [TAG]    the pod sandbox image: one static binary that sleeps until signalled
#                                           (scripts/engines/kubernetes/pause). TAG: localhost/slipway-pause:1
# An image is rebuilt only when its inputs changed (their digests are kept next to OUT.tar).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
kind="${1:-}" out="${2:-}"
[[ -n $kind && -n $out ]] || { echo "usage: scripts/image.sh runtime|pause OUT.tar [TAG]" >&2; exit 2; }
sudo=""
[[ $(id -u) -eq 0 ]] || sudo=sudo # the rootfs is root's (device nodes, /etc/shadow)

work="$(mktemp -d "${TMPDIR:-/tmp}/slipway-image.XXXXXX")"
trap '$sudo rm -rf "$work"' EXIT
mkdir -p "$work/extra"
case "$kind" in
runtime)
  tag="${3:-localhost/slipway:dev}"
  bin="${SLIPWAY_BIN:-$repo/bin/slipway}"
  ort="${SLIPWAY_ORT_LIB:-$HOME/.cache/slipway/onnxruntime-1.30.0/libonnxruntime.so.1}"
  [[ -x $bin ]] || { echo "image.sh: $bin is missing: run make build first" >&2; exit 1; }
  [[ -f $ort ]] || { echo "image.sh: ONNX Runtime library $ort is missing: run scripts/install-ort.sh" >&2; exit 1; }
  rootfs="$("$here/engines.sh" rootfs)/rootfs"
  inputs="$tag $(sha256sum "$bin" "$ort" "$rootfs/../.built" | cut -c1-64 | tr '\n' ' ')"
  mkdir -p "$work/extra/opt/slipway/bin" "$work/extra/opt/slipway/lib"
  cp "$bin" "$work/extra/opt/slipway/bin/slipway"
  cp "$ort" "$work/extra/opt/slipway/lib/libonnxruntime.so.1"
  env='"PATH=/opt/slipway/bin:/usr/local/bin:/usr/bin:/bin","SLIPWAY_ORT_LIB=/opt/slipway/lib/libonnxruntime.so.1","SLIPWAY_PYTHON=/usr/bin/python3","LANG=C.UTF-8"'
  cmd='"Cmd":["/opt/slipway/bin/slipway","--help"]'
  ;;
pause)
  tag="${3:-localhost/slipway-pause:1}"
  engine="$("$here/engines.sh" kubernetes)"
  rootfs="" inputs="$tag $(sha256sum "$engine/bin/pause" | cut -c1-64)"
  cp "$engine/bin/pause" "$work/extra/pause"
  env='"PATH=/"' cmd='"Entrypoint":["/pause"]'
  ;;
*) echo "image.sh: unknown image '$kind' (runtime or pause)" >&2; exit 2 ;;
esac
if [[ -f $out && "$(cat "$out.inputs" 2>/dev/null)" == "$inputs" ]]; then
  echo "$out"
  exit 0
fi

# One layer: the rootfs (when there is one) and the extra files, owned by root.
layer="$work/layer.tar"
if [[ -n $rootfs ]]; then
  $sudo tar --numeric-owner -C "$rootfs" -cf "$layer" .
  $sudo tar --numeric-owner --owner=0 --group=0 -C "$work/extra" -rf "$layer" opt/slipway
else
  tar --numeric-owner --owner=0 --group=0 -C "$work/extra" -cf "$layer" .
fi
$sudo chown "$(id -u)" "$layer"
diff_id="sha256:$(sha256sum "$layer" | cut -c1-64)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf '{"architecture":"amd64","os":"linux","created":"%s","config":{"Env":[%s],%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["%s"]}}\n' \
  "$created" "$env" "$cmd" "$diff_id" >"$work/config.json"
config="$(sha256sum "$work/config.json" | cut -c1-64).json"
mv "$work/config.json" "$work/$config"
mv "$layer" "$work/${diff_id#sha256:}.tar"
printf '[{"Config":"%s","RepoTags":["%s"],"Layers":["%s.tar"]}]\n' "$config" "$tag" "${diff_id#sha256:}" >"$work/manifest.json"
mkdir -p "$(dirname "$out")"
tar -C "$work" -cf "$out.tmp" manifest.json "$config" "${diff_id#sha256:}.tar"
mv "$out.tmp" "$out"
echo "$inputs" >"$out.inputs"
echo "$out"

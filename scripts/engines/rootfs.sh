#!/usr/bin/env bash
# The root filesystem of the image Kubernetes job runs (and, later, replicas) use: Debian bookworm minbase with
# Python 3, scikit-learn, pandas and numpy from Debian (the same versions as the host's, so a pickle written on the
# host loads in a pod). No container registry is reachable, so the image is built from the Debian mirror apt already
# uses; scripts/image.sh adds Slipway to it. About 2.5 minutes and 1 GB; engines.sh caches the result.
#   usage (by scripts/engines.sh): rootfs.sh DIR      makes DIR/rootfs
set -euo pipefail
suite=bookworm
packages=python3-sklearn,python3-pandas,python3-numpy
out="$(cd "$1" && pwd)/rootfs"
# The mirror apt's own sources name (deb822 .sources files or the classic sources.list).
mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)"
[[ -n $mirror ]] || mirror="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
  grep -v security | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}')"
if [[ -z $mirror ]]; then
  echo "rootfs.sh: no Debian mirror found in /etc/apt/sources.list{,.d}: cannot debootstrap" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap is missing: run scripts/install-deps.sh" >&2; exit 1; }
sudo=""
[[ $(id -u) -eq 0 ]] || sudo=sudo # debootstrap makes device nodes and root-owned files
echo "rootfs.sh: debootstrap $suite from $mirror with $packages" >&2
$sudo debootstrap --variant=minbase --include="$packages" "$suite" "$out" "$mirror" >&2
# Downloaded packages and apt lists are not needed in a pod: 200 MB less to pack into every image.
$sudo rm -rf "$out"/var/cache/apt/archives/*.deb "$out"/var/lib/apt/lists/*

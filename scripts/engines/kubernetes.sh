#!/usr/bin/env bash
# Kubernetes v1.37.2 for the tests' single-node cluster (scripts/k8s-dev.sh starts it): kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, etcd and a static pause binary (the pod sandbox image's
# only file), built from the Go module proxy with the wrapper module in scripts/engines/kubernetes/ (its go.sum
# is committed, so every build is the same). About 8-10 minutes cold on 2 cores; engines.sh caches the result.
#   usage (by scripts/engines.sh): kubernetes.sh DIR      installs DIR/bin/{kube-apiserver,...,etcd,pause}
# engines.sh rebuilds when THIS file changes: bump the version line below when the wrapper's go.mod changes.
#   wrapper: k8s.io/kubernetes v1.37.2, staging modules v0.37.2, etcd v3.7.0
set -euo pipefail
out="$(cd "$1" && pwd)/bin"
mkdir -p "$out"
cd "$(dirname "$0")/kubernetes"
version=v1.37.2
# The version the components report (and the node registers with); release builds stamp it the same way.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1
  -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean
  -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1
  -X k8s.io/client-go/pkg/version.gitMinor=37"
# Static binaries, as Kubernetes releases them (the pause binary must be: its image has no libc).
export CGO_ENABLED=0
go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet ./etcd ./pause
ls -l "$out"

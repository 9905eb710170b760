//go:build tools

// Package tools pins the Kubernetes commands the recipe builds (go build k8s.io/kubernetes/cmd/...), so that
// go mod tidy keeps their dependencies in go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)

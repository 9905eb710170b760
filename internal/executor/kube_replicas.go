package executor

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"
)

// The kubernetes engine places model replicas too (internal/kubereplica); it shares this executor's
// connection to the cluster and its start-up check.

// Clients returns the executor's API clients: api for calls (with a request timeout), watch for watches and
// streams (without one).
func (k *Kube) Clients() (api, watch kubernetes.Interface) { return k.client, k.logs }

// CheckReplicas checks, at start, that Slipway's credentials may manage replica Deployments, their Secrets
// and watch their pods in the namespace (Check covers the cluster, the namespace and the image).
func (k *Kube) CheckReplicas(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, need := range []struct{ group, resource, verb string }{
		{"apps", "deployments", "create"}, {"apps", "deployments", "patch"}, {"apps", "deployments", "list"},
		{"apps", "deployments", "delete"}, {"", "secrets", "create"}, {"", "secrets", "patch"},
		{"", "secrets", "delete"}, {"", "pods", "list"}, {"", "pods", "watch"},
	} {
		if err := k.can(ctx, need.group, need.resource, "", need.verb); err != nil {
			return err
		}
	}
	return nil
}

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// waitFailed waits for deployment name to be FAILED and returns it; it fails the test if the deployment
// becomes ACTIVE instead.
func waitFailed(t *testing.T, s *server, name string, within time.Duration) *slipway.Deployment {
	t.Helper()
	var d *slipway.Deployment
	waitFor(t, name+" FAILED", within, func() bool {
		var err error
		d, err = s.Client().GetDeployment(context.Background(), name)
		if err == nil && d.State == slipway.DeploymentActive {
			t.Fatalf("%s became ACTIVE: %+v", name, d)
		}
		return err == nil && d.State == slipway.DeploymentFailed
	})
	return d
}

// TestKubernetesReplicaFailures: replica pods that cannot serve fail their deployment with a reason a person
// can act on, as soon as the pod watch sees it, not after the replica ready timeout (set to 10 minutes here,
// longer than the test waits): a pod OOM-killed while loading the model (the scikit-learn example under a
// 40 MiB limit: the worker and the Python harness importing pandas and scikit-learn need more), and an image
// that cannot be pulled.
func TestKubernetesReplicaFailures(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	s := startKubeServer(t, k, "", "--replica-network", "host", "--replica-ready-timeout", "10m")
	pushExamples(t, s)

	began := time.Now()
	deploy(t, s, "koom", "--model", "churn:1", "--replicas", "1", "--memory-mb", "40", "--no-wait")
	t.Cleanup(func() { s.cli("deployments", "delete", "koom") })
	d := waitFailed(t, s, "koom", 5*time.Minute)
	t.Logf("OOM-killed replica to deployment FAILED: %s", time.Since(began).Round(time.Millisecond))
	for _, want := range []string{"OOM-killed", "resources.memory_mb 40", "slipway-koom-v1-"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q does not say %q", d.Reason, want)
		}
	}
	if out, _, _ := s.cli("deployments", "get", "koom"); !strings.Contains(out, "OOM-killed") {
		t.Errorf("deployments get does not show the reason:\n%s", out)
	}

	// An image no node has and no registry serves: a second server on the same cluster, with that image.
	bad := startKubeServer(t, k, "", "--replica-network", "host", "--replica-ready-timeout", "10m",
		"--image", "registry.invalid/slipway:none")
	pushExamples(t, bad)
	began = time.Now()
	deploy(t, bad, "kbadimage", "--model", "churn-onnx:1", "--replicas", "2", "--no-wait")
	t.Cleanup(func() { bad.cli("deployments", "delete", "kbadimage") })
	d = waitFailed(t, bad, "kbadimage", 5*time.Minute)
	t.Logf("image that cannot be pulled to deployment FAILED: %s", time.Since(began).Round(time.Millisecond))
	for _, want := range []string{"image registry.invalid/slipway:none", "could not be pulled on node localhost"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q does not say %q", d.Reason, want)
		}
	}
	// Deleting the deployment removes its pods that never started.
	if out, errOut, code := bad.cli("deployments", "delete", "kbadimage"); code != 0 {
		t.Fatalf("delete: %s %s", out, errOut)
	}
	waitFor(t, "no replica Deployments or pods of kbadimage", 2*time.Minute, func() bool {
		ds, pods := replicaObjects(t, cs, "kbadimage")
		return len(ds)+len(pods) == 0
	})
}

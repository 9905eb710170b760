package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// hogScore answers the number of columns of each row; a row starting with 999 makes predict() allocate far
// beyond any replica's memory limit first.
const hogScore = `
def load_model():
    return 1
def predict(data, model=None):
    rows = data["data"]
    if rows and rows[0] and rows[0][0] == 999:
        hog = [b"\x01" * (1 << 20) for _ in range(4096)]
    return {"prediction": [len(r) for r in rows]}
`

// TestKubernetesReplicaOOMWhileServing: a request that makes a Python model allocate beyond the pod's
// resources.memory_mb fails with the reason (not retried on the other replica, which it would kill too), the
// requests of the load around it all succeed (the ones on the killed pod are retried on the other), Kubernetes
// restarts the pod, and GET on the deployment names the OOM kill.
func TestKubernetesReplicaOOMWhileServing(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	s := startKubeServer(t, k, "", "--replica-network", "host")
	if _, err := push(t, s.Client(), "hog", tarGz(t, pythonArtifact(hogScore, nil)), "artifact.tar.gz", pythonMeta("")); err != nil {
		t.Fatal(err)
	}
	const name = "khog"
	deploy(t, s, name, "--model", "hog:1", "--replicas", "2", "--memory-mb", "200")
	t.Cleanup(func() { s.cli("deployments", "delete", name) })
	waitFor(t, "2 pods' workers connected", 3*time.Minute, func() bool { return connected(s, name, 2) })
	_, pods := replicaObjects(t, cs, name)
	restarts := func() int {
		n := 0
		for _, p := range pods {
			got, err := cs.CoreV1().Pods("default").Get(ctxFor(t, time.Minute), p.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range got.Status.ContainerStatuses {
				n += int(c.RestartCount)
				if c.RestartCount > 0 && (c.LastTerminationState.Terminated == nil || c.LastTerminationState.Terminated.Reason != "OOMKilled") {
					t.Errorf("pod %s restarted, last state %+v, want OOMKilled", p.Name, c.LastTerminationState)
				}
			}
		}
		return n
	}
	if n := restarts(); n != 0 {
		t.Fatalf("%d restarts before the test", n)
	}

	path := "/deployments/" + name + "/predict"
	l := startLoad(t, s, path, []byte(`{"data": [[1, 2, 3]]}`), 4)
	waitFor(t, "requests under way", time.Minute, func() bool { return l.count() > 20 })
	resp, body := s.do(t, "POST", path, s.Token, strings.NewReader(`{"data": [[999, 1]]}`), "application/json")
	if resp.StatusCode == 200 || !strings.Contains(string(body), "OOM-killed") || !strings.Contains(string(body), "memory_mb") {
		t.Fatalf("the request that exhausts the memory: %d %s, want an error naming the OOM kill", resp.StatusCode, body)
	}
	t.Logf("the OOM request's answer: %d %s", resp.StatusCode, body)
	waitFor(t, "Kubernetes restarted the OOM-killed pod", 2*time.Minute, func() bool { return restarts() == 1 })
	waitFor(t, "both workers connected again", 3*time.Minute, func() bool { return connected(s, name, 2) })
	before := l.count()
	waitFor(t, "requests served after the restart", time.Minute, func() bool { return l.count() > before+20 })
	status, errs := l.finish()
	if len(status) != 1 || status[200] == 0 {
		t.Fatalf("statuses of the load %v (want only 200) across the OOM kill: %v", status, errs)
	}
	t.Logf("%d requests of the load, all 200, across the OOM kill", status[200])
	d, err := s.Client().GetDeployment(ctxFor(t, time.Minute), name)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != slipway.DeploymentActive || !strings.Contains(d.Reason, "OOM-killed") || !strings.Contains(d.Reason, "resources.memory_mb 200") {
		t.Fatalf("deployment after the OOM kill: %s %q, want ACTIVE with the OOM kill named", d.State, d.Reason)
	}
}

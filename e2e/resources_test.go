package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// A deployment's resources through the binary: the CLI sets them, the API shows them and refuses bad ones as
// problem+json naming the field, and on the local engine memory_mb limits the Python replica for real: a model
// that loads more than it fails with Python's MemoryError, the same model loading less serves.
func TestDeploymentResourcesLimitLocalReplicas(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	score := `import os
def load_model():
    return bytearray(int(os.environ.get("ALLOC_MB", "0")) << 20)
def predict(data, model=None):
    return {"prediction": [len(model) >> 20]}
`
	v, err := push(t, s.Client(), "hog", tarGz(t, pythonArtifact(score, nil)), "a.tar.gz", pythonMeta(""))
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, v)

	// Beyond the limit: the replica cannot load, and the deployment says why.
	out, errOut, code := s.cli("deploy", "hog-big", "--model", "hog:1", "--memory-mb", "512", "--env", "ALLOC_MB=1024")
	if code == 0 {
		t.Fatalf("a model loading 1 GiB deployed with memory_mb 512: %s", out)
	}
	d, err := s.Client().GetDeployment(context.Background(), "hog-big")
	if err != nil || d.State != slipway.DeploymentFailed || !strings.Contains(d.Reason, "MemoryError") {
		t.Fatalf("deployment %+v, %v, want FAILED with MemoryError\n%s", d, err, errOut)
	}

	// Within it: serving, with the resources shown by the API and the CLI.
	deploy(t, s, "hog-small", "--model", "hog:1", "--memory-mb", "512", "--cpu", "0.5", "--env", "ALLOC_MB=64")
	resp, body := s.do(t, "POST", "/deployments/hog-small/predict", s.Token, strings.NewReader(`{"data": [[1, 2]]}`), "application/json")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "64") {
		t.Fatalf("predict within the limit: %d %s", resp.StatusCode, body)
	}
	d, err = s.Client().GetDeployment(context.Background(), "hog-small")
	if err != nil || d.Resources == nil || *d.Resources != (slipway.Resources{CPU: 0.5, MemoryMB: 512}) {
		t.Fatalf("resources = %+v, %v", d.Resources, err)
	}
	if out, _, _ := s.cli("deployments", "get", "hog-small"); !strings.Contains(out, "0.5 cpu, 512 MiB memory") {
		t.Errorf("deployments get does not show the resources:\n%s", out)
	}
	// --cpu alone keeps the memory.
	if out, errOut, code := s.cli("deployments", "update", "hog-small", "--cpu", "1"); code != 0 {
		t.Fatalf("update --cpu: %s %s", out, errOut)
	}
	if d, err = s.Client().GetDeployment(context.Background(), "hog-small"); err != nil || d.Resources == nil || *d.Resources != (slipway.Resources{CPU: 1, MemoryMB: 512}) {
		t.Fatalf("after --cpu 1: resources = %+v, %v", d.Resources, err)
	}

	// Bad resources: 400 problem+json naming each field.
	resp, body = s.do(t, "POST", "/api/v1/deployments", s.Token, strings.NewReader(
		`{"name": "bad", "model": "hog", "resources": {"cpu": -1, "memory_mb": 4}}`), "application/json")
	var p struct{ Detail string }
	_ = json.Unmarshal(body, &p)
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") ||
		!strings.Contains(p.Detail, "resources.cpu must be > 0 and at most 64") || !strings.Contains(p.Detail, "resources.memory_mb") {
		t.Fatalf("bad resources: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// A job's resources through the binary: `jobs create --memory-mb` stores them, and on the local engine a run
// that allocates beyond them fails with Python's MemoryError while one within them succeeds.
func TestJobResourcesLimitLocalRuns(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	script := filepath.Join(t.TempDir(), "alloc.py")
	if err := os.WriteFile(script, []byte("import sys\nb = bytearray(int(sys.argv[1]) << 20)\nprint('allocated', len(b) >> 20)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := s.cli("jobs", "create", "alloc", script, "--memory-mb", "256", "--cpu", "0.5"); code != 0 {
		t.Fatalf("jobs create: %s %s", out, errOut)
	}
	c := s.Client()
	j, err := c.GetJob(ctxFor(t, time.Minute), "alloc")
	if err != nil || j.Resources == nil || *j.Resources != (slipway.Resources{CPU: 0.5, MemoryMB: 256}) {
		t.Fatalf("job resources = %+v, %v", j, err)
	}
	for _, tc := range []struct {
		mb     string
		state  slipway.RunState
		reason string
	}{{"512", slipway.RunFailed, "MemoryError"}, {"32", slipway.RunSucceeded, ""}} {
		r, err := c.RunJob(ctxFor(t, time.Minute), "alloc", client.RunInput{Args: []string{tc.mb}})
		if err != nil {
			t.Fatal(err)
		}
		r = waitJobRun(t, c, r.ID)
		if r.State != tc.state || !strings.Contains(r.Reason, tc.reason) {
			t.Errorf("allocating %s MiB under memory_mb 256: run %s %q, want %s with %q\n%s", tc.mb, r.State, r.Reason, tc.state, tc.reason, runLog(t, c, r.ID))
		}
	}
	// Bad resources are refused before the artifact is stored, naming the field.
	_, errOut, code := s.cli("jobs", "create", "bad", script, "--cpu", "65")
	if code == 0 || !strings.Contains(errOut, "resources.cpu must be > 0 and at most 64") {
		t.Fatalf("jobs create --cpu 65: exit %d, %s", code, errOut)
	}
}

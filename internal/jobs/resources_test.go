package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// A run's memory_mb is a real limit on the local engine: a script that allocates beyond it fails with Python's
// own MemoryError as the reason, the same script within it succeeds.
func TestJobResourcesMemoryLimitsTheRun(t *testing.T) {
	e := newEnv(t)
	// 256 MiB held at once; bytearray touches every page.
	const script = "buf = bytearray(256 << 20)\nprint('allocated', len(buf))\n"
	cases := []struct {
		name     string
		memoryMB int64
		state    slipway.RunState
		reason   string
	}{
		{"beyond", 128, slipway.RunFailed, "MemoryError"},
		{"within", 1024, slipway.RunSucceeded, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := e.createJob(t, "alloc-"+tc.name, "alloc.py", script, slipway.JobSpec{Resources: &slipway.Resources{MemoryMB: tc.memoryMB}})
			if j.Resources == nil || j.Resources.MemoryMB != tc.memoryMB {
				t.Fatalf("job resources = %+v", j.Resources)
			}
			r := e.wait(t, e.run(t, j.Name, RunInput{}).ID)
			if r.State != tc.state || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("run = %s %q, want %s with %q\n%s", r.State, r.Reason, tc.state, tc.reason, e.logs(t, r.ID))
			}
			if r.Spec.Resources == nil || r.Spec.Resources.MemoryMB != tc.memoryMB {
				t.Errorf("the run's spec lost the resources: %+v", r.Spec.Resources)
			}
		})
	}
}

func TestCreateJobRefusesBadResources(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(t.TempDir(), "train.py")
	if err := os.WriteFile(p, []byte("print(1)"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		res  slipway.Resources
		want string
	}{
		{slipway.Resources{CPU: -0.5}, "resources.cpu must be > 0 and at most 64"},
		{slipway.Resources{MemoryMB: 4}, "resources.memory_mb"},
	} {
		_, err := e.s.CreateJob(context.Background(), slipway.JobSpec{Name: "bad", Resources: &tc.res}, Upload{Path: p, Filename: "train.py"}, "test")
		if slipway.ErrorCode(err) != slipway.EINVALID || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resources %+v: err = %v, want EINVALID with %q", tc.res, err, tc.want)
		}
	}
}

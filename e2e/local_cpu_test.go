package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// cpuReport is a job that reports the cgroup it runs in and that cgroup's CPU limit (cgroup v1 or v2).
const cpuReport = `import json, os
path, limit = "", ""
for line in open("/proc/self/cgroup"):
    _, controllers, p = line.strip().split(":", 2)
    if "cpu" in controllers.split(",") or (controllers == "" and not path):
        path = p
for f in ("/sys/fs/cgroup/cpu%s/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct%s/cpu.cfs_quota_us", "/sys/fs/cgroup%s/cpu.max"):
    try:
        limit = open(f % path.rstrip("/")).read().strip()
        break
    except OSError:
        pass
json.dump({"cgroup": path, "limit": limit}, open(os.path.join(os.environ["SLIPWAY_OUTPUT_DIR"], "outputs.json"), "w"))
`

// cgroupWritable reports whether this machine lets a process create a cgroup with a CPU limit (the test's
// own look, independent of the server's).
func cgroupWritable(t *testing.T) bool {
	for _, dir := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
		probe := filepath.Join(dir, "slipway-e2e-probe")
		if err := os.Mkdir(probe, 0o755); err == nil {
			os.Remove(probe)
			return true
		}
	}
	return false
}

// TestLocalJobCPULimit: on the local engine a job's resources.cpu is a cgroup of the run's own with a CFS
// quota (v1 cpu.cfs_quota_us or v2 cpu.max) where the machine's cgroup hierarchy is writable, removed when the
// run ends; where it is not, the server says in its log that CPU is not applied, and why.
func TestLocalJobCPULimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	if _, err := c.CreateJob(ctxFor(t, time.Minute), slipway.JobSpec{Name: "cpu", Resources: &slipway.Resources{CPU: 0.25}},
		strings.NewReader(cpuReport), "cpu.py"); err != nil {
		t.Fatal(err)
	}
	r, err := c.RunJob(ctxFor(t, time.Minute), "cpu", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	r = waitJobRun(t, c, r.ID)
	if r.State != slipway.RunSucceeded {
		t.Fatalf("run %s %q\n%s", r.State, r.Reason, runLog(t, c, r.ID))
	}
	cgroup, _ := r.Outputs["cgroup"].(string)
	limit, _ := r.Outputs["limit"].(string)
	if !cgroupWritable(t) {
		if !strings.Contains(s.Log(), "resources.cpu is not applied to local replicas and job runs") {
			t.Errorf("the cgroup hierarchy is not writable, and the server log does not say CPU is not applied:\n%s", s.Log())
		}
		t.Logf("not writable here: the run was in %s with limit %q", cgroup, limit)
		return
	}
	if !strings.Contains(s.Log(), "resources.cpu limits local replicas and job runs") {
		t.Errorf("the server log does not say how CPU is limited:\n%s", s.Log())
	}
	if !strings.HasSuffix(cgroup, "/slipway-"+r.ID) || (limit != "25000" && limit != "25000 100000") {
		t.Fatalf("the run was in cgroup %q with CPU limit %q: want slipway-%s with a quarter of each 100 ms period", cgroup, limit, r.ID)
	}
	for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(root, cgroup)); err == nil {
			t.Errorf("the run's cgroup %s%s is still there after the run", root, cgroup)
		}
	}
}

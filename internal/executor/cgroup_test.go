package executor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// A cgroup v2 hierarchy (faked in a folder): the server's cgroup hands the cpu controller to its children,
// each process's cgroup gets cpu.max, exec-limited's join writes the pid, and Remove deletes it.
func TestCPUCgroupsV2(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cgroup.controllers":                                  "cpuset cpu io memory pids",
		"system.slice/slipway.service/cgroup.controllers":     "cpu memory pids",
		"system.slice/slipway.service/cgroup.subtree_control": "",
	})
	c, why := DetectCPUCgroups(root, []byte("0::/system.slice/slipway.service\n"))
	if c == nil {
		t.Fatalf("not detected: %s", why)
	}
	parent := filepath.Join(root, "system.slice/slipway.service")
	if c.Version != 2 || c.Parent != parent || !strings.Contains(c.Describe(), "cpu.max") {
		t.Fatalf("detected %+v (%s)", c, c.Describe())
	}
	if got := readFile(t, filepath.Join(parent, "cgroup.subtree_control")); got != "+cpu" {
		t.Errorf("subtree_control = %q, want the cpu controller enabled for the children", got)
	}
	dir, err := c.Create("jr-abc", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(parent, "slipway-jr-abc") {
		t.Errorf("cgroup folder %s", dir)
	}
	if got := readFile(t, filepath.Join(dir, "cpu.max")); got != "50000 100000" {
		t.Errorf("cpu.max = %q, want half of each 100 ms period", got)
	}
	if err := joinCgroup(dir); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.procs")); got != strings.TrimSpace(itoa(os.Getpid())) {
		t.Errorf("cgroup.procs = %q, want this process", got)
	}
	if err := c.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the cgroup is still there: %v", err)
	}
	if err := c.Remove(filepath.Join(root, "elsewhere")); err == nil {
		t.Error("Remove deleted a folder outside the server's cgroup")
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := c.Create(bad, 1); err == nil {
			t.Errorf("Create(%q) was accepted", bad)
		}
	}
	// A fraction of a microsecond of quota rounds up: a limit is never dropped.
	dir, err = c.Create("tiny", 0.000001)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "cpu.max")); got != "1 100000" {
		t.Errorf("cpu.max = %q", got)
	}
}

func TestCPUCgroupsV1(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cpu,cpuacct/cpu.cfs_quota_us":         "-1",
		"cpu,cpuacct/slipway/cpu.cfs_quota_us": "-1",
		"memory/slipway/memory.limit_in_bytes": "9223372036854771712",
	})
	c, why := DetectCPUCgroups(root, []byte("12:memory:/slipway\n4:cpu,cpuacct:/slipway\n0::/\n"))
	if c == nil {
		t.Fatalf("not detected: %s", why)
	}
	if c.Version != 1 || c.Parent != filepath.Join(root, "cpu,cpuacct/slipway") || !strings.Contains(c.Describe(), "cfs_quota_us") {
		t.Fatalf("detected %+v", c)
	}
	dir, err := c.Create("replica-1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if q, p := readFile(t, filepath.Join(dir, "cpu.cfs_quota_us")), readFile(t, filepath.Join(dir, "cpu.cfs_period_us")); q != "200000" || p != "100000" {
		t.Errorf("quota %s period %s, want two CPUs' worth of each period", q, p)
	}
}

// Where the hierarchy cannot be used the reason says what is missing; nothing is created.
func TestCPUCgroupsUnavailable(t *testing.T) {
	noCPU := t.TempDir()
	writeFiles(t, noCPU, map[string]string{"cgroup.controllers": "memory pids", "srv/cgroup.controllers": "memory pids"})
	if c, why := DetectCPUCgroups(noCPU, []byte("0::/srv\n")); c != nil || !strings.Contains(why, "cpu controller is not available") {
		t.Errorf("v2 without cpu: %+v %q", c, why)
	}
	v1NoCPU := t.TempDir()
	writeFiles(t, v1NoCPU, map[string]string{"memory/memory.limit_in_bytes": "1"})
	if c, why := DetectCPUCgroups(v1NoCPU, []byte("12:memory:/\n")); c != nil || !strings.Contains(why, "cpu controller is not mounted") {
		t.Errorf("v1 without cpu: %+v %q", c, why)
	}
	// A v2 cgroup that refuses to hand the cpu controller down (it holds processes itself): EBUSY in a real
	// hierarchy; here a subtree_control that is a folder cannot be written.
	busy := t.TempDir()
	writeFiles(t, busy, map[string]string{"cgroup.controllers": "cpu", "srv/cgroup.controllers": "cpu", "srv/cgroup.subtree_control/x": ""})
	if c, why := DetectCPUCgroups(busy, []byte("0::/srv\n")); c != nil || !strings.Contains(why, "cannot enable the cpu controller") {
		t.Errorf("v2 that refuses +cpu: %+v %q", c, why)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

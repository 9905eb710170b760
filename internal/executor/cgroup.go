package executor

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CPUCgroups limits the CPU of the local engine's processes (a replica's or a job run's resources.cpu) with a
// cgroup of their own under the server's cgroup: cgroup v2 `cpu.max`, or cgroup v1 `cpu.cfs_quota_us` and
// `cpu.cfs_period_us`. It exists only where that hierarchy is writable by the server (a delegated subtree:
// systemd's Delegate=yes, a container with its own cgroup namespace mounted read-write); elsewhere
// DetectCPUCgroups says why not and CPU is not limited.
type CPUCgroups struct {
	// Parent is the folder the processes' cgroups are created in (the server's own cgroup).
	Parent string
	// Version is 1 or 2.
	Version int
}

// cpuPeriodMicros is the CFS period the quota is a share of: the kernel's default, 100 ms.
const cpuPeriodMicros = 100000

// DetectCPUCgroups finds where the server may create CPU-limited cgroups: fsRoot is the cgroup mount
// (/sys/fs/cgroup), selfCgroup the contents of /proc/self/cgroup. It returns nil and the reason when it
// cannot (no cpu controller, a read-only or foreign hierarchy), said so that the log tells an operator what
// to change.
func DetectCPUCgroups(fsRoot string, selfCgroup []byte) (*CPUCgroups, string) {
	if _, err := os.Stat(filepath.Join(fsRoot, "cgroup.controllers")); err == nil {
		return detectV2(fsRoot, selfCgroup)
	}
	return detectV1(fsRoot, selfCgroup)
}

func detectV2(fsRoot string, selfCgroup []byte) (*CPUCgroups, string) {
	rel, ok := cgroupPath(selfCgroup, func(controllers []string) bool { return len(controllers) == 1 && controllers[0] == "" })
	if !ok {
		return nil, "cgroup v2 at " + fsRoot + ", but /proc/self/cgroup names no unified cgroup"
	}
	parent := filepath.Join(fsRoot, rel)
	controllers, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil || !slices.Contains(strings.Fields(string(controllers)), "cpu") {
		return nil, fmt.Sprintf("cgroup v2: the cpu controller is not available in the server's cgroup %s (delegate it: systemd Delegate=yes)", parent)
	}
	if err := unix.Access(parent, unix.W_OK); err != nil {
		return nil, fmt.Sprintf("cgroup v2: the server's cgroup %s is not writable (%v): run the server with a delegated cgroup (systemd Delegate=yes)", parent, err)
	}
	// The children get the cpu controller only if the parent hands it down; a cgroup that holds processes
	// itself may refuse (EBUSY: "no internal processes"), and then nothing can be limited.
	subtree := filepath.Join(parent, "cgroup.subtree_control")
	if cur, _ := os.ReadFile(subtree); !slices.Contains(strings.Fields(string(cur)), "cpu") {
		if err := os.WriteFile(subtree, []byte("+cpu"), 0); err != nil {
			return nil, fmt.Sprintf("cgroup v2: cannot enable the cpu controller for the children of %s: %v (the server must run in a cgroup of its own, below a delegated one)", parent, err)
		}
	}
	return &CPUCgroups{Parent: parent, Version: 2}, ""
}

func detectV1(fsRoot string, selfCgroup []byte) (*CPUCgroups, string) {
	rel, ok := cgroupPath(selfCgroup, func(controllers []string) bool { return slices.Contains(controllers, "cpu") })
	if !ok {
		return nil, "cgroup v1 at " + fsRoot + ", but the cpu controller is not mounted (/proc/self/cgroup names none)"
	}
	var mount string
	for _, name := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
		if _, err := os.Stat(filepath.Join(fsRoot, name, "cpu.cfs_quota_us")); err == nil {
			mount = filepath.Join(fsRoot, name)
			break
		}
	}
	if mount == "" {
		return nil, "cgroup v1: no cpu hierarchy with cpu.cfs_quota_us under " + fsRoot
	}
	parent := filepath.Join(mount, rel)
	if _, err := os.Stat(parent); err != nil {
		// In a container the hierarchy is often the container's own, mounted at its root.
		parent = mount
	}
	if err := unix.Access(parent, unix.W_OK); err != nil {
		return nil, fmt.Sprintf("cgroup v1: the cpu hierarchy %s is not writable (%v)", parent, err)
	}
	return &CPUCgroups{Parent: parent, Version: 1}, ""
}

// cgroupPath is the path of the /proc/self/cgroup line whose controllers match ("0::/path" for v2,
// "4:cpu,cpuacct:/path" for v1).
func cgroupPath(selfCgroup []byte, match func([]string) bool) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(string(selfCgroup)))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && match(strings.Split(parts[1], ",")) {
			return parts[2], true
		}
	}
	return "", false
}

// Create makes the cgroup of one process (name: its run or replica id, a file name) limited to cores CPUs
// and returns its folder: `slipway exec-limited --cgroup=DIR` moves the process into it before it becomes
// the program. Remove it once the process has exited.
func (c *CPUCgroups) Create(name string, cores float64) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("cgroup name %q: want a file name", name)
	}
	if cores <= 0 {
		return "", fmt.Errorf("cgroup %s: cpu %g must be > 0", name, cores)
	}
	quota := int64(math.Ceil(cores * cpuPeriodMicros))
	dir := filepath.Join(c.Parent, "slipway-"+name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	var err error
	if c.Version == 2 {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, cpuPeriodMicros)), 0o644)
	} else {
		// The period first: the kernel checks the quota against it.
		if err = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(cpuPeriodMicros)), 0o644); err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.FormatInt(quota, 10)), 0o644)
		}
	}
	if err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("limit cgroup %s to %g CPUs: %w", dir, cores, err)
	}
	return dir, nil
}

// Remove deletes a process's cgroup (empty once its processes exited; the kernel refuses otherwise).
func (c *CPUCgroups) Remove(dir string) error {
	if filepath.Dir(dir) != filepath.Clean(c.Parent) {
		return fmt.Errorf("cgroup %s is not under %s", dir, c.Parent)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A fake or test hierarchy holds the control files as plain files: remove them with it.
		if err2 := os.RemoveAll(dir); err2 != nil {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// Describe says which CPU limit applies, for the server's log.
func (c *CPUCgroups) Describe() string {
	if c.Version == 2 {
		return "cgroup v2 cpu.max in a cgroup per process under " + c.Parent
	}
	return "cgroup v1 cpu.cfs_quota_us in a cgroup per process under " + c.Parent
}

// joinCgroup moves the calling process into the cgroup folder dir (its children follow it).
func joinCgroup(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("join cgroup %s: %w", dir, err)
	}
	return nil
}

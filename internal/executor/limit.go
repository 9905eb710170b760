package executor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/slipway-ml/slipway"
	"golang.org/x/sys/unix"
)

// LimitArgs encodes limits as the flags of ExecLimited (none for zero limits).
func LimitArgs(l slipway.JobLimits) []string {
	var out []string
	add := func(flag string, v int64) {
		if v > 0 {
			out = append(out, "--"+flag+"="+strconv.FormatInt(v, 10))
		}
	}
	add("cpu", l.CPUSeconds)
	add("as", l.MemoryBytes)
	add("nofile", l.OpenFiles)
	add("nproc", l.Processes)
	return out
}

// CgroupArg is ExecLimited's flag that moves the process into the cgroup folder dir (CPUCgroups.Create).
func CgroupArg(dir string) string { return "--cgroup=" + dir }

// ExecLimited is `slipway exec-limited [--cpu=S] [--as=BYTES] [--nofile=N] [--nproc=N] [--cgroup=DIR] -- PROGRAM
// ARGS...`: it joins the cgroup DIR (a CPU limit, see CPUCgroups), sets the resource limits on itself and
// replaces itself with PROGRAM (same PID and process group, so the
// executor's handle stays valid). Go's os/exec cannot set rlimits on a child, hence this tiny re-exec. CPU time
// gets SIGXCPU at the limit and SIGKILL one second later; core dumps are always off.
//
// The address-space limit is the one this Go process cannot set on itself: a Go process already holds more
// address space than a small limit allows, so any allocation that asks the kernel for memory after it (the exec's
// own argument copies, the collector's mark bits) ends it with "fatal error: runtime: cannot allocate memory"
// before PROGRAM starts. /bin/sh sets it instead, just before it becomes PROGRAM (same PID again).
func ExecLimited(args []string) error {
	type limit struct {
		res   int
		extra uint64
	}
	flags := map[string]limit{"cpu": {unix.RLIMIT_CPU, 1}, "as": {unix.RLIMIT_AS, 0},
		"nofile": {unix.RLIMIT_NOFILE, 0}, "nproc": {unix.RLIMIT_NPROC, 0}}
	type setting struct {
		name string
		res  int
		rl   syscall.Rlimit
	}
	var settings []setting
	var cgroup string
	var addressSpace uint64 // bytes; 0: none
	i := 0
	for ; i < len(args) && args[i] != "--"; i++ {
		name, value, ok := strings.Cut(strings.TrimPrefix(args[i], "--"), "=")
		if name == "cgroup" && ok && value != "" {
			cgroup = value
			continue
		}
		lim, known := flags[name]
		n, err := strconv.ParseUint(value, 10, 64)
		if !ok || !known || err != nil || n == 0 {
			return fmt.Errorf("exec-limited: bad flag %q: want --cpu=S, --as=BYTES, --nofile=N, --nproc=N or --cgroup=DIR", args[i])
		}
		if name == "as" {
			addressSpace = n
			continue
		}
		settings = append(settings, setting{name, lim.res, syscall.Rlimit{Cur: n, Max: n + lim.extra}})
	}
	if i+1 >= len(args) {
		return errors.New("exec-limited: missing -- PROGRAM [ARGS...]")
	}
	prog := args[i+1]
	path, err := exec.LookPath(prog)
	if err != nil {
		return fmt.Errorf("exec-limited: %w", err)
	}
	// Only now, with the whole command line checked, do the limits apply (to this process, then the program).
	if cgroup != "" {
		if err := joinCgroup(cgroup); err != nil {
			return fmt.Errorf("exec-limited: %w", err)
		}
	}
	for _, st := range settings {
		// syscall.Setrlimit (not x/sys/unix): it also tells the runtime not to restore its own NOFILE at exec.
		if err := syscall.Setrlimit(st.res, &st.rl); err != nil {
			return fmt.Errorf("exec-limited: set %s=%d: %w", st.name, st.rl.Cur, err)
		}
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}) // lowering a limit is always permitted
	argv := args[i+1:]
	if addressSpace > 0 {
		// `ulimit -v` sets the soft and the hard limit, in KiB; "$0" is the limit, "$@" PROGRAM and its arguments.
		kib := strconv.FormatUint(max(addressSpace/1024, 1), 10)
		argv = append([]string{shell, "-c", `ulimit -v "$0" && exec "$@"`, kib, path}, argv[1:]...)
		path = shell
	}
	return syscall.Exec(path, argv, os.Environ())
}

// shell applies the address-space limit (see ExecLimited).
const shell = "/bin/sh"

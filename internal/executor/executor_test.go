package executor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

const (
	shimArg       = "exec-limited-helper"
	supervisorArg = "exec-supervise-helper"
)

// The test binary doubles as `slipway exec-limited` and `slipway exec-supervise`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		for arg, cmd := range map[string]func([]string) error{shimArg: ExecLimited, supervisorArg: Supervise} {
			if os.Args[1] != arg {
				continue
			}
			if err := cmd(os.Args[2:]); err != nil {
				_, _ = os.Stderr.WriteString(err.Error() + "\n") // nowhere else to report it
				os.Exit(127)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// locals are the two ways the local executor runs a process: output through pipes to this server, and
// supervised (surviving the server). Both must behave the same while the server runs.
func locals() map[string]*Local {
	return map[string]*Local{
		"pipes":      NewLocal([]string{os.Args[0], shimArg}),
		"supervised": NewLocal([]string{os.Args[0], shimArg}).WithSupervisor([]string{os.Args[0], supervisorArg}),
	}
}

type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) add(stream string, _ time.Time, line string) {
	l.mu.Lock()
	l.all = append(l.all, stream+" "+line)
	l.mu.Unlock()
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

func start(t *testing.T, x *Local, id, script string, lim slipway.JobLimits, out *lines) Handle {
	t.Helper()
	h, err := x.Start(context.Background(), Spec{ID: id, Path: "/bin/sh", Args: []string{"-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		Dir: t.TempDir(), StateDir: t.TempDir(), Limits: lim, Output: out.add})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLocalExitAndOutput(t *testing.T) {
	for mode, x := range locals() {
		t.Run(mode, func(t *testing.T) { testExitAndOutput(t, x) })
	}
}

func testExitAndOutput(t *testing.T, x *Local) {
	cases := []struct {
		name, script string
		lim          slipway.JobLimits
		code         int
		signal       string
		last         string
	}{
		{"success", "echo out; echo err >&2", slipway.JobLimits{}, 0, "", "err"},
		{"exit code", "echo 'fatal: no data' >&2; exit 3", slipway.JobLimits{}, 3, "", "fatal: no data"},
		{"open files limit", "ulimit -n", slipway.JobLimits{OpenFiles: 32}, 0, "", "32"},
		{"cpu limit", "while :; do :; done", slipway.JobLimits{CPUSeconds: 1}, -1, "CPU time limit exceeded", ""},
		{"no newline at the end", "printf 'partial'", slipway.JobLimits{}, 0, "", "partial"},
		{"long line", "head -c 70000 /dev/zero | tr '\\0' x; echo; echo after >&2", slipway.JobLimits{}, 0, "", "after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out lines
			start(t, x, tc.name, tc.script, tc.lim, &out)
			exit, err := x.Wait(context.Background(), tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if exit.Code != tc.code || exit.Signal != tc.signal || exit.LastLine != tc.last {
				t.Errorf("exit = %+v, want code %d signal %q last %q; output:\n%.300s", exit, tc.code, tc.signal, tc.last, out.String())
			}
			if tc.last != "" && !strings.Contains(out.String(), tc.last) {
				t.Errorf("output lacks %q:\n%.300s", tc.last, out.String())
			}
		})
	}
}

func TestLocalStopKillsTheGroupAndRecover(t *testing.T) {
	for mode, x := range locals() {
		t.Run(mode, func(t *testing.T) { testStopKillsTheGroup(t, x) })
	}
	x := NewLocal(nil)
	// Limits without a shim are refused.
	if _, err := x.Start(context.Background(), Spec{ID: "x", Path: "/bin/true", Limits: slipway.JobLimits{CPUSeconds: 1}}); slipway.ErrorCode(err) != slipway.EUNAVAILABLE {
		t.Errorf("limits without shim: %v", err)
	}
}

func testStopKillsTheGroup(t *testing.T, x *Local) {
	var out lines
	h := start(t, x, "tree", "sleep 300 & echo $!; wait", slipway.JobLimits{}, &out)
	if !Alive(h) {
		t.Fatalf("leader %d not alive", h.PID)
	}
	if err := x.Stop(context.Background(), "tree", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	exit, _ := x.Wait(context.Background(), "tree")
	// The kernel delivers the group's SIGKILL asynchronously: give the last members a moment to disappear.
	for deadline := time.Now().Add(10 * time.Second); (Alive(h) || groupExists(h.PID)) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if exit.Code != -1 || Alive(h) || groupExists(h.PID) {
		t.Errorf("after Stop: exit %+v, leader alive %v, group alive %v", exit, Alive(h), groupExists(h.PID))
	}
	// Recover of a dead handle is ErrLost and harmless (a stopped supervised run's exit was collected: its
	// record is there, so it is re-attached as ended).
	if h.StateDir == "" || x.supervisor == nil {
		if err := x.Recover(context.Background(), h, nil); err != ErrLost {
			t.Errorf("Recover(dead) = %v", err)
		}
	}
}

func TestExecLimitedRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--cpu=x", "--", "true"}, {"--mem=1", "--", "true"}, {"--cpu=1"}, {"--nofile=0", "--", "true"}} {
		if err := ExecLimited(args); err == nil {
			t.Errorf("ExecLimited(%q) accepted", args)
		}
	}
	if got := LimitArgs(slipway.JobLimits{CPUSeconds: 5, OpenFiles: 64}); strings.Join(got, " ") != "--cpu=5 --nofile=64" {
		t.Errorf("LimitArgs = %v", got)
	}
}

func supervised() *Local {
	return NewLocal([]string{os.Args[0], shimArg}).WithSupervisor([]string{os.Args[0], supervisorArg})
}

func waitOutput(t *testing.T, out *lines, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", want, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A supervised process outlives the server that started it: the server detaches, the process goes on, and a
// new server re-attaches, reads the rest of its output (nothing lost, nothing twice) and gets its real exit.
func TestSupervisedSurvivesTheServer(t *testing.T) {
	first := supervised()
	var before, after lines
	h := start(t, first, "train", "echo one; echo warn >&2; sleep 0.6; echo two; sleep 0.6; echo three; exit 3", slipway.JobLimits{}, &before)
	waitOutput(t, &before, "stdout one")
	if !first.Detach("train") {
		t.Fatal("Detach refused a supervised process")
	}
	if _, err := first.Wait(context.Background(), "train"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Fatalf("the first server still knows the detached process: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if !Alive(h) {
		t.Fatal("the process died with the detach")
	}
	second := supervised()
	if err := second.Recover(context.Background(), h, after.add); err != nil {
		t.Fatalf("Recover = %v", err)
	}
	exit, err := second.Wait(context.Background(), "train")
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 3 || exit.LastLine != "warn" {
		t.Errorf("exit = %+v, want code 3, last line warn", exit)
	}
	all := before.String() + "\n" + after.String()
	for _, l := range []string{"stdout one", "stderr warn", "stdout two", "stdout three"} {
		if n := strings.Count(all, l); n != 1 {
			t.Errorf("%q delivered %d times:\n%s", l, n, all)
		}
	}
	if strings.Contains(after.String(), "one") {
		t.Errorf("the second server re-read what the first had: %s", after.String())
	}
}

// A process that ended while no server ran reports its real exit and its last output when one comes back.
func TestSupervisedEndedWhileNoServerRan(t *testing.T) {
	first := supervised()
	var before, after lines
	h := start(t, first, "quick", "sleep 0.3; echo done; exit 4", slipway.JobLimits{}, &before)
	first.Detach("quick")
	for deadline := time.Now().Add(10 * time.Second); Alive(h); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the process did not end")
		}
	}
	second := supervised()
	if err := second.Recover(context.Background(), h, after.add); err != nil {
		t.Fatalf("Recover = %v", err)
	}
	exit, err := second.Wait(context.Background(), "quick")
	if err != nil || exit.Code != 4 || !strings.Contains(after.String(), "stdout done") {
		t.Errorf("exit %+v, %v; output %q", exit, err, after.String())
	}
}

// A supervisor killed outright (kill -9) takes its program with it; the exit says so, nothing hangs.
func TestSupervisorKilled(t *testing.T) {
	x := supervised()
	var out lines
	h := start(t, x, "victim", "echo up; sleep 300", slipway.JobLimits{}, &out)
	waitOutput(t, &out, "stdout up")
	if err := syscall.Kill(h.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exit, err := x.Wait(context.Background(), "victim")
	if err != nil || exit.Signal != "killed" || !strings.Contains(exit.LastLine, "without recording the exit") {
		t.Errorf("exit %+v, %v", exit, err)
	}
	for deadline := time.Now().Add(10 * time.Second); groupExists(h.PID); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the program outlived its killed supervisor")
		}
	}
	// Nothing to re-attach to: no process, no exit record.
	if err := supervised().Recover(context.Background(), h, nil); err != ErrLost {
		t.Errorf("Recover = %v, want ErrLost", err)
	}
}

// A program that writes without end cannot fill the disk through the spool.
func TestSupervisedOutputIsBounded(t *testing.T) {
	x := supervised()
	var out lines
	h, err := x.Start(context.Background(), Spec{ID: "chatty", Path: "/bin/sh", Args: []string{"-c", "yes spam | head -c 2000000; echo bye >&2"},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), StateDir: t.TempDir(), MaxOutput: 100_000, Output: out.add})
	if err != nil {
		t.Fatal(err)
	}
	var spoolSize int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st, err := os.Stat(filepath.Join(h.StateDir, spoolFile)); err == nil {
			spoolSize = max(spoolSize, st.Size())
		}
		if _, ok := readExit(h.StateDir); ok || time.Now().After(deadline) {
			break
		}
	}
	exit, err := x.Wait(context.Background(), "chatty")
	if err != nil || exit.Code != 0 || exit.LastLine != "bye" {
		t.Errorf("exit %+v, %v", exit, err)
	}
	if spoolSize > 100_000+200 || !strings.Contains(out.String(), "slipway output beyond 100000 bytes is dropped") {
		t.Errorf("spool grew to %d bytes; output ends %q", spoolSize, out.String()[max(0, len(out.String())-200):])
	}
}

func TestSuperviseRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{{"--", "true"}, {"--spool=/tmp/x", "--", "true"}, {"--spool=a", "--exit=b"}, {"--bogus=1", "--", "true"},
		{"--spool=a", "--exit=b", "--max-bytes=0", "--", "true"}, {"--spool=a", "--exit=b", "--max-bytes=x", "--", "true"}} {
		if err := Supervise(args); err == nil {
			t.Errorf("Supervise(%q) accepted", args)
		}
	}
}

// An address-space limit far below what a Go process holds reaches the program as its soft and hard limit, with
// the other limits and the program's arguments intact. The shim leaves this limit to /bin/sh: set on the Go
// shim itself, it made the shim's own exec fail now and then ("fatal error: runtime: cannot allocate memory",
// or the race detector's "unable to mmap": 2 of 85 runs of TestJobResourcesMemoryLimitsTheRun under -race).
func TestExecLimitedSetsASmallAddressSpace(t *testing.T) {
	const limit = 16 << 20 // bytes: a Go test binary reserves far more address space than this
	for i := range 20 {
		out, err := exec.Command(os.Args[0], shimArg, "--as="+strconv.Itoa(limit), "--nofile=64", "--",
			"sh", "-c", `ulimit -S -v; ulimit -H -v; ulimit -n; echo "$0 $*"`, "a", "b").CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		if want := "16384\n16384\n64\na b\n"; string(out) != want {
			t.Fatalf("run %d: the program saw %q, want %q (soft and hard limits in KiB, open files, its arguments)", i, out, want)
		}
	}
}

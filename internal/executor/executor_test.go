package executor

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

const shimArg = "exec-limited-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shimArg {
		if err := ExecLimited(os.Args[2:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(127)
		}
	}
	os.Exit(m.Run())
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
		Dir: t.TempDir(), Limits: lim, Output: out.add})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLocalExitAndOutput(t *testing.T) {
	x := NewLocal([]string{os.Args[0], shimArg})
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
				t.Errorf("exit = %+v, want code %d signal %q last %q; output:\n%s", exit, tc.code, tc.signal, tc.last, out.String())
			}
		})
	}
}

func TestLocalStopKillsTheGroupAndRecover(t *testing.T) {
	x := NewLocal(nil)
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
	// Recover of a dead handle is ErrLost and harmless.
	if err := x.Recover(context.Background(), h); err != ErrLost {
		t.Errorf("Recover(dead) = %v", err)
	}
	// Limits without a shim are refused.
	if _, err := x.Start(context.Background(), Spec{ID: "x", Path: "/bin/true", Limits: slipway.JobLimits{CPUSeconds: 1}}); slipway.ErrorCode(err) != slipway.EUNAVAILABLE {
		t.Errorf("limits without shim: %v", err)
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

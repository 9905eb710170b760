package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// fakeProc writes a /proc with the given machine line and processes (pid -> ppid, ticks).
func fakeProc(t *testing.T, dir, cpuLine string, procs map[int][2]int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(cpuLine+"\ncpu0 1 2 3\nintr 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for pid, p := range procs {
		d := filepath.Join(dir, fmt.Sprint(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// utime stime cutime cstime = ticks split 1/2/3/4 ... the sum is what counts; comm has spaces and ')'.
		u, st := p[1]/2, p[1]-p[1]/2
		line := fmt.Sprintf("%d (we(ird) name) S %d 1 1 0 -1 4194560 100 0 0 0 %d %d 0 0 20 0 1 0 100 1000 10", pid, p[0], u, st)
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProcStatParsesWeirdNames(t *testing.T) {
	dir := t.TempDir()
	fakeProc(t, dir, "cpu 1 0 1 1 0 0 0 0 0 0", map[int][2]int{42: {7, 33}})
	ppid, ticks, err := procStat(filepath.Join(dir, "42", "stat"))
	if err != nil || ppid != 7 || ticks != 33 {
		t.Fatalf("ppid %d ticks %d err %v", ppid, ticks, err)
	}
	if _, _, err := procStat(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file must fail")
	}
}

func TestTreeTicksAndShare(t *testing.T) {
	dir := t.TempDir()
	self := os.Getpid()
	// Tree: 100 -> 101 -> 102, and 200 elsewhere; this process is a child of 1.
	fakeProc(t, dir, "cpu 100 0 50 800 10 5 5 0 0 0", map[int][2]int{1: {0, 1}, 100: {1, 10}, 101: {100, 20}, 102: {101, 30}, 200: {1, 1000}, self: {1, 5}})
	if got := treeTicks(dir, 100); got != 60 {
		t.Fatalf("tree of 100 = %d ticks, want 60", got)
	}
	if got := treeTicks(dir, 101); got != 50 {
		t.Fatalf("tree of 101 = %d ticks, want 50", got)
	}
	a, err := sampleCPU(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	if a.total != 970 || a.busy != 150 || a.self != 5 || a.target != 60 || a.ncpu != 1 {
		t.Fatalf("sample %+v", a)
	}
	// 1000 ticks later: machine busy +600 (user 400, system 150, steal 50), target +300, loadgen +200.
	fakeProc(t, dir, "cpu 500 0 200 1200 10 5 5 50 0 0", map[int][2]int{1: {0, 1}, 100: {1, 110}, 101: {100, 120}, 102: {101, 130}, 200: {1, 1000}, self: {1, 205}})
	b, err := sampleCPU(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := share(a, b)
	if !ok || math.Abs(s.Target-30) > 1e-9 || math.Abs(s.Loadgen-20) > 1e-9 || math.Abs(s.Other-10) > 1e-9 {
		t.Fatalf("share %+v (total %d ticks)", s, b.total-a.total)
	}
	if _, ok := share(b, b); ok {
		t.Error("no elapsed ticks must not give a share")
	}
}

func TestRunReportsCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("cannot start sleep:", err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Concurrency: 2, Duration: 300 * time.Millisecond,
		Warmup: 50 * time.Millisecond, WatchPID: child.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Line())
	if res.CPU == nil || res.CPUs < 1 {
		t.Fatalf("no CPU accounting: %+v", res)
	}
	// The sleeping target uses nothing; this process (load generator and server) is busy.
	if res.CPU.Target > 1 || res.CPU.Loadgen <= 0 || res.CPU.Loadgen > 100.5 || res.CPU.Other < 0 {
		t.Errorf("cpu %+v", res.CPU)
	}
	res, err = Run(context.Background(), Config{URL: srv.URL, Concurrency: 1, Duration: 50 * time.Millisecond})
	if err != nil || res.CPU != nil {
		t.Errorf("without -watch-pid there is no CPU accounting: %+v, %v", res.CPU, err)
	}
}

package procsched

import (
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the child: several OS threads (goroutines locked to them), waiting for stdin to close.
func TestMain(m *testing.M) {
	if os.Getenv("PROCSCHED_CHILD") == "1" {
		for range 4 {
			go func() {
				runtime.LockOSThread()
				select {}
			}()
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startChild starts the child under nice 5 and returns its pid once it runs at least 5 threads.
func startChild(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("nice", "-n", "5", os.Args[0])
	cmd.Env = append(os.Environ(), "PROCSCHED_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	for range 500 {
		if tids, err := threads(cmd.Process.Pid); err == nil && len(tids) >= 5 {
			if exe, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"); err == nil && exe != "/usr/bin/nice" {
				return cmd.Process.Pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the child did not start its threads")
	return 0
}

func TestSetPutsEveryThreadInTheClassAndKeepsNice(t *testing.T) {
	pid := startChild(t)
	for _, tc := range []struct {
		class  Class
		policy uint32
	}{
		{Batch, unix.SCHED_BATCH},
		{Normal, unix.SCHED_NORMAL},
		{Batch, unix.SCHED_BATCH},
	} {
		if err := Set(pid, tc.class); err != nil {
			t.Fatal(err)
		}
		tids, err := threads(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, tid := range tids {
			attr, err := unix.SchedGetAttr(tid, 0)
			if err != nil {
				t.Fatal(err)
			}
			if attr.Policy != tc.policy || attr.Nice != 5 {
				t.Errorf("after Set %s: thread %d has policy %d nice %d, want policy %d nice 5", tc.class, tid, attr.Policy, attr.Nice, tc.policy)
			}
		}
	}
}

func TestSetOfAProcessThatIsGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if err := Set(cmd.Process.Pid, Batch); err == nil {
		t.Fatal("Set of an ended process: no error")
	}
}

package modelruntime

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Scheduling is the Linux scheduling policy a replica process runs under.
type Scheduling string

const (
	// SchedulingBatch runs replicas under SCHED_BATCH: same CPU share as any process, but waking one (a request
	// written to its pipe) does not preempt the thread that woke it. That thread is the HTTP front end, which
	// has more requests to read and answers to write; it keeps its CPU slice and the model runs when a core
	// frees, usually microseconds later. Under load this cut replica CPU per request by ~20% and raised an
	// ONNX deployment's requests/s (docs/benchmarks.md), because each batch costs fewer context switches.
	SchedulingBatch Scheduling = "batch"
	// SchedulingNormal leaves replicas under the default policy (SCHED_OTHER).
	SchedulingNormal Scheduling = "normal"
)

// apply puts every thread of process pid under the policy. Threads inherit their creator's policy, so threads
// the model starts later get it too; one started while the first pass ran is caught by the next pass.
func (s Scheduling) apply(pid int) error {
	if s != SchedulingBatch {
		return nil
	}
	done := map[int]bool{}
	for pass := 0; pass < 5; pass++ {
		tids, err := threads(pid)
		if err != nil {
			return err
		}
		changed := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			done[tid], changed = true, true
			err := unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_BATCH}, 0)
			if err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: the thread has exited meanwhile
				return fmt.Errorf("set SCHED_BATCH on replica %d thread %d: %w (start the server with --replica-scheduling normal)", pid, tid, err)
			}
		}
		if !changed {
			return nil
		}
	}
	return nil
}

func threads(pid int) ([]int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("list replica %d threads: %w", pid, err)
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

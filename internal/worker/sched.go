package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// batchScheduling puts every thread of process pid under SCHED_BATCH, as the server does for its local
// replicas (modelruntime.SchedulingBatch, which explains why: a woken replica does not preempt the thread that
// woke it). A network worker applies it to itself once its model is loaded, and to each Python child once it
// has said hello; the worker cannot use modelruntime's (the worker imports no service package). Threads
// started later inherit the policy.
func batchScheduling(pid int) error {
	done := map[int]bool{}
	for range 5 { // a thread started during a pass is caught by the next
		entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			return fmt.Errorf("list the threads of %d: %w", pid, err)
		}
		changed := false
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			done[tid], changed = true, true
			err = unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_BATCH}, 0)
			if err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("set SCHED_BATCH on %d thread %d: %w (run the worker with --scheduling normal)", pid, tid, err)
			}
		}
		if !changed {
			return nil
		}
	}
	return nil
}

// Package procsched sets the Linux scheduling class of every thread of a process. The server puts its own threads
// and its replicas' in different classes (docs/architecture.md, "The server under SCHED_BATCH"); a network worker
// puts its model processes in one. It imports nothing of Slipway's, so both can use it.
package procsched

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Class is a Linux scheduling policy for ordinary (not real-time) work.
type Class string

const (
	// Batch is SCHED_BATCH: the same share of the CPU as any process, but a thread of it that wakes up does not
	// preempt the thread running on the CPU; it runs when that one's slice ends or a CPU is free.
	Batch Class = "batch"
	// Normal is SCHED_OTHER, Linux's default.
	Normal Class = "normal"
)

func (c Class) policy() uint32 {
	if c == Batch {
		return unix.SCHED_BATCH
	}
	return unix.SCHED_NORMAL
}

// Set puts every thread of process pid in class c, each keeping its nice value (an unprivileged process may
// not lower it, and the operator's `nice` stays in force). Threads inherit their creator's policy, so threads
// the process starts later are in c too; one started while a pass runs is caught by the next pass.
func Set(pid int, c Class) error {
	done := map[int]bool{}
	for range 5 {
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
			if err := setThread(tid, c); err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: it has exited
				return fmt.Errorf("put thread %d of process %d under %s: %w", tid, pid, c, err)
			}
		}
		if !changed {
			return nil
		}
	}
	return nil
}

func setThread(tid int, c Class) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return err
	}
	if attr.Policy == c.policy() {
		return nil
	}
	attr.Policy = c.policy() // nice, a custom slice and the reset-on-fork flag stay as they are
	return unix.SchedSetAttr(tid, attr, 0)
}

func threads(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, fmt.Errorf("list the threads of process %d: %w", pid, err)
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

package modelruntime

import (
	"fmt"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/procsched"
)

// Scheduling is the Linux scheduling class a replica process is put in once its model is loaded; empty leaves
// it in the class it inherited from the server.
type Scheduling = procsched.Class

const (
	// SchedulingBatch runs replicas under SCHED_BATCH: waking one (a request written to its pipe) does not
	// preempt the thread that woke it.
	SchedulingBatch = procsched.Batch
	// SchedulingNormal runs replicas under SCHED_OTHER.
	SchedulingNormal = procsched.Normal
)

// ReplicaScheduling is the class each runtime's replicas are put in once loaded.
type ReplicaScheduling struct{ Python, ONNX Scheduling }

// For returns the class of runtime's replicas.
func (s ReplicaScheduling) For(runtime string) Scheduling {
	if runtime == slipway.RuntimeONNX {
		return s.ONNX
	}
	return s.Python
}

// ReplicaSchedulingFor reads --replica-scheduling (auto, batch or normal) for a server whose own threads are
// (serverBatch) or are not under SCHED_BATCH; docs/architecture.md has the figures.
//
// auto, with the server under SCHED_BATCH: a Python replica runs under SCHED_OTHER. Its calls are long (~100 µs
// and more) and it is what limits a Python deployment; with up to 8 calls in flight it rarely sleeps, and the
// front end's thousands of wake-ups a second no longer preempt it mid-call. An ONNX replica stays under
// SCHED_BATCH, as the server is: its calls are short, it sleeps between batches, and a wake-up of it preempting the
// front end at every batch cost more than it saved. Without the server under SCHED_BATCH, auto is the
// arrangement before that: every replica under SCHED_BATCH.
//
// A replica starts as the server's child, in its class; normal moves it back only when the server moved itself
// (else it is in the class the server was started in, which may be one it could not leave).
func ReplicaSchedulingFor(flag string, serverBatch bool) ReplicaScheduling {
	if !serverBatch {
		if flag == string(SchedulingNormal) {
			return ReplicaScheduling{} // already in the class the server was started in
		}
		return ReplicaScheduling{Python: SchedulingBatch, ONNX: SchedulingBatch}
	}
	switch flag {
	case string(SchedulingBatch):
		return ReplicaScheduling{Python: SchedulingBatch, ONNX: SchedulingBatch}
	case string(SchedulingNormal):
		return ReplicaScheduling{Python: SchedulingNormal, ONNX: SchedulingNormal}
	}
	return ReplicaScheduling{Python: SchedulingNormal, ONNX: SchedulingBatch}
}

// applyScheduling puts every thread of replica process pid in class s (nothing for an empty s).
func applyScheduling(s Scheduling, pid int) error {
	if s == "" {
		return nil
	}
	if err := procsched.Set(pid, s); err != nil {
		return fmt.Errorf("replica scheduling: %w (start the server with --server-scheduling normal --replica-scheduling normal to leave replicas in the class they start in)", err)
	}
	return nil
}

package cluster

import (
	"context"
	"fmt"

	"github.com/slipway-ml/slipway"
)

// Leases is the lease API a service needs to own work among several servers (implemented by *Node).
type Leases interface {
	ID() string
	Acquire(ctx context.Context, name string, onLost func()) (bool, error)
	Release(ctx context.Context, name string) error
	Holds(name string) bool
	Holders(ctx context.Context, prefix string) ([]Holder, error)
}

var _ Leases = (*Node)(nil)

// Runs in progress (a job run's process, a pipeline run's driver, a batch run's scoring) are owned the same
// way: the owner holds the lease RunLease(kind, id) and is recorded as the run's owner in the store, and the
// store lets only the recorded owner write the run's progress. A server takes a run over in two
// compare-and-set steps: the lease (only one server wins it), then the owner (only from the owner it saw).

// runLeasePrefix names the runs' leases: "run/job/ID", "run/pipeline/ID", "run/batch/ID".
const runLeasePrefix = "run/"

// RunLease is the lease that says which server executes a run.
func RunLease(kind slipway.RunKind, id string) string {
	return runLeasePrefix + string(kind) + "/" + id
}

// OrphanRuns lists the runs of kind that are not over and whose lease nobody holds: their owner was killed,
// cut off, or stopped and handed them over.
func OrphanRuns(ctx context.Context, leases Leases, store slipway.RunOwnerStore, kind slipway.RunKind) ([]slipway.OwnedRun, error) {
	// The runs first, then the leases: a run claimed after the first read holds its lease by the second.
	runs, err := store.ActiveRuns(ctx, kind)
	if err != nil {
		return nil, fmt.Errorf("cluster: list %s runs: %w", kind, err)
	}
	if len(runs) == 0 {
		return nil, nil
	}
	live, err := leases.Holders(ctx, runLeasePrefix+string(kind)+"/")
	if err != nil {
		return nil, fmt.Errorf("cluster: list %s run leases: %w", kind, err)
	}
	held := make(map[string]bool, len(live))
	for _, h := range live {
		held[h.Lease] = true
	}
	out := runs[:0]
	for _, r := range runs {
		if !held[RunLease(kind, r.ID)] {
			out = append(out, r)
		}
	}
	return out, nil
}

// AdoptRun takes an orphan run over: its lease, then its ownership from the owner it had. It returns false
// when another server was faster (nothing to do then). onLost is the lease's (see Node.Acquire).
func AdoptRun(ctx context.Context, leases Leases, store slipway.RunOwnerStore, kind slipway.RunKind, r slipway.OwnedRun, onLost func()) (bool, error) {
	lease := RunLease(kind, r.ID)
	ok, err := leases.Acquire(ctx, lease, onLost)
	if err != nil || !ok {
		return false, err
	}
	if err := store.ClaimRun(ctx, kind, r.ID, r.Owner, leases.ID()); err != nil {
		if rerr := leases.Release(context.WithoutCancel(ctx), lease); rerr != nil {
			err = fmt.Errorf("%w (and releasing its lease: %v)", err, rerr)
		}
		if slipway.ErrorCode(err) == slipway.ECONFLICT {
			return false, nil // over meanwhile, or claimed by its owner's successor
		}
		return false, fmt.Errorf("cluster: claim %s run %s: %w", kind, r.ID, err)
	}
	return true, nil
}

// LostOwner names the server that owned an adopted run, for the reasons runs give.
func LostOwner(r slipway.OwnedRun) string {
	if r.Owner == "" {
		return "a previous server"
	}
	return "server " + r.Owner
}

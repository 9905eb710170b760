package slipway

import "context"

// RunKind names a kind of run that, on several servers, is executed by exactly one owner server: a job run's
// process, a pipeline run's driver, a batch run's scoring.
type RunKind string

// The kinds of owned runs; each is also the middle of its lease's name ("run/job/ID").
const (
	RunKindJob      RunKind = "job"
	RunKindPipeline RunKind = "pipeline"
	RunKindBatch    RunKind = "batch"
)

// OwnedRun is a run that is not over, with the server that owns it ("" when none was recorded).
type OwnedRun struct {
	ID    string
	State string
	Owner string
}

// RunOwnerStore records which server owns each run not yet over. Ownership moves only by compare-and-set, and
// the store's writes of a run's progress apply only while the writing server owns it, so that a server that
// lost a run (killed, partitioned, its lease taken over) never writes over the new owner's state.
type RunOwnerStore interface {
	// ActiveRuns lists the runs of kind that an owner must finish: job and pipeline runs IN_PROGRESS (pipeline
	// runs also ACCEPTED), batch runs ACCEPTED or IN_PROGRESS.
	ActiveRuns(ctx context.Context, kind RunKind) ([]OwnedRun, error)
	// ClaimRun makes server to the owner of run id if its owner is still from and it is not over; ECONFLICT
	// otherwise.
	ClaimRun(ctx context.Context, kind RunKind, id, from, to string) error
}

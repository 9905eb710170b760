package sqlstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// Two servers on one database: a run's owner moves by compare-and-set, and the server that lost a run can no
// longer write its progress over the new owner's.
func TestRunOwnershipFencesTheOldOwner(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		a, b := twoServers(t, td)
		a.FenceRuns("A")
		b.FenceRuns("B")
		conflict := func(what string, err error) {
			t.Helper()
			if slipway.ErrorCode(err) != slipway.ECONFLICT || !strings.Contains(slipway.ErrorMessage(err), "owned by server B") {
				t.Fatalf("%s by the old owner: %v, want a conflict naming the new owner", what, err)
			}
		}

		// A job run: started (claimed) by A, taken over by B.
		jr := &slipway.JobRun{ID: "jr-1", Job: "j", State: slipway.RunAccepted}
		if err := a.CreateJobRun(ctx, jr); err != nil {
			t.Fatal(err)
		}
		if err := a.StartJobRun(ctx, "jr-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		if runs, err := b.ActiveRuns(ctx, slipway.RunKindJob); err != nil || len(runs) != 1 || runs[0].Owner != "A" {
			t.Fatalf("active job runs: %+v %v", runs, err)
		}
		if err := b.ClaimRun(ctx, slipway.RunKindJob, "jr-1", "X", "B"); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("claim from the wrong owner: %v", err)
		}
		if err := b.ClaimRun(ctx, slipway.RunKindJob, "jr-1", "A", "B"); err != nil {
			t.Fatal(err)
		}
		conflict("set the process", a.SetJobRunProcess(ctx, "jr-1", 42, 1, "tok"))
		jr.State, jr.Reason = slipway.RunSucceeded, ""
		conflict("finish", a.FinishJobRun(ctx, jr))
		jr.State, jr.Reason = slipway.RunFailed, "server A stopped renewing"
		if err := b.FinishJobRun(ctx, jr); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.FindJobRun(ctx, "jr-1"); got.State != slipway.RunFailed {
			t.Fatalf("job run: %+v", got)
		}
		if err := a.ClaimRun(ctx, slipway.RunKindJob, "jr-1", "B", "A"); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("claim a finished run: %v", err)
		}

		// A pipeline run and its steps.
		pr := &slipway.PipelineRun{ID: "pr-1", Pipeline: "p", State: slipway.RunInProgress,
			Steps: []*slipway.StepRun{{Name: "s", Kind: "script", State: slipway.StepPending}}}
		if err := a.CreatePipelineRun(ctx, pr); err != nil {
			t.Fatal(err)
		}
		st := pr.Steps[0]
		st.State = slipway.StepInProgress
		if err := a.UpdateStepRun(ctx, "pr-1", st); err != nil {
			t.Fatal(err)
		}
		if err := b.ClaimRun(ctx, slipway.RunKindPipeline, "pr-1", "A", "B"); err != nil {
			t.Fatal(err)
		}
		st.State = slipway.StepSucceeded
		conflict("update a step", a.UpdateStepRun(ctx, "pr-1", st))
		pr.State = slipway.RunSucceeded
		conflict("finish the pipeline run", a.UpdatePipelineRun(ctx, pr))
		if got, _ := b.FindPipelineRun(ctx, "pr-1"); got.State != slipway.RunInProgress || got.Steps[0].State != slipway.StepInProgress {
			t.Fatalf("the old owner wrote over the run: %+v %+v", got, got.Steps[0])
		}
		st.State = slipway.StepFailed
		if err := b.UpdateStepRun(ctx, "pr-1", st); err != nil {
			t.Fatal(err)
		}

		// A batch run: starting it claims it; anybody cancels it.
		br := &slipway.BatchRun{ID: "b-1", State: slipway.BatchAccepted, Model: "m", Version: 1, RowsTotal: -1}
		if err := a.CreateBatchRun(ctx, br); err != nil {
			t.Fatal(err)
		}
		if err := a.SetBatchState(ctx, "b-1", slipway.BatchAccepted, slipway.BatchInProgress, ""); err != nil {
			t.Fatal(err)
		}
		if err := b.ClaimRun(ctx, slipway.RunKindBatch, "b-1", "A", "B"); err != nil {
			t.Fatal(err)
		}
		conflict("record progress", a.UpdateBatchProgress(ctx, "b-1", slipway.BatchProgress{RowsTotal: 10, RowsDone: 5}))
		conflict("record the output", a.SetBatchOutput(ctx, "b-1", slipway.BatchOutput{Table: "t"}))
		conflict("finish the batch run", a.SetBatchState(ctx, "b-1", slipway.BatchInProgress, slipway.BatchSucceeded, ""))
		if err := b.UpdateBatchProgress(ctx, "b-1", slipway.BatchProgress{RowsTotal: 10, RowsDone: 10}); err != nil {
			t.Fatal(err)
		}
		if err := a.SetBatchState(ctx, "b-1", slipway.BatchInProgress, slipway.BatchCanceled, "canceled by t"); err != nil {
			t.Fatalf("cancel through any server: %v", err)
		}
		if runs, err := a.ActiveRuns(ctx, slipway.RunKindBatch); err != nil || len(runs) != 0 {
			t.Fatalf("active batch runs after the cancel: %+v %v", runs, err)
		}
	})
}

// A job run canceled through a server that does not own it: the cancel is a flag that only the owner's look
// finds, with its reason; a run that is over cannot be flagged.
func TestJobRunCancelRequestReachesItsOwner(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		a, b := twoServers(t, td)
		a.FenceRuns("A")
		b.FenceRuns("B")
		for _, id := range []string{"jr-1", "jr-2", "jr-3"} {
			if err := a.CreateJobRun(ctx, &slipway.JobRun{ID: id, Job: "j", State: slipway.RunAccepted}); err != nil {
				t.Fatal(err)
			}
		}
		for _, start := range []struct {
			db *DB
			id string
		}{{a, "jr-1"}, {a, "jr-2"}, {b, "jr-3"}} {
			if err := start.db.StartJobRun(ctx, start.id, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := a.CancelRequestedJobRuns(ctx); err != nil || len(got) != 0 {
			t.Fatalf("flagged before any cancel: %v %v", got, err)
		}
		// B flags A's jr-1 and its own jr-3; A finds only its own run, with the reason.
		for _, id := range []string{"jr-1", "jr-3"} {
			if err := b.RequestJobRunCancel(ctx, id, "canceled by alice"); err != nil {
				t.Fatalf("flag %s: %v", id, err)
			}
		}
		if got, err := a.CancelRequestedJobRuns(ctx); err != nil || len(got) != 1 || got["jr-1"] != "canceled by alice" {
			t.Fatalf("A's flagged runs: %v %v, want jr-1 only", got, err)
		}
		if got, err := b.CancelRequestedJobRuns(ctx); err != nil || len(got) != 1 || got["jr-3"] != "canceled by alice" {
			t.Fatalf("B's flagged runs: %v %v, want jr-3 only", got, err)
		}
		// The owner ends it: no longer flagged, and a finished run is a conflict.
		if err := a.FinishJobRun(ctx, &slipway.JobRun{ID: "jr-1", State: slipway.RunCanceled, Reason: "canceled by alice"}); err != nil {
			t.Fatal(err)
		}
		if got, err := a.CancelRequestedJobRuns(ctx); err != nil || len(got) != 0 {
			t.Fatalf("flagged after the run ended: %v %v", got, err)
		}
		err := b.RequestJobRunCancel(ctx, "jr-1", "canceled by bob")
		if slipway.ErrorCode(err) != slipway.ECONFLICT || !strings.Contains(slipway.ErrorMessage(err), "already CANCELED") {
			t.Fatalf("flag a finished run: %v, want a conflict saying it is CANCELED", err)
		}
		if err := b.RequestJobRunCancel(ctx, "jr-9", "canceled by bob"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("flag a missing run: %v", err)
		}
		if got, _ := a.FindJobRun(ctx, "jr-2"); got.State != slipway.RunInProgress || got.Reason != "" {
			t.Fatalf("an unflagged run changed: %+v", got)
		}
	})
}

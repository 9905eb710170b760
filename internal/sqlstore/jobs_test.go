package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestJobRunStateChangesAreCompareAndSet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		r := &slipway.JobRun{ID: "jr-1", Job: "j", State: slipway.RunAccepted, Spec: slipway.RunSpec{Kind: slipway.EntryShell}}
		if err := db.CreateJobRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		next, err := db.NextAcceptedJobRun(ctx)
		if err != nil || next.ID != "jr-1" {
			t.Fatalf("next = %v, %v", next, err)
		}
		now := time.Now().UTC()
		steps := []struct {
			name string
			do   func() error
			code string // "" = success
		}{
			{"start", func() error { return db.StartJobRun(ctx, "jr-1", now) }, ""},
			{"start again", func() error { return db.StartJobRun(ctx, "jr-1", now) }, slipway.ECONFLICT},
			{"finish", func() error {
				code := 0
				return db.FinishJobRun(ctx, &slipway.JobRun{ID: "jr-1", State: slipway.RunSucceeded, ExitCode: &code, FinishedAt: &now,
					Outputs: map[string]any{"v": 1.0}})
			}, ""},
			{"finish again", func() error {
				return db.FinishJobRun(ctx, &slipway.JobRun{ID: "jr-1", State: slipway.RunCanceled, FinishedAt: &now})
			}, slipway.ECONFLICT},
			{"unknown run", func() error { return db.StartJobRun(ctx, "jr-x", now) }, slipway.ECONFLICT},
		}
		for _, st := range steps {
			err := st.do()
			if (st.code == "" && err != nil) || (st.code != "" && slipway.ErrorCode(err) != st.code) {
				t.Errorf("%s: err = %v, want %q", st.name, err, st.code)
			}
		}
		got, err := db.FindJobRun(ctx, "jr-1")
		if err != nil || got.State != slipway.RunSucceeded || *got.ExitCode != 0 || got.Outputs["v"] != 1.0 {
			t.Errorf("run = %+v, %v", got, err)
		}
		if _, err := db.NextAcceptedJobRun(ctx); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("empty queue: %v", err)
		}
	})
}

func TestRecordTickOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		sch := &slipway.Schedule{Name: "s", Cron: "* * * * *", Timezone: "UTC", ConcurrencyPolicy: slipway.PolicyForbid}
		sch.Target.Kind, sch.Target.Name = slipway.TargetJob, "j"
		if err := db.CreateSchedule(ctx, sch); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
		cases := []struct {
			name string
			at   time.Time
			code string
		}{
			{"first", at, ""},
			{"same tick again", at, slipway.ECONFLICT},
			{"older tick", at.Add(-time.Minute), slipway.ECONFLICT},
			{"next tick", at.Add(time.Minute), ""},
		}
		for _, tc := range cases {
			err := db.RecordTick(ctx, &slipway.Tick{Schedule: "s", At: tc.at, RecordedAt: tc.at, Action: "starting"})
			if (tc.code == "" && err != nil) || (tc.code != "" && slipway.ErrorCode(err) != tc.code) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.code)
			}
		}
		if err := db.UpdateTick(ctx, &slipway.Tick{Schedule: "s", At: at.Add(time.Minute), Action: "started", RunID: "jr-9"}); err != nil {
			t.Fatal(err)
		}
		got, _ := db.FindSchedule(ctx, "s")
		ticks, _ := db.FindTicks(ctx, "s", 10)
		if got.LastRunID != "jr-9" || !got.LastTickAt.Equal(at.Add(time.Minute)) || len(ticks) != 2 || ticks[0].Action != "started" {
			t.Errorf("schedule %+v, ticks %+v", got, ticks)
		}
	})
}

func TestPipelineRunCancelAndResume(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		r := &slipway.PipelineRun{ID: "pr-1", Pipeline: "p", State: slipway.RunInProgress,
			Steps: []*slipway.StepRun{{Name: "a", Kind: "script", State: slipway.StepPending}}}
		if err := db.CreatePipelineRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := db.RequestPipelineRunCancel(ctx, "pr-1", "canceled by t"); err != nil {
			t.Fatal(err)
		}
		// A driver writing the run does not clear the cancel flag.
		r.State = slipway.RunInProgress
		if err := db.UpdatePipelineRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, _ := db.FindPipelineRun(ctx, "pr-1")
		if !got.CancelRequested || len(got.Steps) != 1 {
			t.Fatalf("cancel flag lost: %+v", got)
		}
		if err := db.ResumePipelineRun(ctx, "pr-1"); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Errorf("resume an IN_PROGRESS run: %v", err)
		}
		got.State = slipway.RunCanceled
		db.UpdatePipelineRun(ctx, got)
		if err := db.ResumePipelineRun(ctx, "pr-1"); err != nil {
			t.Fatal(err)
		}
		got, _ = db.FindPipelineRun(ctx, "pr-1")
		if got.State != slipway.RunInProgress || got.CancelRequested || got.Retries != 1 {
			t.Errorf("resumed = %+v", got)
		}
	})
}

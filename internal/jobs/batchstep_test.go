package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/executor"
)

// fakeBatch is the batch service as the batch step sees it. A run created with input.path "slow.csv" stays
// IN_PROGRESS until the test finishes it; other runs progress by 40 rows per read and end as their path says:
// "fail.csv" FAILED, "canceled.csv" CANCELED by someone else, anything else SUCCEEDED. "missing.csv" is refused.
type fakeBatch struct {
	mu   sync.Mutex
	runs map[string]*slipway.BatchRun
	ids  []string // creation order
}

func newFakeBatch() *fakeBatch { return &fakeBatch{runs: map[string]*slipway.BatchRun{}} }

func (f *fakeBatch) Create(ctx context.Context, spec slipway.BatchSpec, by string) (*slipway.BatchRun, error) {
	if spec.Input.Path == "missing.csv" {
		return nil, slipway.Errorf(slipway.EINVALID, "input file missing.csv does not exist in the import folder")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &slipway.BatchRun{ID: fmt.Sprintf("b-%d", len(f.ids)+1), State: slipway.BatchInProgress, Model: spec.Model, Version: spec.Version,
		Spec: spec, RowsTotal: 100, Output: spec.Output, CreatedBy: by, CreatedAt: time.Now().UTC()}
	f.runs[r.ID] = r
	f.ids = append(f.ids, r.ID)
	c := *r
	return &c, nil
}

func (f *fakeBatch) Get(ctx context.Context, id string) (*slipway.BatchRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.runs[id]
	if r == nil {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "batch prediction %s not found", id)
	}
	if !r.State.Terminal() && r.Spec.Input.Path != "slow.csv" {
		r.RowsDone = min(r.RowsDone+40, r.RowsTotal)
		if r.RowsDone == r.RowsTotal {
			switch r.Spec.Input.Path {
			case "fail.csv":
				r.State, r.Reason = slipway.BatchFailed, "row 57: predict() raised ValueError: bad plan"
			case "canceled.csv":
				r.State, r.Reason = slipway.BatchCanceled, "canceled by alice"
			default:
				r.State = slipway.BatchSucceeded
			}
		}
	}
	c := *r
	return &c, nil
}

func (f *fakeBatch) List(ctx context.Context, flt slipway.BatchFilter) ([]*slipway.BatchRun, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*slipway.BatchRun
	for i := len(f.ids) - 1; i >= 0; i-- {
		c := *f.runs[f.ids[i]]
		out = append(out, &c)
	}
	total := len(out)
	out = out[min(flt.Offset, len(out)):]
	if flt.Limit > 0 && len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, total, nil
}

func (f *fakeBatch) Cancel(ctx context.Context, id, by string) (*slipway.BatchRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.runs[id]
	if r.State.Terminal() {
		return nil, slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is already %s", id, r.State)
	}
	r.State, r.Reason = slipway.BatchCanceled, "canceled by "+by
	c := *r
	return &c, nil
}

func (f *fakeBatch) finish(id string, state slipway.BatchState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[id].State, f.runs[id].RowsDone = state, f.runs[id].RowsTotal
}

func (f *fakeBatch) snapshot() []slipway.BatchRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []slipway.BatchRun
	for _, id := range f.ids {
		out = append(out, *f.runs[id])
	}
	return out
}

func withBatch(f *fakeBatch) func(*Config) {
	return func(c *Config) { c.Batch, c.BatchPoll = f, 5*time.Millisecond }
}

// waitStep waits until cond holds for a step of a run (the test's deadline bounds it).
func (e *env) waitStep(t *testing.T, runID, step string, cond func(*slipway.StepRun) bool) *slipway.StepRun {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		ch := e.s.Changed()
		r, err := e.s.GetPipelineRun(context.Background(), runID)
		if err != nil {
			t.Fatal(err)
		}
		st := stepOf(r, step)
		if cond(st) {
			return st
		}
		if r.State.Terminal() {
			t.Fatalf("pipeline run %s ended %s (%q) before step %s reached the condition: %s %q %v", runID, r.State, r.Reason, step, st.State, st.Reason, st.Outputs)
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("step %s of %s: condition not reached (%+v)", step, runID, st)
		}
	}
}

const batchPipeline = `
name: score
params: {model: churn, input: customers.csv, chunk: "500"}
steps:
  - name: train
    script: |
      echo '{"version": 3}' > "$SLIPWAY_OUTPUT_DIR/outputs.json"
  - name: predict
    builtin: batch
    depends_on: [train]
    retries: 1
    with:
      model: ${params.model}
      version: ${steps.train.outputs.version}
      input: {path: "${params.input}"}
      output: {connection: wh, table: "scores_${run.id}"}
      key_columns: [customer_id]
      chunk_size: ${params.chunk}
`

func TestBatchStepOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		input     string
		run       slipway.RunState
		step      slipway.StepState
		reason    string // in the step's reason
		attempts  int
		batchRuns int
	}{
		{"succeeds", "customers.csv", slipway.RunSucceeded, slipway.StepSucceeded, "", 1, 1},
		{"refused by the batch service", "missing.csv", slipway.RunFailed, slipway.StepFailed,
			"batch prediction refused: input file missing.csv does not exist in the import folder (after 2 attempts)", 2, 0},
		{"batch fails, retried once", "fail.csv", slipway.RunFailed, slipway.StepFailed,
			"FAILED: row 57: predict() raised ValueError: bad plan (after 2 attempts)", 2, 2},
		{"batch canceled by someone else", "canceled.csv", slipway.RunFailed, slipway.StepCanceled, "was canceled by alice", 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBatch()
			e := newEnv(t, withBatch(fb))
			e.createPipeline(t, batchPipeline)
			r := e.waitPipeline(t, e.runPipeline(t, "score", map[string]any{"input": tc.input}).ID)
			st := stepOf(r, "predict")
			if r.State != tc.run || st.State != tc.step || st.Attempts != tc.attempts || !strings.Contains(st.Reason, tc.reason) {
				t.Fatalf("run %s %q; step %s after %d attempts: %q", r.State, r.Reason, st.State, st.Attempts, st.Reason)
			}
			runs := fb.snapshot()
			if len(runs) != tc.batchRuns {
				t.Fatalf("%d batch runs started, want %d", len(runs), tc.batchRuns)
			}
			for i, b := range runs {
				if b.CreatedBy != fmt.Sprintf("pipeline:%s/predict#%d", r.ID, i+1) {
					t.Errorf("batch run %d created by %q", i, b.CreatedBy)
				}
				// References resolved with their types: the upstream step's version, a string param as a number.
				if b.Spec.Model != "churn" || b.Spec.Version != 3 || b.Spec.ChunkSize != 500 || b.Spec.Output.Table != "scores_"+r.ID ||
					b.Spec.Input.Path != tc.input || len(b.Spec.KeyColumns) != 1 {
					t.Errorf("batch spec = %+v", b.Spec)
				}
			}
			if tc.step == slipway.StepFailed && tc.batchRuns > 0 && !strings.Contains(st.History[0].Reason, "batch prediction b-1 FAILED") {
				t.Errorf("the first attempt's reason does not name its batch run: %q", st.History[0].Reason)
			}
			if tc.step != slipway.StepSucceeded {
				return
			}
			want := map[string]any{"batch_id": "b-1", "state": "SUCCEEDED", "rows_done": 100.0, "rows_total": 100.0, "table": "scores_" + r.ID,
				"connection": "wh", "model": "churn", "version": 3.0}
			for k, v := range want {
				if st.Outputs[k] != v {
					t.Errorf("outputs[%s] = %v, want %v (outputs %v)", k, st.Outputs[k], v, st.Outputs)
				}
			}
			if st.Reason != "" {
				t.Errorf("a succeeded step keeps the progress as its reason: %q", st.Reason)
			}
		})
	}
}

func TestBatchStepCancelAndTimeoutCancelTheBatchRun(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		cancel      bool
		run         slipway.RunState
		step        slipway.StepState
		batchReason string
		stepReason  string
	}{
		{"pipeline canceled", "", true, slipway.RunCanceled, slipway.StepCanceled, "was canceled", "canceled: pipeline run"},
		{"step timeout", "timeout_seconds: 1", false, slipway.RunFailed, slipway.StepFailed, "ran out of time", "exceeded timeout 1s: batch prediction b-1 canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBatch()
			e := newEnv(t, withBatch(fb))
			e.createPipeline(t, `
name: slow
steps:
  - name: predict
    builtin: batch
    `+tc.extra+`
    with: {model: churn, input: {path: slow.csv}, output: {format: parquet}}
`)
			r := e.runPipeline(t, "slow", nil)
			st := e.waitStep(t, r.ID, "predict", func(st *slipway.StepRun) bool { return st.Outputs["batch_id"] == "b-1" })
			if !strings.Contains(st.Reason, "batch prediction b-1 IN_PROGRESS: 0/100 rows") || st.State != slipway.StepInProgress ||
				st.Outputs["download"] != "/api/v1/batch-predictions/b-1/output" {
				t.Errorf("running step: %s %q %v", st.State, st.Reason, st.Outputs)
			}
			if tc.cancel {
				if _, err := e.s.CancelPipelineRun(context.Background(), r.ID, "tester"); err != nil {
					t.Fatal(err)
				}
			}
			r = e.waitPipeline(t, r.ID)
			st = stepOf(r, "predict")
			b := fb.snapshot()[0]
			if r.State != tc.run || st.State != tc.step || !strings.Contains(st.Reason, tc.stepReason) {
				t.Errorf("run %s, step %s %q", r.State, st.State, st.Reason)
			}
			if b.State != slipway.BatchCanceled || !strings.Contains(b.Reason, tc.batchReason) {
				t.Errorf("batch run %s %q", b.State, b.Reason)
			}
		})
	}
}

// A server restart in the middle of a batch step: the batch run is left alone (it resumes with the server) and
// the step re-attaches to it, whether its id was recorded in the step or only in the run's created_by.
func TestBatchStepReattachesAfterRestart(t *testing.T) {
	for _, forget := range []bool{false, true} {
		t.Run(fmt.Sprintf("id recorded %v", !forget), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			db := openDB(t, dir)
			fb := newFakeBatch()
			open := func() *Service {
				s, err := Open(ctx, Config{Store: db, Tokens: db, Models: db, Executor: executor.NewLocal(nil), Dir: filepath.Join(dir, "jobs"),
					URL: "http://x", Batch: fb, BatchPoll: 5 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			e := &env{s: open(), db: db}
			e.createPipeline(t, `
name: nightly
steps:
  - name: predict
    builtin: batch
    with: {model: churn, input: {path: slow.csv}, output: {connection: wh, table: scores}}
`)
			r := e.runPipeline(t, "nightly", nil)
			e.waitStep(t, r.ID, "predict", func(st *slipway.StepRun) bool { return st.Outputs["batch_id"] == "b-1" })
			e.s.Close()
			if b := fb.snapshot()[0]; b.State != slipway.BatchInProgress {
				t.Fatalf("shutting down canceled the batch run: %s %q", b.State, b.Reason)
			}
			if forget { // the server stopped between starting the batch run and recording its id
				cur, _ := db.FindPipelineRun(ctx, r.ID)
				st := stepOf(cur, "predict")
				st.Outputs, st.Reason = nil, ""
				if err := db.UpdateStepRun(ctx, r.ID, st); err != nil {
					t.Fatal(err)
				}
			}

			e.s = open()
			defer e.s.Close()
			e.waitStep(t, r.ID, "predict", func(st *slipway.StepRun) bool { return st.Outputs["batch_id"] == "b-1" })
			fb.finish("b-1", slipway.BatchSucceeded)
			r = e.waitPipeline(t, r.ID)
			st := stepOf(r, "predict")
			if r.State != slipway.RunSucceeded || st.Attempts != 1 || st.Outputs["batch_id"] != "b-1" || st.Outputs["rows_done"] != 100.0 {
				t.Fatalf("run %s %q; step %s attempts %d outputs %v", r.State, r.Reason, st.State, st.Attempts, st.Outputs)
			}
			if n := len(fb.snapshot()); n != 1 {
				t.Fatalf("%d batch runs: the resumed step started another one", n)
			}
		})
	}
}

func TestBatchSpecOf(t *testing.T) {
	in := map[string]any{"path": "x.csv"}
	out := map[string]any{"format": "csv"}
	cases := []struct {
		name string
		with map[string]any
		want slipway.BatchSpec
		err  string
	}{
		{"numbers from strings", map[string]any{"model": "m", "version": "4", "chunk_size": "250", "parallelism": 3.0, "input": in, "output": out},
			slipway.BatchSpec{Model: "m", Version: 4, ChunkSize: 250, Parallel: 3, Input: slipway.BatchInput{Path: "x.csv"}, Output: slipway.BatchOutput{Format: "csv"}}, ""},
		{"version as @alias", map[string]any{"model": "m", "version": "@champion", "input": in, "output": out},
			slipway.BatchSpec{Model: "m", Alias: "champion", Input: slipway.BatchInput{Path: "x.csv"}, Output: slipway.BatchOutput{Format: "csv"}}, ""},
		{"null is unset", map[string]any{"deployment": "d", "version": nil, "input": in, "output": out},
			slipway.BatchSpec{Deployment: "d", Input: slipway.BatchInput{Path: "x.csv"}, Output: slipway.BatchOutput{Format: "csv"}}, ""},
		{"not a number", map[string]any{"model": "m", "chunk_size": "big", "input": in, "output": out}, slipway.BatchSpec{}, `with.chunk_size "big" is not a whole number`},
		{"fraction", map[string]any{"model": "m", "version": 1.5, "input": in, "output": out}, slipway.BatchSpec{}, "with.version 1.5 is not a whole number"},
		{"alias twice", map[string]any{"model": "m", "version": "@a", "alias": "b", "input": in, "output": out}, slipway.BatchSpec{}, "both given"},
		{"unknown key in input", map[string]any{"model": "m", "input": map[string]any{"pth": "x"}, "output": out}, slipway.BatchSpec{}, `unknown field "pth"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BatchSpecOf(tc.with)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

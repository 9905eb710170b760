package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// The pipeline `batch` step, against connections defined in a connections file: register → batch writes
// exactly the input's rows; a batch that cannot start fails the step with the batch service's message;
// cancelling the pipeline run cancels its batch run.
//
// Not parallel: the server finds the output database's path in an environment variable (t.Setenv).
func TestPipelineBatchStepWithConnectionsFile(t *testing.T) {
	imports, outDir := t.TempDir(), t.TempDir()
	outDB := filepath.Join(outDir, "scores.db")
	t.Setenv("SLIPWAY_E2E_SCORES_DB", outDB)
	// Group-readable, with a password in clear for pg: the server warns; the sqlite URL comes from the environment.
	connFile := filepath.Join(t.TempDir(), "connections.yaml")
	if err := os.WriteFile(connFile, []byte("# batch outputs\nwh: sqlite://${SLIPWAY_E2E_SCORES_DB}\npg: postgres://scorer:hunter2@127.0.0.1:1/nowhere\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chmod(connFile, 0o640)
	args := []string{"--import-dir", imports, "--connections-file", connFile}
	s := startServer(t, "", args...)
	c := s.Client()
	if !strings.Contains(s.Log(), "connections file "+connFile+" is readable by group or others (mode 0640) and holds a password for pg (line 3)") {
		t.Errorf("no warning about the readable password in the log:\n%s", s.Log())
	}
	conns, err := c.ListConnections(ctxFor(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(conns); len(conns) != 2 || !strings.Contains(got, outDB) || strings.Contains(got, "hunter2") || strings.Contains(got, "scorer") {
		t.Fatalf("connections = %s", got)
	}

	rows, lines := readChurn(t, 300)
	os.WriteFile(filepath.Join(imports, "customers.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	def := fmt.Sprintf(`
name: score
params: {input: customers.csv}
steps:
  - name: train
    script: cp %s/* "$SLIPWAY_OUTPUT_DIR/"
  - name: register
    builtin: register
    depends_on: [train]
    with: {from: train, model: churn}
  - name: predict
    builtin: batch
    depends_on: [register]
    with:
      model: churn
      version: ${steps.register.outputs.version}
      input: {path: "${params.input}"}
      output: {connection: wh, table: scores}
      key_columns: [customer_id]
      chunk_size: 70
`, examplePath("sklearn-churn"))
	if _, err := c.CreatePipeline(ctxFor(t, time.Minute), []byte(def), nil, ""); err != nil {
		t.Fatal(err)
	}

	t.Run("register then batch", func(t *testing.T) {
		r, err := c.RunPipeline(ctxFor(t, time.Minute), "score", nil)
		if err != nil {
			t.Fatal(err)
		}
		r = waitPipelineRun(t, c, r.ID)
		st := stepNamed(r, "predict")
		if r.State != slipway.RunSucceeded {
			t.Fatalf("pipeline run %s: %s %q; predict %s %q", r.ID, r.State, r.Reason, st.State, st.Reason)
		}
		id, _ := st.Outputs["batch_id"].(string)
		if !strings.HasPrefix(id, "b-") || st.Outputs["rows_done"] != 300.0 || st.Outputs["table"] != "scores" || st.Outputs["connection"] != "wh" ||
			st.Outputs["version"] != stepNamed(r, "register").Outputs["version"] {
			t.Fatalf("predict outputs = %v", st.Outputs)
		}
		b, err := c.GetBatchPrediction(ctxFor(t, time.Minute), id)
		if err != nil {
			t.Fatal(err)
		}
		if b.State != slipway.BatchSucceeded || b.CreatedBy != "pipeline:"+r.ID+"/predict#1" || b.Spec.ChunkSize != 70 {
			t.Fatalf("batch run %s: %s by %q, spec %+v", id, b.State, b.CreatedBy, b.Spec)
		}
		got := tableRows(t, "sqlite", outDB, "scores") // fails on a duplicate customer
		if len(got) != len(rows) {
			t.Fatalf("%d rows in the output table, want %d", len(got), len(rows))
		}
		for _, row := range rows {
			if _, ok := got[row.CustomerID]; !ok {
				t.Fatalf("customer %d is missing from the output", row.CustomerID)
			}
		}
	})

	t.Run("a batch that cannot start fails the step", func(t *testing.T) {
		_, direct := c.CreateBatchPrediction(ctxFor(t, time.Minute), slipway.BatchSpec{Model: "churn", Input: slipway.BatchInput{Path: "missing.csv"},
			Output: slipway.BatchOutput{Connection: "wh", Table: "scores"}, KeyColumns: []string{"customer_id"}})
		var ce *client.Error
		if !errors.As(direct, &ce) || ce.Problem.Detail == "" {
			t.Fatalf("a missing input file is refused by the API: %v", direct)
		}
		r, err := c.RunPipeline(ctxFor(t, time.Minute), "score", map[string]any{"input": "missing.csv"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitPipelineRun(t, c, r.ID)
		st := stepNamed(r, "predict")
		if r.State != slipway.RunFailed || st.State != slipway.StepFailed || !strings.Contains(st.Reason, ce.Problem.Detail) ||
			!strings.Contains(r.Reason, "step predict failed: batch prediction refused: ") {
			t.Fatalf("run %s %q; predict %s %q; want the batch service's %q", r.State, r.Reason, st.State, st.Reason, ce.Problem.Detail)
		}
	})

	t.Run("cancel mid-run cancels the batch run", func(t *testing.T) {
		pushSlowChurn(t, s)
		if _, err := c.CreatePipeline(ctxFor(t, time.Minute), []byte(`
name: slow-score
params: {table: slow_scores}
steps:
  - name: predict
    builtin: batch
    with:
      model: churn-slow
      input: {path: customers.csv}
      output: {connection: wh, table: "${params.table}"}
      key_columns: [customer_id]
      chunk_size: 5
      parallelism: 1
`), nil, ""); err != nil {
			t.Fatal(err)
		}
		r, err := c.RunPipeline(ctxFor(t, time.Minute), "slow-score", nil)
		if err != nil {
			t.Fatal(err)
		}
		id := waitBatchStepProgress(t, c, r.ID)
		if _, err := c.CancelPipelineRun(ctxFor(t, time.Minute), r.ID); err != nil {
			t.Fatal(err)
		}
		r = waitPipelineRun(t, c, r.ID)
		st := stepNamed(r, "predict")
		b, err := c.GetBatchPrediction(ctxFor(t, time.Minute), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != slipway.RunCanceled || st.State != slipway.StepCanceled || b.State != slipway.BatchCanceled ||
			!strings.Contains(b.Reason, "pipeline run "+r.ID+" was canceled") || b.RowsDone >= 300 {
			t.Fatalf("run %s; step %s %q; batch %s %q after %d rows", r.State, st.State, st.Reason, b.State, b.Reason, b.RowsDone)
		}
	})

	t.Run("a server killed mid-step re-attaches to the same batch run", func(t *testing.T) {
		r, err := c.RunPipeline(ctxFor(t, time.Minute), "slow-score", map[string]any{"table": "restart_scores"})
		if err != nil {
			t.Fatal(err)
		}
		id := waitBatchStepProgress(t, c, r.ID)
		s.Kill() // SIGKILL: the batch run and the step are left IN_PROGRESS
		s2 := startServer(t, s.dataDir, args...)
		c2 := s2.Client()
		r = waitPipelineRun(t, c2, r.ID)
		st := stepNamed(r, "predict")
		if r.State != slipway.RunSucceeded || st.Attempts != 1 || st.Outputs["batch_id"] != id || st.Outputs["rows_done"] != 300.0 {
			t.Fatalf("after restart: run %s %q; step %s after %d attempts, outputs %v (batch %s before)", r.State, r.Reason, st.State, st.Attempts, st.Outputs, id)
		}
		all, _, err := c2.ListBatchPredictions(ctxFor(t, time.Minute), "", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range all {
			if strings.HasPrefix(b.CreatedBy, "pipeline:"+r.ID+"/") && b.ID != id {
				t.Fatalf("the resumed step started a second batch run %s", b.ID)
			}
		}
		if got := tableRows(t, "sqlite", outDB, "restart_scores"); len(got) != 300 { // fails on a duplicate customer
			t.Fatalf("%d rows in the output table, want 300", len(got))
		}
		if !strings.Contains(s2.Log(), "pipeline step re-attached to its batch prediction") {
			t.Errorf("the restarted server did not say it re-attached:\n%s", s2.Log())
		}
	})
}

// waitBatchStepProgress waits until the predict step of a pipeline run reports rows done by its batch run,
// and returns the batch run's id.
func waitBatchStepProgress(t *testing.T, c *client.Client, runID string) string {
	t.Helper()
	var id string
	waitFor(t, "the batch step to report progress", 2*time.Minute, func() bool {
		cur, err := c.GetPipelineRun(context.Background(), runID)
		if err != nil {
			return false
		}
		st := stepNamed(cur, "predict")
		id, _ = st.Outputs["batch_id"].(string)
		done, _ := st.Outputs["rows_done"].(float64)
		return id != "" && done > 0 && strings.Contains(st.Reason, "IN_PROGRESS")
	})
	return id
}

// pushSlowChurn registers the churn model as churn-slow, with predict() slowed down (50 ms per call) so that a
// batch run lasts long enough to be interrupted.
func pushSlowChurn(t *testing.T, s *server) {
	t.Helper()
	slow := filepath.Join(t.TempDir(), "churn-slow")
	os.MkdirAll(slow, 0o755)
	for _, name := range []string{"model.pkl", "score.py", "runtime.yaml", "requirements.txt"} {
		b, err := os.ReadFile(examplePath("sklearn-churn", name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "score.py" {
			b = append(b, "\nimport time as _time\n_predict = predict\n\ndef predict(data, model=None):\n    _time.sleep(0.05)\n    return _predict(data, model=model)\n"...)
		}
		os.WriteFile(filepath.Join(slow, name), b, 0o644)
	}
	if out, errOut, code := s.cli("models", "push", slow, "--model", "churn-slow", "--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// evaluatePipeline trains a churn model (retrain/train.py, which also writes holdout.csv with its labels),
// registers it, and gates it against @champion on held-out data. Its params choose the model, the label
// column, the held-out file and the candidate, so that one pipeline also exercises the bad inputs.
const evaluatePipeline = `name: gate
params:
  features: all
  label: churned
  holdout: holdout.csv
  candidate: ""
steps:
  - name: train
    script: |
      "$SLIPWAY_PYTHON" retrain/train.py --data data/churn.csv --out "$SLIPWAY_OUTPUT_DIR" --features "${params.features}"
      head -1 "$SLIPWAY_OUTPUT_DIR/holdout.csv" > "$SLIPWAY_OUTPUT_DIR/empty.csv"
    cache: true
  - name: register
    builtin: register
    depends_on: [train]
    with: {from: train, model: churn}
  - name: evaluate
    builtin: evaluate
    depends_on: [register]
    with:
      model: churn
      candidate: "${params.candidate}${steps.register.outputs.version}"
      data: {from: train, path: "${params.holdout}"}
      label: ${params.label}
      thresholds:
        roc_auc: {min_absolute_change: 0.0}
        accuracy: {min_absolute_change: 0.0}
`

// TestEvaluateOnHeldOutData runs the evaluate gate on held-out data through the binary with the real Python
// churn models: the candidate and the champion are scored in their own replica processes on the same rows.
// A candidate as good as the champion passes, and its measured figures equal those its training script
// computed on the same split; a worse one is refused with both measured figures; a missing label column, an
// empty data set and an unknown version are refused with a message that names them.
func TestEvaluateOnHeldOutData(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	pushExamples(t, s) // churn 1 @champion: the example's model, trained on the same split as retrain/train.py's
	def := filepath.Join(t.TempDir(), "gate.yaml")
	if err := os.WriteFile(def, []byte(evaluatePipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := s.cli("pipelines", "create", def, "--artifact", "examples"); code != 0 {
		t.Fatalf("pipelines create: %s %s", out, errOut)
	}
	run := func(params map[string]any) *slipway.PipelineRun {
		t.Helper()
		r, err := c.RunPipeline(ctxFor(t, time.Minute), "gate", params)
		if err != nil {
			t.Fatalf("run %v: %v", params, err)
		}
		return waitPipelineRun(t, c, r.ID)
	}
	measured := func(st *slipway.StepRun, who string) map[string]float64 {
		t.Helper()
		m, _ := st.Outputs["measured"].(map[string]any)
		set, _ := m[who].(map[string]any)
		out := map[string]float64{}
		for k, v := range set {
			f, ok := v.(float64)
			if !ok {
				t.Fatalf("measured %s %s = %v", who, k, v)
			}
			out[k] = f
		}
		return out
	}

	// 1. As good as the champion: passes. Both were measured on the 600 held-out rows, in their runtimes.
	good := run(map[string]any{"features": "all"})
	ev := stepNamed(good, "evaluate")
	if good.State != slipway.RunSucceeded || ev.State != slipway.StepSucceeded {
		t.Fatalf("good candidate: run %s %q, evaluate %s %q", good.State, good.Reason, ev.State, ev.Reason)
	}
	m, _ := ev.Outputs["measured"].(map[string]any)
	cand, base := measured(ev, "candidate"), measured(ev, "baseline")
	if m["rows"] != 600.0 || m["task"] != "classification" || ev.Outputs["candidate_version"] != 2.0 || ev.Outputs["baseline_version"] != 1.0 ||
		m["candidate_batch"] == m["baseline_batch"] {
		t.Fatalf("measured: %v (outputs %v)", m, ev.Outputs)
	}
	for _, k := range []string{"accuracy", "roc_auc", "f1", "precision", "recall", "log_loss"} {
		if _, ok := cand[k]; !ok {
			t.Errorf("measured candidate metrics lack %s: %v", k, cand)
		}
	}
	// The server's figures are the training script's own on the same split (it rounds to 4 decimals too).
	reported, _ := ev.Outputs["reported"].(map[string]any)
	rc, _ := reported["candidate"].(map[string]any)
	if rc["accuracy"] != cand["accuracy"] || rc["roc_auc"] != cand["roc_auc"] || cand["roc_auc"] < 0.6 {
		t.Errorf("measured %v, reported by the training script %v", cand, rc)
	}
	if base["accuracy"] != cand["accuracy"] || base["roc_auc"] != cand["roc_auc"] {
		t.Errorf("the champion is the same model on the same split: measured %v vs %v", base, cand)
	}
	if ev.Outputs["candidate_roc_auc"] != cand["roc_auc"] || ev.Outputs["passed"] != true {
		t.Errorf("flat outputs: %v", ev.Outputs)
	}
	// The scoring ran as batch predictions of each version, kept as evidence.
	for _, who := range []string{"candidate_batch", "baseline_batch"} {
		b, err := c.GetBatchPrediction(ctxFor(t, time.Minute), fmt.Sprint(m[who]))
		if err != nil || b.State != slipway.BatchSucceeded || b.RowsDone != 600 {
			t.Errorf("%s: %+v, %v", who, b, err)
		}
	}
	t.Logf("good candidate: %s", mustJSON(ev.Outputs))

	// 2. Worse (one feature): refused, the reason carrying both measured figures.
	bad := run(map[string]any{"features": "minimal"})
	ev = stepNamed(bad, "evaluate")
	cand, base = measured(ev, "candidate"), measured(ev, "baseline")
	if bad.State != slipway.RunFailed || ev.State != slipway.StepFailed || !strings.Contains(ev.Reason, "gate failed on held-out data for version 3 of churn") ||
		!strings.Contains(ev.Reason, fmt.Sprintf("roc_auc %.4g vs %.4g", cand["roc_auc"], base["roc_auc"])) || cand["roc_auc"] >= base["roc_auc"] ||
		ev.Outputs["passed"] != false {
		t.Fatalf("worse candidate: run %s, evaluate %s %q, outputs %v", bad.State, ev.State, ev.Reason, ev.Outputs)
	}
	t.Logf("worse candidate refused: %s", ev.Reason)

	// 3. Bad inputs, each refused naming what is wrong.
	for _, tc := range []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"label": "churn_flag"}, `key column "churn_flag" is not in the input`},
		{map[string]any{"holdout": "empty.csv"}, "the held-out data has no labelled rows"},
		{map[string]any{"holdout": "missing.csv"}, "step train wrote no file missing.csv"},
		{map[string]any{"candidate": "9"}, `of model "churn" not found`},
	} {
		r := run(tc.params)
		ev := stepNamed(r, "evaluate")
		if r.State != slipway.RunFailed || ev.State != slipway.StepFailed || !strings.Contains(ev.Reason, tc.want) {
			t.Errorf("%v: run %s, evaluate %s %q, want %q", tc.params, r.State, ev.State, ev.Reason, tc.want)
		}
		t.Logf("%v: %s", tc.params, ev.Reason)
	}

	// A definition that cannot work is refused when it is created.
	broken := strings.Replace(evaluatePipeline, "label: ${params.label}", "", 1)
	if err := os.WriteFile(def, []byte(strings.Replace(broken, "name: gate", "name: gate2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := s.cli("pipelines", "create", def, "--artifact", "examples"); code == 0 || !strings.Contains(errOut, "with.label is required with with.data") {
		t.Errorf("a held-out gate without a label: exit %d %s %s", code, out, errOut)
	}
	if v, err := c.GetVersion(ctxFor(t, time.Minute), "churn", "@champion"); err != nil || v.Version != 1 {
		t.Errorf("the gate moves no alias: %+v %v", v, err)
	}
}

package jobs

import (
	"strings"
	"testing"
)

func TestHeldOutOf(t *testing.T) {
	for _, tc := range []struct {
		with map[string]any
		want string // "" = accepted
	}{
		{map[string]any{"data": map[string]any{"from": "train", "path": "holdout.csv"}, "label": "y"}, ""},
		{map[string]any{"data": map[string]any{"connection": "wh", "query": "SELECT 1"}, "label": "y", "task": "regression"}, ""},
		{map[string]any{"data": map[string]any{"path": "a.csv", "format": "csv"}, "label": "y"}, ""},
		{map[string]any{"data": map[string]any{"from": "train", "path": "holdout.csv"}}, "with.label is required"},
		{map[string]any{"data": map[string]any{"from": "train", "path": "../x.csv"}, "label": "y"}, "relative path inside the output folder"},
		{map[string]any{"data": map[string]any{"from": "train", "path": "x.txt"}, "label": "y"}, ".csv, .jsonl or .parquet"},
		{map[string]any{"data": map[string]any{"file": "f-1", "connection": "wh"}, "label": "y"}, "names 2 data sets"},
		{map[string]any{"data": map[string]any{"bucket": "x"}, "label": "y"}, "unknown with.data.bucket"},
		{map[string]any{"data": map[string]any{"file": "f-1"}, "label": "y", "task": "ranking"}, "use classification or regression"},
	} {
		_, err := heldOutOf(tc.with)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.with, err, tc.want)
		}
	}
}

func TestInferTaskAndLabels(t *testing.T) {
	if got := inferTask([]string{"0", "1", "1.0", "0"}); got != taskClassification {
		t.Errorf("0/1 labels: %s", got)
	}
	if got := inferTask([]string{"yes", "no"}); got != taskClassification {
		t.Errorf("text labels: %s", got)
	}
	if got := inferTask([]string{"1.5", "2"}); got != taskRegression {
		t.Errorf("fractional labels: %s", got)
	}
	many := make([]string, 30)
	for i := range many {
		many[i] = strings.Repeat("1", i+1)
	}
	if got := inferTask(many); got != taskRegression {
		t.Errorf("30 distinct integers: %s", got)
	}
	for in, want := range map[string]string{"1.0": "1", "true": "1", "False": "0", " 2 ": "2", "cat": "cat"} {
		if got := normLabel(in); got != want {
			t.Errorf("normLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScoredSetMetrics(t *testing.T) {
	h := &heldOut{label: "y", positive: "1"}
	set := &scoredSet{labels: []string{"1", "0", "1", "0"}, preds: []string{"1", "0", "0", "0"}, scores: []float64{0.9, 0.2, 0.4, 0.3}}
	m, err := set.metrics(taskClassification, h)
	if err != nil {
		t.Fatal(err)
	}
	// 3 of 4 right; precision 1, recall 0.5, F1 2/3; AUC: positives 0.9, 0.4 against negatives 0.2, 0.3 → 1.
	if m["accuracy"] != 0.75 || m["precision"] != 1 || m["recall"] != 0.5 || m["f1"] != 0.6667 || m["roc_auc"] != 1 {
		t.Errorf("classification: %v", m)
	}
	reg := &scoredSet{labels: []string{"1", "2", "3"}, preds: []string{"1", "2", "5"}}
	m, err = reg.metrics(taskRegression, h)
	if err != nil || m["mae"] != 0.6667 || m["rmse"] != 1.1547 {
		t.Errorf("regression: %v %v", m, err)
	}
	if _, err := (&scoredSet{labels: []string{"a"}, preds: []string{"1"}}).metrics(taskRegression, h); err == nil || !strings.Contains(err.Error(), "not a number") {
		t.Errorf("text label in a regression: %v", err)
	}
	// Lower is better for the error metrics unless said otherwise.
	zero := 0.0
	th := map[string]threshold{"rmse": {MinAbsoluteChange: &zero}}
	if failed := Evaluate(th, map[string]float64{"rmse": 1.2}, map[string]float64{"rmse": 1.0}, "champion"); len(failed) != 1 {
		t.Errorf("a higher RMSE passed: %v", failed)
	}
	if failed := Evaluate(th, map[string]float64{"rmse": 0.8}, map[string]float64{"rmse": 1.0}, "champion"); len(failed) != 0 {
		t.Errorf("a lower RMSE failed: %v", failed)
	}
	// A tolerance: up to max_absolute_drop worse passes, more fails.
	drop := 0.02
	tol := map[string]threshold{"roc_auc": {MaxAbsoluteDrop: &drop}}
	if failed := Evaluate(tol, map[string]float64{"roc_auc": 0.85}, map[string]float64{"roc_auc": 0.86}, "champion"); len(failed) != 0 {
		t.Errorf("0.01 worse, within the tolerance: %v", failed)
	}
	if failed := Evaluate(tol, map[string]float64{"roc_auc": 0.83}, map[string]float64{"roc_auc": 0.86}, "champion"); len(failed) != 1 || !strings.Contains(failed[0], "max_absolute_drop") {
		t.Errorf("0.03 worse: %v", failed)
	}
}

func TestPredictionColumns(t *testing.T) {
	h := &heldOut{label: "y"}
	p, s, err := predictionColumns([]string{"y", "prediction", "probability", "model", "model_version", "batch_id", "scored_at"}, h, 1)
	if err != nil || p != 1 || s != 2 {
		t.Errorf("defaults: %d %d %v", p, s, err)
	}
	p, s, err = predictionColumns([]string{"y", "out", "model"}, h, 1)
	if err != nil || p != 1 || s != -1 {
		t.Errorf("the only output: %d %d %v", p, s, err)
	}
	if _, _, err = predictionColumns([]string{"y", "a", "b"}, h, 1); err == nil || !strings.Contains(err.Error(), "with.prediction") {
		t.Errorf("two unnamed outputs: %v", err)
	}
	if _, _, err = predictionColumns([]string{"y", "a", "b"}, &heldOut{label: "y", prediction: "c"}, 1); err == nil || !strings.Contains(err.Error(), `"c" is not an output of version 1`) {
		t.Errorf("a missing prediction column: %v", err)
	}
}

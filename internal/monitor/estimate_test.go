package monitor

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// simulate stores n one-row captures of version from t0 (a second apart) in a covariate-shift world: the
// input's mean moves by shift, P(churn | age) stays sigmoid(age), and the model's probability is an
// over-confident monotone function of it. It returns the request ids with the label each will have.
func simulate(t *testing.T, e *env, r *rand.Rand, t0 time.Time, n, version int, shift float64, prefix string) map[string]string {
	t.Helper()
	sigmoid := func(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
	labels := map[string]string{}
	var batch []*slipway.Capture
	for i := range n {
		x := r.NormFloat64() + shift
		p := sigmoid(2*x + 0.5)
		pred := int64(0)
		if p >= 0.5 {
			pred = 1
		}
		id := fmt.Sprintf("%s-%05d", prefix, i)
		labels[id] = "0"
		if r.Float64() < sigmoid(x) {
			labels[id] = "1"
		}
		batch = append(batch, &slipway.Capture{Deployment: "churn", RequestID: id, ModelVersion: version,
			Time: t0.Add(time.Duration(i) * time.Second), Rows: 1, Protocol: ProtoV2,
			Inputs:  workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewFloat64("age", nil, []float64{x})}),
			Outputs: workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewInt64("prediction", nil, []int64{pred}), workerproto.NewFloat64("probability", nil, []float64{p})})})
	}
	if err := e.data.InsertCaptures(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return labels
}

func sendLabels(t *testing.T, e *env, labels map[string]string) {
	t.Helper()
	var fb []*slipway.Feedback
	for id, l := range labels {
		fb = append(fb, &slipway.Feedback{Deployment: "churn", RequestID: id, Label: &l, Time: e.now.Now(), ReceivedAt: e.now.Now()})
	}
	if _, err := e.data.UpsertFeedback(context.Background(), fb); err != nil {
		t.Fatal(err)
	}
}

// The performance API shows CBPE's estimate for a window before its labels arrive, calibrated on the first
// labelled window; once they arrive, the realized accuracy lands within the documented tolerance of it. An
// estimated_accuracy alert fires on the estimate alone, and a version without labels is estimated uncalibrated.
func TestPerformanceEstimateBeforeLabels(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 18))
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC) // drift windows of an hour: 08:00 reference, 09:00 shifted
	sendLabels(t, e, simulate(t, e, r, t0, 3000, 1, 0, "ref"))
	later := simulate(t, e, r, t0.Add(time.Hour), 3000, 1, 1.2, "new")
	e.now.t = t0.Add(2 * time.Hour)

	perf, err := e.s.Performance(ctx, "churn", t0, t0.Add(2*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(perf) != 2 || perf[0].Labelled != 3000 || perf[1].Labelled != 0 || perf[1].Classification != nil || perf[1].Estimated == nil {
		t.Fatalf("windows: %+v", perf)
	}
	est := perf[1].Estimated
	ref := est.References[0]
	if est.Rows != 3000 || ref.Calibration != CalibrationIsotonic || ref.Rows != 3000 || !ref.From.Equal(t0) || ref.Version != 1 {
		t.Fatalf("estimate: %+v reference %+v", est, ref)
	}
	// The reference window's own estimate is its realized accuracy, up to sampling: calibrated on itself.
	if d := math.Abs(perf[0].Estimated.Accuracy - perf[0].Classification.Accuracy); d > 0.01 {
		t.Errorf("reference window: estimate %.4f, realized %.4f", perf[0].Estimated.Accuracy, perf[0].Classification.Accuracy)
	}

	rule, err := e.s.CreateAlertRule(ctx, "churn", slipway.AlertRule{Name: "est", Metric: "estimated_accuracy", Op: "below", Threshold: 0.99,
		Window: slipway.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := e.s.EvaluateAlerts(ctx, "churn")
	if err != nil || rules[0].ID != rule.ID || rules[0].State != slipway.AlertFiring || math.Abs(*rules[0].Value-est.Accuracy) > 1e-9 {
		t.Fatalf("estimated_accuracy alert: %+v %v (estimate %.4f)", rules[0], err, est.Accuracy)
	}

	sendLabels(t, e, later)
	perf, err = e.s.Performance(ctx, "churn", t0.Add(time.Hour), t0.Add(2*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	real := perf[0].Classification
	for name, pair := range map[string][2]float64{"accuracy": {est.Accuracy, real.Accuracy}, "precision": {est.Precision, real.Precision},
		"recall": {est.Recall, real.Recall}, "f1": {est.F1, real.F1}, "roc_auc": {*est.ROCAUC, *real.ROCAUC}} {
		tol := 0.03
		if name == "roc_auc" {
			tol = 0.05
		}
		if d := math.Abs(pair[0] - pair[1]); d > tol {
			t.Errorf("%s: estimated %.4f before the labels, realized %.4f after (error %.4f > %g)", name, pair[0], pair[1], d, tol)
		}
		t.Logf("%s: estimated %.4f, realized %.4f", name, pair[0], pair[1])
	}

	// A version with no labelled rows: estimated, with its scores taken as probabilities, and said so.
	simulate(t, e, r, t0.Add(2*time.Hour), 500, 2, 0, "v2")
	e.now.t = t0.Add(3 * time.Hour)
	acc, rows, vref, err := e.s.VersionEstimatedAccuracy(ctx, "churn", 2, t0.Add(2*time.Hour), t0.Add(3*time.Hour))
	if err != nil || acc == nil || rows != 500 || vref == nil || vref.Calibration != CalibrationNone || vref.Version != 2 {
		t.Fatalf("version 2: %v %d %+v %v", acc, rows, vref, err)
	}
}

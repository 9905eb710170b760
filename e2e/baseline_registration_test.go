package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// A version pushed with --baseline has its data profile at once: drift works from its first deployment and
// says it compares with the registered baseline. A version pushed without one is compared with its first
// window of traffic, and the drift answer says so. A baseline the server refuses leaves the version
// registered and says how to fix it.
func TestBaselineAtRegistration(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	if out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--baseline", examplePath("data", "churn.csv")); code != 0 {
		t.Fatalf("push --baseline: %s %s", out, errOut)
	}
	ctx := context.Background()
	c := s.Client()
	b, err := c.GetBaseline(ctx, "churn", "1")
	if err != nil || b.Profile == nil || b.Profile.Rows != 3000 || b.Format != "csv" {
		t.Fatalf("baseline of churn:1 after push: %+v %v", b, err)
	}
	if out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push v2 without baseline: %s %s", out, errOut)
	}
	deploy(t, s, "with-baseline", "--model", "churn:1")
	deploy(t, s, "without-baseline", "--model", "churn:2")

	if _, err := c.Drift(ctx, "without-baseline", client.TimeRange{From: time.Now().Add(-time.Hour)}); slipway.ErrorCode(err) != slipway.ECONFLICT ||
		!strings.Contains(err.Error(), "no captured traffic yet") {
		t.Fatalf("drift before any traffic, without a baseline: %v", err)
	}
	for range 10 {
		for _, d := range []string{"with-baseline", "without-baseline"} {
			if resp, out := invokeChurn(t, s, d, 20); resp.StatusCode != 200 {
				t.Fatalf("invocations %s: %d %s", d, resp.StatusCode, out)
			}
		}
	}
	drift := func(d string) *client.DriftReport {
		var r *client.DriftReport
		waitFor(t, "the captures of "+d, 30*time.Second, func() bool {
			var err error
			if r, err = c.Drift(ctx, d, client.TimeRange{From: time.Now().Add(-time.Hour)}); err != nil {
				t.Fatalf("drift of %s: %v", d, err)
			}
			return r.Rows == 200
		})
		return r
	}
	if r := drift("with-baseline"); r.Baseline != "registered" || r.BaselineFrom != nil || len(r.Features) != 5 {
		t.Fatalf("drift with the registered baseline: %+v", r)
	}
	// Drift is per version: version 2 answered nothing on this deployment (and its requests elsewhere are not
	// this deployment's).
	if _, err := c.DriftOfVersion(ctx, "with-baseline", 2, client.TimeRange{From: time.Now().Add(-time.Hour)}); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Fatalf("drift of version 2 on a deployment it never served: %v", err)
	}
	if r, err := c.DriftOfVersion(ctx, "with-baseline", 1, client.TimeRange{From: time.Now().Add(-time.Hour)}); err != nil || r.Rows != 200 {
		t.Fatalf("drift of version 1: %+v %v", r, err)
	}
	r := drift("without-baseline")
	if r.Baseline != "first_window" || r.BaselineFrom == nil || r.BaselineTo == nil || r.BaselineTo.Sub(*r.BaselineFrom) != time.Hour || len(r.Features) != 5 {
		t.Fatalf("drift against the first window: %+v", r)
	}
	for _, f := range r.Features {
		if f.Drifted { // the same rows as the first window: no drift
			t.Errorf("feature %s drifted against its own first window: %+v", f.Feature, f)
		}
	}
	if out, errOut, _ := s.cli("monitor", "without-baseline"); !strings.Contains(out, "compared with its first window of traffic") {
		t.Fatalf("slipway monitor does not say drift compares with the first window:\n%s\n%s", out, errOut)
	}

	// A sample that lacks the model's inputs: the version registers, the baseline is refused, and the error
	// says what to do.
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("age,plan\n41,pro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--baseline", bad)
	if code == 0 || !strings.Contains(errOut, "version 3 of churn is registered (READY), but its baseline was refused") ||
		!strings.Contains(errOut, "tenure_months") || !strings.Contains(errOut, "slipway baseline churn:3 FILE") {
		t.Fatalf("push with a bad baseline: exit %d\n%s\n%s", code, out, errOut)
	}
	if v, err := c.GetVersion(ctx, "churn", "3"); err != nil || v.State != slipway.VersionReady {
		t.Fatalf("version 3 after a refused baseline: %+v %v", v, err)
	}
	if _, err := c.GetBaseline(ctx, "churn", "3"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Fatalf("baseline of version 3: %v", err)
	}
}

// The register builtin's with.baseline stores the training sample its step wrote as the version's baseline;
// a baseline the step did not write fails the step before anything is registered.
func TestRegisterBuiltinBaseline(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	def := fmt.Sprintf(`
name: retrain
params: {baseline: train.csv}
steps:
  - name: train
    script: cp %s/* "$SLIPWAY_OUTPUT_DIR/" && head -n 501 %s > "$SLIPWAY_OUTPUT_DIR/train.csv"
  - name: register
    builtin: register
    depends_on: [train]
    with: {from: train, model: churn, baseline: "${params.baseline}"}
`, examplePath("sklearn-churn"), examplePath("data", "churn.csv"))
	if _, err := c.CreatePipeline(ctxFor(t, time.Minute), []byte(def), nil, ""); err != nil {
		t.Fatal(err)
	}
	r, err := c.RunPipeline(ctxFor(t, time.Minute), "retrain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r = waitPipelineRun(t, c, r.ID)
	st := stepNamed(r, "register")
	if r.State != slipway.RunSucceeded || st.Outputs["baseline"] != "train.csv" {
		t.Fatalf("run %s %q; register outputs %v", r.State, r.Reason, st.Outputs)
	}
	b, err := c.GetBaseline(context.Background(), "churn", "1")
	if err != nil || b.Profile.Rows != 500 {
		t.Fatalf("baseline of the registered version: %+v %v", b, err)
	}

	r, err = c.RunPipeline(ctxFor(t, time.Minute), "retrain", map[string]any{"baseline": "missing.csv"})
	if err != nil {
		t.Fatal(err)
	}
	r = waitPipelineRun(t, c, r.ID)
	if st := stepNamed(r, "register"); r.State != slipway.RunFailed || !strings.Contains(st.Reason, `with.baseline "missing.csv": step train wrote no such file`) {
		t.Fatalf("a missing baseline: run %s %q; register %s %q", r.State, r.Reason, st.State, st.Reason)
	}
	if _, err := c.GetVersion(context.Background(), "churn", "2"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		t.Fatalf("a version was registered although its baseline is missing: %v", err)
	}
}

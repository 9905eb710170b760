package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// TestClosedLoopExample runs examples/closed-loop/run.py against the binary with alerts evaluated every 2 s:
// v1 deployed following @champion under traffic, a shift that fires the drift alert, which starts the
// retraining pipeline (captures with feedback → v2 with its baseline → held-out gate → shadow → canary 50% →
// promote), then two deliberately bad candidates rolled back at the shadow step's max_error_rate and
// min_agreement gates. The script checks each step itself (and that no client request failed) and exits 1 on
// the first surprise; its timeline is the test's log.
func TestClosedLoopExample(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", "--alert-interval", "2s")
	cmd := exec.Command("/usr/bin/python3", examplePath("closed-loop", "run.py"))
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), "SLIPWAY_URL="+s.URL, "SLIPWAY_TOKEN="+s.Token, "SLIPWAY_BIN="+binary)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	var timeline strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
		timeline.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the closed-loop example failed: %v", err)
	}
	got := timeline.String()
	for _, want := range []string{"drift alert fired", "step evaluate SUCCEEDED", "rollout promoted", "@champion moved to v2",
		"rolled back at the max_error_rate gate", "rolled back at the min_agreement gate", "none failed"} {
		if !strings.Contains(got, want) {
			t.Errorf("the timeline lacks %q", want)
		}
	}
}

// TestAlertStartsOneRunAtATime: an alert whose pipeline is still running does not start a second run (two
// retraining runs would race to roll out on the same deployment); once the run is over, it starts again.
func TestAlertStartsOneRunAtATime(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	ctx := ctxFor(t, 3*time.Minute)
	if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
	deploy(t, s, "quiet", "--model", "churn-onnx:1")
	if _, err := c.CreatePipeline(ctx, []byte("name: slow-retrain\nsteps:\n  - name: train\n    script: sleep 120\n"), nil, ""); err != nil {
		t.Fatal(err)
	}
	// "No traffic" fires at once on a deployment nobody calls; each new rule starts ok, so it fires again.
	fire := func(name string) {
		t.Helper()
		if _, err := c.CreateAlertRule(ctx, "quiet", client.AlertRuleSpec{Name: name, Metric: "requests", Op: "below", Threshold: 1,
			Window: slipway.Duration(time.Minute), Action: &client.AlertAction{Kind: "pipeline", Target: "slow-retrain"}}); err != nil {
			t.Fatal(err)
		}
		rules, err := c.EvaluateAlerts(ctx, "quiet")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if r.Name == name && r.State != slipway.AlertFiring {
				t.Fatalf("rule %s is %s, want firing", name, r.State)
			}
		}
	}
	runs := func() []*slipway.PipelineRun {
		rs, _, err := c.ListPipelineRuns(ctx, "slow-retrain", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	fire("quiet-1")
	waitFor(t, "the alert's run", time.Minute, func() bool { return len(runs()) == 1 })
	first := runs()[0]
	fire("quiet-2")
	waitFor(t, "the second alert's action to be logged", time.Minute, func() bool {
		return strings.Contains(s.Log(), "an alert fired while its pipeline runs: no second run")
	})
	if rs := runs(); len(rs) != 1 {
		t.Fatalf("a second run started while the first runs: %d runs", len(rs))
	}
	if _, err := c.CancelPipelineRun(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	waitPipelineRun(t, c, first.ID)
	fire("quiet-3")
	waitFor(t, "a run once the first is over", time.Minute, func() bool { return len(runs()) == 2 })
}

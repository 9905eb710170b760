package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
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

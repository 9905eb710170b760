package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway-ml/slipway"
)

// onnxBody is one row of the ONNX example as an MLflow tensor request, with the label it must get.
func onnxBody(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile(examplePath("onnx-churn", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedONNX
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	return mustJSON(map[string]any{"inputs": exp.Features[:1]})
}

// decisionsSince are the scaling decisions of a deployment at or after from, oldest first.
func decisionsSince(d *slipway.Deployment, from time.Time) []slipway.ScaleDecision {
	var out []slipway.ScaleDecision
	if d.AutoscalingStatus == nil {
		return nil
	}
	for _, dec := range d.AutoscalingStatus.Decisions {
		if !dec.At.Before(from) {
			out = append([]slipway.ScaleDecision{dec}, out...)
		}
	}
	return out
}

// checkNoFlapping checks that a pool changed at most once per direction per cool-down: scale-ups at least
// upCoolDown apart, scale-downs at least downAfter after the previous change (server timestamps, the
// policy's own bounds).
func checkNoFlapping(t *testing.T, decisions []slipway.ScaleDecision, upCoolDown, downAfter time.Duration) {
	t.Helper()
	var lastUp, lastChange time.Time
	for _, dec := range decisions {
		if dec.Side != "deployment" {
			continue
		}
		switch dec.Direction {
		case "up":
			if !lastUp.IsZero() && dec.At.Sub(lastUp) < upCoolDown {
				t.Errorf("two scale-ups %s apart (cool-down %s): %+v", dec.At.Sub(lastUp), upCoolDown, decisions)
			}
			lastUp = dec.At
		case "down":
			if !lastChange.IsZero() && dec.At.Sub(lastChange) < downAfter {
				t.Errorf("a scale-down %s after the previous change (scale_down_after_s %s): %+v", dec.At.Sub(lastChange), downAfter, decisions)
			}
		}
		lastChange = dec.At
	}
}

func TestAutoscaleFollowsAStepOfLoad(t *testing.T) {
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "elastic", "--model", "churn-onnx:1", "--min-replicas", "1", "--max-replicas", "4",
		"--target-in-flight", "1", "--scale-down-after", "2s", "--max-queue", "1000")
	body := onnxBody(t)
	path := "/deployments/elastic/invocations"
	get := func() *slipway.Deployment {
		d, err := s.Client().GetDeployment(t.Context(), "elastic")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := get(); d.AutoscalingStatus == nil || d.AutoscalingStatus.Current != 1 || d.ReadyReplicas != 1 {
		t.Fatalf("started with %+v (%d ready), want 1 replica", d.AutoscalingStatus, d.ReadyReplicas)
	}

	began := time.Now().UTC()
	low := startLoad(t, s, path, body, 1) // c=1 throughout: the step is added on top of it
	waitFor(t, "a few requests at c=1", 30*time.Second, func() bool { return s.metric(t, "elastic", "200") > 5 })

	stepStart := time.Now().UTC()
	step := startLoad(t, s, path, body, 31) // c=32
	waitDeploymentState(t, s, "elastic", "scaled up to max_replicas under c=32", func(d *slipway.Deployment) bool {
		return d.AutoscalingStatus != nil && d.AutoscalingStatus.Current == 4 && d.ReadyReplicas == 4
	})
	stepStatus, stepErrs := step.finish()
	stepEnd := time.Now().UTC()

	d := waitDeploymentState(t, s, "elastic", "scaled back down to 1 at c=1", func(d *slipway.Deployment) bool {
		return d.AutoscalingStatus != nil && d.AutoscalingStatus.Current == 1
	})
	lowStatus, lowErrs := low.finish()

	for _, st := range []map[int]int{stepStatus, lowStatus} {
		if len(st) != 1 || st[200] == 0 {
			t.Errorf("statuses %v, want only 200s: %q %q", st, stepErrs, lowErrs)
		}
	}
	decisions := decisionsSince(d, began)
	var ups, downs int
	for _, dec := range decisions {
		if dec.Side != "deployment" || dec.Reason == "" || dec.To < 1 || dec.To > 4 {
			t.Errorf("decision %+v: out of bounds or without its reason", dec)
		}
		switch dec.Direction {
		case "up":
			ups++
			if dec.At.Before(stepStart) || dec.At.After(stepEnd) {
				t.Errorf("scaled up outside the c=32 phase: %+v", dec)
			}
		case "down":
			downs++
			if dec.At.Before(stepEnd) {
				t.Errorf("scaled down during the c=32 phase: %+v", dec)
			}
		}
	}
	if ups == 0 || downs == 0 {
		t.Errorf("decisions %+v: want scale-ups during the step and scale-downs after it", decisions)
	}
	checkNoFlapping(t, decisions, 3*time.Second, 2*time.Second)

	_, metrics := s.do(t, "GET", "/metrics", s.Token, nil, "")
	for _, want := range []string{`slipway_scale_events_total{deployment="elastic",direction="up"}`,
		`slipway_scale_events_total{deployment="elastic",direction="down"}`, `slipway_replicas{deployment="elastic",version="1"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if log := s.Log(); !strings.Contains(log, "msg=autoscale") || !strings.Contains(log, "direction=up") || !strings.Contains(log, "load=") {
		t.Errorf("the server log does not show the decisions with their figures")
	}

	// The deployment's page shows the policy, the figures and the decisions.
	b := newBrowser(t)
	b.do("sign in", chromedp.Navigate(s.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SetValue(chromedp.ID("token"), s.Token), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
	b.waitJS("the deployments list", `document.body.innerText.includes("elastic")`)
	b.do("open the deployment", chromedp.Navigate(s.URL+"/ui/deployments/elastic"))
	b.waitJS("the autoscaling section", `document.querySelector("main")?.innerText.includes("Autoscaling")`)
	page := b.text("main")
	for _, want := range []string{"autoscaling 1–4", "1 now, 1 desired", "up 1 → ", " → 1", "target_in_flight 1"} {
		if !strings.Contains(page, want) {
			t.Errorf("the deployment's page has no %q:\n%s", want, page)
		}
	}
	b.checkRendered("deployment")
	b.checkNoErrors()
}

// TestLazyDeploymentStartsOnItsFirstRequest deploys the Python example lazily: it is ACTIVE at once with no
// replica, its first request waits for one and is answered, and it then grows to its replica count.
func TestLazyDeploymentStartsOnItsFirstRequest(t *testing.T) {
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "lazy", "--model", "churn:1", "--load", "lazy", "--replicas", "2")
	d, err := s.Client().GetDeployment(t.Context(), "lazy")
	if err != nil || d.State != slipway.DeploymentActive || !d.ScaledToZero || d.ReadyReplicas != 0 || d.Load != slipway.LoadLazy {
		t.Fatalf("lazy deployment before a request: %+v, %v; want ACTIVE, scaled to zero", d, err)
	}
	// A policy that cannot hold is refused with every problem named, as problem+json.
	resp, body := s.do(t, "POST", "/api/v1/deployments", s.Token, strings.NewReader(
		`{"name": "bad", "model": "churn", "replicas": 5, "max_queue": 0, "autoscaling": {"min_replicas": 0, "max_replicas": 65, "target_in_flight": -1}}`), "application/json")
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("bad policy: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, want := range []string{"got min 0, max 65", "target_in_flight", "max_queue of at least 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("bad policy: %s does not name %q", body, want)
		}
	}
	resp, body = invokeChurn(t, s, "lazy", 3)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "predictions") {
		t.Fatalf("first request: %d %s", resp.StatusCode, body)
	}
	waitDeploymentState(t, s, "lazy", "its 2 replicas", func(d *slipway.Deployment) bool {
		return d.ReadyReplicas == 2 && !d.ScaledToZero
	})
}

// metric reads one deployment's prediction count by status code from the server's Prometheus metrics.
func (s *server) metric(t *testing.T, deployment, code string) int {
	t.Helper()
	_, out := s.do(t, "GET", "/metrics", s.Token, nil, "")
	total := 0
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "slipway_predict_requests_total{") && strings.Contains(line, `deployment="`+deployment+`"`) &&
			strings.Contains(line, `code="`+code+`"`) {
			var n int
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n)
			total += n
		}
	}
	return total
}

func TestScaleToZeroAndBackOnTheSameURL(t *testing.T) {
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "sleepy", "--model", "churn-onnx:1", "--min-replicas", "0", "--max-replicas", "1",
		"--target-in-flight", "1", "--scale-down-after", "1s")
	body := onnxBody(t)
	url := "/deployments/sleepy/invocations" // the one URL, every round
	for round := range 20 {
		d := waitDeploymentState(t, s, "sleepy", fmt.Sprintf("round %d: scaled to zero", round), func(d *slipway.Deployment) bool {
			return d.ScaledToZero && d.ReadyReplicas == 0 && len(d.ReplicaStatus) == 0
		})
		if d.State != slipway.DeploymentActive {
			t.Fatalf("round %d: scaled to zero in state %s, want ACTIVE", round, d.State)
		}
		since := time.Now().UTC()
		// Concurrent requests during the cold start all wait for the same start.
		var wg sync.WaitGroup
		statuses := make([]int, 4)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", s.URL+url, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.Token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		wg.Wait()
		for _, st := range statuses {
			if st != http.StatusOK {
				t.Fatalf("round %d: statuses %v, want every request 200", round, statuses)
			}
		}
		// The cold start is recorded once its replica serves, which may be just after the answers left: wait
		// for it (a second one would show up the same way).
		ups := 0
		for deadline := time.Now().Add(10 * time.Second); ; {
			var err error
			if d, err = s.Client().GetDeployment(t.Context(), "sleepy"); err != nil {
				t.Fatal(err)
			}
			ups = 0
			for _, dec := range decisionsSince(d, since) {
				if dec.Direction == "up" {
					ups++
					if !strings.Contains(dec.Reason, "cold start") {
						t.Errorf("round %d: scale-up %+v is not the cold start", round, dec)
					}
				}
			}
			if ups > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if ups != 1 || d.URLs == nil || d.URLs.Invocations != url {
			t.Fatalf("round %d: %d scale-ups (want one cold start for 4 requests), urls %+v", round, ups, d.URLs)
		}
	}
}

// TestCanaryAndShadowScaleByTheDeploymentsPolicy: with min_replicas 0, the canary's and the shadow's pools scale
// to zero beside the deployment's, and a request wakes what it reaches.
func TestCanaryAndShadowScaleByTheDeploymentsPolicy(t *testing.T) {
	s := startServer(t, "")
	pushExamples(t, s)
	for range 2 { // versions 2 and 3 of churn-onnx
		if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
			"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
			t.Fatalf("push: %s %s", out, errOut)
		}
	}
	deploy(t, s, "sides", "--model", "churn-onnx:1", "--canary-version", "2", "--canary-weight", "50",
		"--shadow-version", "3", "--min-replicas", "0", "--max-replicas", "2", "--target-in-flight", "1", "--scale-down-after", "1s")
	d := waitDeploymentState(t, s, "sides", "every side scaled to zero", func(d *slipway.Deployment) bool {
		return d.ScaledToZero && d.ReadyReplicas == 0 && len(d.ReplicaStatus) == 0
	})
	down := map[string]bool{}
	for _, dec := range d.AutoscalingStatus.Decisions {
		if dec.Direction == "down" && dec.To == 0 {
			down[dec.Side] = true
		}
	}
	if !down["deployment"] || !down["canary"] || !down["shadow"] {
		t.Fatalf("scaled to zero: %v, want the deployment, its canary and its shadow: %+v", down, d.AutoscalingStatus.Decisions)
	}
	body := onnxBody(t)
	for i := range 10 {
		resp, out := s.do(t, "POST", "/deployments/sides/invocations", s.Token, bytes.NewReader(body), "application/json")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d after scaling to zero: %d %s", i, resp.StatusCode, out)
		}
	}
	// Every request copies to the shadow: it was woken too (a cold start, recorded as the shadow's scale-up).
	waitDeploymentState(t, s, "sides", "the shadow woken by the copies", func(d *slipway.Deployment) bool {
		for _, dec := range d.AutoscalingStatus.Decisions {
			if dec.Side == "shadow" && dec.Direction == "up" && dec.Version == 3 {
				return true
			}
		}
		return false
	})
}

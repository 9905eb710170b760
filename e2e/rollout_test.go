package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// churnRaising copies the scikit-learn example into a folder whose predict() raises on any row of a customer
// aged at least minAge: a real Python model that fails a known share of single-row requests (15.5% of the
// data set's first 200 rows at 55) and registers (the sample input's customers are younger).
func churnRaising(t *testing.T, minAge float64) string {
	t.Helper()
	return churnPatched(t, fmt.Sprintf(`

_example_predict = predict


def predict(data, model=None):
    if (_frame(data)["age"] >= %g).any():
        raise RuntimeError("this candidate cannot score customers aged %g or more")
    return _example_predict(data, model)
`, minAge, minAge))
}

// churnPatched copies the scikit-learn example with patch appended to its score.py.
func churnPatched(t *testing.T, patch string) string {
	t.Helper()
	dir := t.TempDir()
	src := examplePath("sklearn-churn")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "score.py" {
			b = append(b, patch...)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func pushChurnFrom(t *testing.T, s *server, dir string) {
	t.Helper()
	if out, errOut, code := s.cli("models", "push", dir, "--model", "churn", "--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push %s: %s %s", dir, out, errOut)
	}
}

// trafficCounts are the answers a traffic generator got, by status and answering version.
type trafficCounts struct {
	mu     sync.Mutex
	ok     map[string]int // version → 200s
	failed map[string]int // version → other statuses ("" when the server did not answer)
	sample []string       // a few failed answers, for the test's message
	// candidateError is the message of the candidate's model errors: failures answered with it count under
	// version "candidate".
	candidateError string
}

func (c *trafficCounts) add(status int, version, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if status == http.StatusOK {
		c.ok[version]++
		return
	}
	if version == "" && c.candidateError != "" && strings.Contains(body, c.candidateError) {
		version = "candidate" // a model error's answer names no version: its message does
	}
	c.failed[version]++
	if len(c.sample) < 5 {
		c.sample = append(c.sample, fmt.Sprintf("%d from version %q: %s", status, version, body))
	}
}

func (c *trafficCounts) snapshot() (ok, failed map[string]int, sample []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok, failed = map[string]int{}, map[string]int{}
	for k, v := range c.ok {
		ok[k] = v
	}
	for k, v := range c.failed {
		failed[k] = v
	}
	return ok, failed, append([]string(nil), c.sample...)
}

// startTraffic sends single-row churn predictions from 2 clients to the URL url() gives (it changes when a
// server restarts) until stop; connection errors count as failures of version "".
func startTraffic(t *testing.T, url func() string, token, deployment string) (counts *trafficCounts, stop func()) {
	t.Helper()
	cols, rows := churnRows(t, 200)
	counts = &trafficCounts{ok: map[string]int{}, failed: map[string]int{}}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var next atomic.Int64
	hc := &http.Client{Timeout: 30 * time.Second}
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				row := rows[int(next.Add(1))%len(rows)]
				body := mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": [][]any{row}}})
				req, _ := http.NewRequest("POST", url()+"/deployments/"+deployment+"/invocations", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					counts.add(0, "", err.Error())
					time.Sleep(50 * time.Millisecond) // the server is restarting
					continue
				}
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				resp.Body.Close()
				counts.add(resp.StatusCode, resp.Header.Get("X-Slipway-Model-Version"), b.String())
				time.Sleep(5 * time.Millisecond) // a steady load, leaving the 2 shared CPUs to the replicas
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return counts, stop
}

func waitRollout(t *testing.T, s *server, deployment, id string) *client.Rollout {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := s.Client().WaitRollout(ctx, deployment, id, nil, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("wait for rollout %s: %v (last %+v)", id, err, r)
	}
	return r
}

func aliasVersion(t *testing.T, s *server, model, alias string) int {
	t.Helper()
	_, body := s.do(t, "GET", "/api/v1/models/"+model+"/aliases/"+alias, s.Token, nil, "")
	var a struct{ Version int }
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("alias %s@%s: %s", model, alias, body)
	}
	return a.Version
}

func decisionsOf(r *client.Rollout, action string) []slipway.RolloutDecision {
	var out []slipway.RolloutDecision
	for _, d := range r.Decisions {
		if d.Action == action {
			out = append(out, d)
		}
	}
	return out
}

func failedCheck(d slipway.RolloutDecision) *slipway.GateCheck {
	for i := range d.Checks {
		if !d.Checks[i].Passed {
			return &d.Checks[i]
		}
	}
	return nil
}

// TestRolloutsGateAndPromote drives gated rollouts through the real binary on a deployment that follows
// @champion, under steady load: bad requests are refused naming the field; a candidate that disagrees with
// the champion is rolled back at the shadow gate and one that fails a share of its requests at the
// error-rate gate, each with its evidence, the alias unmoved and the deployment's alert webhook told; a good
// candidate goes shadow → canary 50% → PROMOTED, @champion moves, and no client request fails throughout.
func TestRolloutsGateAndPromote(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	ctx := context.Background()
	pushExamples(t, s)                                // churn 1 @champion
	pushChurnFrom(t, s, churnVariant(t, 30))          // 2: flips the class of customers aged 30+ (82% of the rows)
	pushChurnFrom(t, s, churnRaising(t, 55))          // 3: raises on customers aged 55+ (15.5% of the rows)
	pushChurnFrom(t, s, examplePath("sklearn-churn")) // 4: the champion's model again
	deploy(t, s, "churn-api", "--model", "churn@champion")
	if d, err := c.GetDeployment(ctx, "churn-api"); err != nil || !d.FollowAlias || d.Version != 1 {
		t.Fatalf("deployed by alias: %+v, %v", d, err)
	}
	hook := newWebhookReceiver(t, "rollout-webhook-secret")
	if _, err := c.CreateAlertRule(ctx, "churn-api", client.AlertRuleSpec{Name: "errors", Metric: "error_rate", Op: "above",
		Threshold: 0.5, Window: slipway.Duration(5 * time.Minute), Webhook: &client.Webhook{URL: hook.srv.URL, Secret: "rollout-webhook-secret"}}); err != nil {
		t.Fatal(err)
	}

	// Bad input: 400 problem+json naming the field.
	for _, tc := range []struct{ body, want string }{
		{`{"version": 99, "steps": [{"shadow": "2s"}]}`, "version: model churn has no version 99"},
		{`{"version": 4, "steps": [{"canary": 150, "for": "2s"}]}`, "steps[0].canary"},
		{`{"version": 4, "steps": [{"shadow": "2s"}, {"canary": 10}]}`, "steps[1].for"},
		{`{"version": 4, "steps": [{"shadow": "soon"}]}`, "a duration is text"},
		{`{"version": 4, "steps": [{"shadow": "2s"}], "gates": {"max_error_rate": 2}}`, "gates.max_error_rate"},
		{`{"version": 4, "steps": [{"shadow": "2s"}], "gates": {"min_agreeement": 0.9}}`, "min_agreeement"},
		{`{"version": 1, "steps": [{"shadow": "2s"}]}`, "version: version 1 already is deployment churn-api's version"},
	} {
		resp, body := s.do(t, "POST", "/api/v1/deployments/churn-api/rollouts", s.Token, strings.NewReader(tc.body), "application/json")
		if resp.StatusCode != 400 || !strings.Contains(resp.Header.Get("Content-Type"), "application/problem+json") || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %s, want 400 naming %q", tc.body, resp.StatusCode, body, tc.want)
		}
	}
	if resp, body := s.do(t, "POST", "/api/v1/deployments/nope/rollouts", s.Token, strings.NewReader(`{"version": 2, "steps": [{"shadow": "2s"}]}`), "application/json"); resp.StatusCode != 404 {
		t.Errorf("rollout of a missing deployment: %d %s", resp.StatusCode, body)
	}
	if _, errOut, code := s.cli("rollouts", "start", "churn-api", "--version", "4", "--step", "canary=50"); code == 0 || !strings.Contains(errOut, `--step "canary=50"`) {
		t.Errorf("CLI with a bad --step: exit %d %s", code, errOut)
	}

	counts, stop := startTraffic(t, func() string { return s.URL }, s.Token, "churn-api")
	counts.mu.Lock()
	counts.candidateError = "this candidate cannot score customers aged 55 or more"
	counts.mu.Unlock()

	// 1. Low agreement: rolled back at the shadow gate (through the CLI, which exits 1).
	out, errOut, code := s.cli("rollouts", "start", "churn-api", "--version", "2", "--step", "shadow=3s", "--step", "canary=50:3s",
		"--gate", "min_agreement=0.9", "--gate", "min_requests=20")
	if code != 1 || !strings.Contains(out, "min_agreement") || !strings.Contains(errOut, "ROLLED_BACK") {
		t.Fatalf("rollouts start of a disagreeing candidate: exit %d\n%s\n%s", code, out, errOut)
	}
	rs, err := c.ListRollouts(ctx, "churn-api")
	if err != nil || len(rs) != 1 {
		t.Fatalf("list: %v %v", rs, err)
	}
	r := rs[0]
	failed := decisionsOf(r, slipway.RolloutFailed)
	if r.State != slipway.RolloutRolledBack || len(failed) != 1 || failed[0].Step != 0 || failed[0].Window == nil {
		t.Fatalf("disagreeing candidate: %s, decisions %+v", r.State, r.Decisions)
	}
	if ch := failedCheck(failed[0]); ch == nil || ch.Gate != "min_agreement" || ch.Value == nil || *ch.Value > 0.5 || ch.Figures["compared_rows"] < 20 {
		t.Fatalf("the shadow gate's evidence: %+v", ch)
	}
	t.Logf("shadow gate: %s", failed[0].Message)
	d := waitActive(t, s, "churn-api")
	if d.Version != 1 || d.Shadow != nil || d.Canary != nil || aliasVersion(t, s, "churn", "champion") != 1 {
		t.Fatalf("after the shadow rollback: %+v", d)
	}
	select {
	case got := <-hook.got:
		if !got.verified || got.payload["type"] != "alert.rolled_back" || !strings.Contains(fmt.Sprint(got.payload["message"]), "min_agreement") {
			t.Fatalf("the alert webhook at the rollback: %+v", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the deployment's alert webhook was not called at the rollback")
	}
	if evs, err := c.AlertHistory(ctx, "churn-api", 10); err != nil || len(evs) == 0 || evs[0].State != slipway.AlertRolledBack {
		t.Fatalf("alert history: %+v, %v", evs, err)
	}

	// 2. Errors on a share of requests: rolled back at the error-rate gate.
	sixty, max := 60, 0.03
	three := slipway.Duration(3 * time.Second)
	r, err = c.StartRollout(ctx, "churn-api", client.RolloutSpec{Version: 3, Steps: []client.RolloutStep{{Canary: 50, For: &three}},
		Gates: client.RolloutGates{MaxErrorRate: &max, MinRequests: &sixty}})
	if err != nil || r.State != slipway.RolloutRunning || r.CurrentStep == nil || r.CurrentStep.Canary != 50 {
		t.Fatalf("start: %+v, %v", r, err)
	}
	r = waitRollout(t, s, "churn-api", r.ID)
	failed = decisionsOf(r, slipway.RolloutFailed)
	if r.State != slipway.RolloutRolledBack || len(failed) != 1 {
		t.Fatalf("erroring candidate: %s, decisions %+v", r.State, r.Decisions)
	}
	ch := failedCheck(failed[0])
	if ch == nil || ch.Gate != "max_error_rate" || ch.Value == nil || *ch.Value <= max || ch.Figures["errors"] < 1 ||
		!strings.Contains(ch.Evidence, "canary requests answered 5xx") || !strings.Contains(r.Reason, "max_error_rate") {
		t.Fatalf("the error-rate gate's evidence: %+v (reason %q)", ch, r.Reason)
	}
	t.Logf("error-rate gate: %s", failed[0].Message)
	d = waitActive(t, s, "churn-api")
	if d.Version != 1 || d.Canary != nil || aliasVersion(t, s, "churn", "champion") != 1 || !strings.Contains(d.Reason, "ROLLED_BACK") {
		t.Fatalf("after the error-rate rollback: %+v", d)
	}
	waitFor(t, "the canary's replicas to stop", 30*time.Second, func() bool {
		d, err := c.GetDeployment(ctx, "churn-api")
		for _, rs := range d.ReplicaStatus {
			if rs.Version == 3 {
				return false
			}
		}
		return err == nil
	})
	_, failedBy, sample := counts.snapshot()
	for v, n := range failedBy {
		if v != "candidate" {
			t.Fatalf("%d requests answered by version %q failed (only the candidate's may): %v", n, v, sample)
		}
	}
	if failedBy["candidate"] == 0 {
		t.Fatal("the erroring candidate answered no failed request: the test did not exercise the gate")
	}

	// 3. Cancel: a running rollout ends CANCELED, its shadow removed, the deployment on its version.
	out, errOut, code = s.cli("rollouts", "start", "churn-api", "--version", "4", "--step", "shadow=10m", "--no-wait", "-o", "json")
	var running client.Rollout
	if code != 0 || json.Unmarshal([]byte(out), &running) != nil || running.State != slipway.RolloutRunning {
		t.Fatalf("rollouts start --no-wait: exit %d\n%s\n%s", code, out, errOut)
	}
	waitFor(t, "the shadow step's window", 90*time.Second, func() bool {
		cur, err := c.GetRollout(ctx, "churn-api", running.ID)
		return err == nil && len(decisionsOf(cur, slipway.RolloutStepStarted)) == 1
	})
	if out, errOut, code := s.cli("rollouts", "cancel", "churn-api", running.ID); code != 0 || !strings.Contains(out, "CANCELED") {
		t.Fatalf("rollouts cancel: exit %d\n%s\n%s", code, out, errOut)
	}
	if d := waitActive(t, s, "churn-api"); d.Shadow != nil || d.Version != 1 || aliasVersion(t, s, "churn", "champion") != 1 {
		t.Fatalf("after the cancel: %+v", d)
	}

	// 4. A good candidate: shadow → canary 50% → PROMOTED, @champion moves, no client request fails.
	stop()
	counts, stop = startTraffic(t, func() string { return s.URL }, s.Token, "churn-api")
	out, errOut, code = s.cli("rollouts", "start", "churn-api", "--version", "4", "--step", "shadow=3s", "--step", "canary=50:3s",
		"--gate", "min_agreement=0.95", "--gate", "max_error_rate=0", "--gate", "min_requests=20")
	if code != 0 || !strings.Contains(out, "PROMOTED: churn-api serves version 4") {
		t.Fatalf("rollouts start of a good candidate: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("good rollout:\n%s", out)
	invokeChurn(t, s, "churn-api", 3) // traffic after the promotion too
	stop()
	ok, failedBy, sample := counts.snapshot()
	if len(failedBy) != 0 || ok["1"] == 0 || ok["4"] == 0 {
		t.Fatalf("under load: ok %v, failed %v %v", ok, failedBy, sample)
	}
	rs, err = c.ListRollouts(ctx, "churn-api")
	if err != nil || len(rs) != 4 || rs[0].State != slipway.RolloutPromoted || rs[1].State != slipway.RolloutCanceled || rs[0].EndedAt == nil || rs[0].CurrentStep != nil {
		t.Fatalf("list after the promotion: %+v, %v", rs, err)
	}
	r = rs[0]
	if passed := decisionsOf(r, slipway.RolloutPassed); len(passed) != 2 || passed[0].Step != 0 || passed[1].Step != 1 ||
		len(decisionsOf(r, slipway.RolloutStepStarted)) != 2 || len(decisionsOf(r, slipway.RolloutPromote)) != 1 {
		t.Fatalf("decisions of the promoted rollout: %+v", r.Decisions)
	}
	if aliasVersion(t, s, "churn", "champion") != 4 {
		t.Fatal("@champion did not move to the promoted version")
	}
	d, err = c.GetDeployment(ctx, "churn-api")
	if err != nil || d.Version != 4 || !d.FollowAlias || d.Alias != "champion" || d.Canary != nil || d.Shadow != nil {
		t.Fatalf("after the promotion: %+v, %v", d, err)
	}
	if out, _, code := s.cli("rollouts", "get", "churn-api", r.ID); code != 0 || !strings.Contains(out, "PROMOTED") || !strings.Contains(out, "min_agreement") {
		t.Fatalf("rollouts get:\n%s", out)
	}
	if out, _, code := s.cli("rollouts", "list", "churn-api"); code != 0 || strings.Count(out, "ROLLED_BACK") != 2 || !strings.Contains(out, "PROMOTED") {
		t.Fatalf("rollouts list:\n%s", out)
	}
	if _, errOut, code := s.cli("rollouts", "cancel", "churn-api", r.ID); code == 0 || !strings.Contains(errOut, "already PROMOTED") {
		t.Fatalf("cancel an ended rollout: exit %d %s", code, errOut)
	}

	// The deployment's page shows each rollout's steps and decisions with the gates' evidence.
	b := newBrowser(t)
	b.do("open the UI", chromedp.Navigate(s.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	b.do("sign in", chromedp.SetValue(chromedp.ID("token"), s.Token), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
	b.waitJS("the deployments list", `document.body.innerText.includes("churn-api")`)
	b.do("open the deployment", chromedp.Click(chromedp.CSS(`a[href="/ui/deployments/churn-api"]`)))
	b.waitJS("the rollouts", `document.querySelector("#rollout-`+r.ID+`")?.innerText.includes("PROMOTED")`)
	got := b.text("#rollouts")
	for _, want := range []string{"version 1 → 4", "1. shadow=3s", "2. canary=50:3s", "ROLLED_BACK", "✗ max_error_rate", "✗ min_agreement", "✓ min_agreement"} {
		if !strings.Contains(got, want) {
			t.Errorf("the deployment page's rollouts lack %q:\n%s", want, got)
		}
	}
	b.checkNoErrors()
}

// TestRolloutSurvivesRestart: a rollout whose server is killed mid-step continues on the server started again
// on the same data folder (its window starts over) and promotes. Then a pipeline's rollout step fails with a
// disagreeing candidate's rollback and succeeds with a good one's promotion.
func TestRolloutSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	pushExamples(t, s)
	pushChurnV2(t, s)
	deploy(t, s, "churn-api", "--model", "churn@champion")
	var url atomic.Value
	url.Store(s.URL)
	_, stop := startTraffic(t, func() string { return url.Load().(string) }, s.Token, "churn-api")
	defer stop()
	four := slipway.Duration(4 * time.Second)
	ten := 10
	ctx := context.Background()
	r, err := s.Client().StartRollout(ctx, "churn-api", client.RolloutSpec{Version: 2,
		Steps: []client.RolloutStep{{Canary: 30, For: &four}, {Canary: 60, For: &four}}, Gates: client.RolloutGates{MinRequests: &ten}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first step's window", 90*time.Second, func() bool {
		cur, err := s.Client().GetRollout(ctx, "churn-api", r.ID)
		return err == nil && len(decisionsOf(cur, slipway.RolloutStepStarted)) == 1
	})
	s.Kill() // SIGKILL, as a crash: the rollout is left RUNNING mid-window
	s2 := startServer(t, dir)
	url.Store(s2.URL)
	r = waitRollout(t, s2, "churn-api", r.ID)
	if r.State != slipway.RolloutPromoted || len(decisionsOf(r, slipway.RolloutResumed)) != 1 || len(decisionsOf(r, slipway.RolloutPassed)) != 2 {
		t.Fatalf("after the restart: %s (%s), decisions %+v", r.State, r.Reason, r.Decisions)
	}
	if aliasVersion(t, s2, "churn", "champion") != 2 {
		t.Fatal("@champion did not move")
	}
	d, err := s2.Client().GetDeployment(ctx, "churn-api")
	if err != nil || d.Version != 2 || d.Canary != nil {
		t.Fatalf("deployment after the promotion: %+v, %v", d, err)
	}

	// A pipeline ends in a rollout: the step fails with the rollout's reason when it is rolled back, and
	// succeeds with the promoted rollout's outputs.
	c := s2.Client()
	pushChurnFrom(t, s2, churnVariant(t, 30)) // 3: disagrees with the champion
	if _, err := c.CreatePipeline(ctxFor(t, time.Minute), []byte(`
name: ship
params: {version: 3}
steps:
  - name: roll
    builtin: rollout
    with:
      deployment: churn-api
      version: ${params.version}
      steps: ["shadow=3s", {canary: 50, for: 3s}]
      gates: {min_agreement: 0.9, min_requests: 10}
`), nil, ""); err != nil {
		t.Fatal(err)
	}
	run, err := c.RunPipeline(ctxFor(t, time.Minute), "ship", nil)
	if err != nil {
		t.Fatal(err)
	}
	run = waitPipelineRun(t, c, run.ID)
	step := stepNamed(run, "roll")
	if run.State != slipway.RunFailed || !strings.Contains(step.Reason, "ROLLED_BACK") || !strings.Contains(step.Reason, "min_agreement") ||
		step.Outputs["state"] != "ROLLED_BACK" || aliasVersion(t, s2, "churn", "champion") != 2 {
		t.Fatalf("pipeline with a disagreeing candidate: %s %q; step %q %v", run.State, run.Reason, step.Reason, step.Outputs)
	}
	waitActive(t, s2, "churn-api")
	run, err = c.RunPipeline(ctxFor(t, time.Minute), "ship", map[string]any{"version": 1})
	if err != nil {
		t.Fatal(err)
	}
	run = waitPipelineRun(t, c, run.ID)
	step = stepNamed(run, "roll")
	if run.State != slipway.RunSucceeded || step.Outputs["state"] != "PROMOTED" || step.Outputs["version"] != 1.0 || aliasVersion(t, s2, "churn", "champion") != 1 {
		t.Fatalf("pipeline with a good candidate: %s %q; step %q %v", run.State, run.Reason, step.Reason, step.Outputs)
	}
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createShellJob(t *testing.T, c *client.Client, name, body string, spec slipway.JobSpec) {
	t.Helper()
	spec.Name = name
	if _, err := c.CreateJob(ctxFor(t, time.Minute), spec, strings.NewReader(body), name+".sh"); err != nil {
		t.Fatalf("create job %s: %v", name, err)
	}
}

func waitJobRun(t *testing.T, c *client.Client, id string) *slipway.JobRun {
	t.Helper()
	r, err := c.WaitJobRun(ctxFor(t, 2*time.Minute), id, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("wait for run %s: %v (last seen %+v)", id, err, r)
	}
	return r
}

func waitPipelineRun(t *testing.T, c *client.Client, id string) *slipway.PipelineRun {
	t.Helper()
	r, err := c.WaitPipelineRun(ctxFor(t, 3*time.Minute), id, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("wait for pipeline run %s: %v", id, err)
	}
	return r
}

func stepNamed(r *slipway.PipelineRun, name string) *slipway.StepRun {
	for _, s := range r.Steps {
		if s.Name == name {
			return s
		}
	}
	return &slipway.StepRun{}
}

// pidFromOutput waits until the run wrote a pid file into its output folder and returns the pid.
func pidFromOutput(t *testing.T, c *client.Client, runID, file string) int {
	t.Helper()
	var pid int
	waitFor(t, "pid file "+file+" of "+runID, time.Minute, func() bool {
		body, err := c.DownloadJobRunOutput(context.Background(), runID, file)
		if err != nil {
			return false
		}
		defer body.Close()
		b, _ := io.ReadAll(body)
		if !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	return pid
}

// alive reports whether pid is a live (non-zombie) process on this machine.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

const treeScript = `sh -c 'sleep 300' &
echo $! > "$SLIPWAY_OUTPUT_DIR/child.pid"
echo "started child"
wait
`

// TestRetrainPipelineExample runs the shipped examples/retrain pipeline against a live deployment that follows
// @champion, under steady traffic. A candidate as good as the champion passes the held-out gate and is rolled
// out through shadow → canary 50% → promote: the deployment serves it, @champion moves, and no client request
// fails. A deliberately worse one is refused by the gate with the measured figures: no rollout starts and the
// alias does not move.
func TestRetrainPipelineExample(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	ctx := ctxFor(t, 10*time.Minute)
	pushExamples(t, s) // churn 1 @champion
	deploy(t, s, "churn-api", "--model", "churn@champion")
	out, errOut, code := s.cli("pipelines", "create", "examples/retrain/pipeline.yaml", "--artifact", "examples")
	if code != 0 {
		t.Fatalf("pipelines create: %s %s", out, errOut)
	}
	counts, stop := startTraffic(t, func() string { return s.URL }, s.Token, "churn-api")
	out, errOut, code = s.cli("pipelines", "run", "retrain", "--param", "shadow=3s", "--param", "canary=3s", "--wait", "-o", "json")
	if code != 0 {
		t.Fatalf("first run: exit %d\n%s\n%s", code, out, errOut)
	}
	var first slipway.PipelineRun
	if err := json.Unmarshal([]byte(out), &first); err != nil {
		t.Fatalf("decode run: %v\n%s", err, out)
	}
	roll := stepNamed(&first, "rollout")
	if roll.State != slipway.StepSucceeded || roll.Outputs["state"] != "PROMOTED" || roll.Outputs["version"] != 2.0 || roll.Outputs["from_version"] != 1.0 {
		t.Fatalf("rollout step: %s %q %v", roll.State, roll.Reason, roll.Outputs)
	}
	if m, _ := stepNamed(&first, "evaluate").Outputs["measured"].(map[string]any); m["rows"] != 600.0 {
		t.Fatalf("the gate measured nothing on held-out data: %v", stepNamed(&first, "evaluate").Outputs)
	}
	champion, err := c.GetVersion(ctx, "churn", "@champion")
	if err != nil || champion.Version != 2 || champion.Provenance == nil || !strings.HasPrefix(champion.Provenance.TrainingRun, "jr-") {
		t.Fatalf("after the first run: champion %+v, %v", champion, err)
	}
	d, err := c.GetDeployment(ctx, "churn-api")
	if err != nil || d.Version != 2 || !d.FollowAlias || d.Alias != "champion" || d.Canary != nil || d.Shadow != nil {
		t.Fatalf("the deployment follows the promoted version: %+v, %v", d, err)
	}
	if _, err := c.GetBaseline(ctx, "churn", "2"); err != nil {
		t.Errorf("the candidate was registered without its baseline: %v", err)
	}
	invokeChurn(t, s, "churn-api", 3)
	stop()
	ok, failed, sample := counts.snapshot()
	if len(failed) != 0 || ok["1"] == 0 || ok["2"] == 0 {
		t.Fatalf("under load through the rollout: ok %v, failed %v %v", ok, failed, sample)
	}

	out, errOut, code = s.cli("pipelines", "run", "retrain", "--param", "features=minimal", "--wait", "-o", "json")
	if code == 0 {
		t.Fatalf("the worse model passed the gate:\n%s", out)
	}
	var second slipway.PipelineRun
	if err := json.Unmarshal([]byte(out), &second); err != nil {
		t.Fatalf("decode run: %v\n%s\n%s", err, out, errOut)
	}
	eval := stepNamed(&second, "evaluate")
	if second.State != slipway.RunFailed || eval.State != slipway.StepFailed || !strings.Contains(eval.Reason, "gate failed on held-out data") ||
		!strings.Contains(eval.Reason, "roc_auc") || stepNamed(&second, "rollout").State != slipway.StepSkipped || stepNamed(&second, "report").State != slipway.StepSucceeded {
		t.Fatalf("second run = %s %q; evaluate %s %q; rollout %s", second.State, second.Reason, eval.State, eval.Reason, stepNamed(&second, "rollout").State)
	}
	if v := stepNamed(&second, "register").Outputs["version"]; v != 3.0 {
		t.Errorf("the worse model should still be registered as version 3, got %v", v)
	}
	if champion, err := c.GetVersion(ctx, "churn", "@champion"); err != nil || champion.Version != 2 {
		t.Errorf("the gate must leave @champion on version 2: %+v, %v", champion, err)
	}
	if rs, err := c.ListRollouts(ctx, "churn-api"); err != nil || len(rs) != 1 {
		t.Errorf("a refused candidate starts no rollout: %+v, %v", rs, err)
	}
	out, _, _ = s.cli("pipelines", "get", second.ID)
	if !strings.Contains(out, "evaluate") || !strings.Contains(out, "SKIPPED") {
		t.Errorf("pipelines get shows no DAG:\n%s", out)
	}
}

func TestJobTimeoutCancelAndLogs(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	createShellJob(t, c, "sleepy", "echo going to sleep\nsleep 300\n", slipway.JobSpec{MaxRuntimeSeconds: 1})
	createShellJob(t, c, "tree", treeScript, slipway.JobSpec{})

	// Timeout: FAILED with the reason, the log says why.
	r, err := c.RunJob(ctxFor(t, time.Minute), "sleepy", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	r = waitJobRun(t, c, r.ID)
	if r.State != slipway.RunFailed || r.Reason != "exceeded max runtime 1s" {
		t.Errorf("timed-out run = %s %q", r.State, r.Reason)
	}
	out, _, _ := s.cli("jobs", "logs", r.ID)
	if !strings.Contains(out, "stdout going to sleep") || !strings.Contains(out, "exceeded max runtime 1s") {
		t.Errorf("log:\n%s", out)
	}

	// Cancel: the whole process tree dies, including the grandchild.
	r, err = c.RunJob(ctxFor(t, time.Minute), "tree", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	child := pidFromOutput(t, c, r.ID, "child.pid")
	if !alive(child) {
		t.Fatalf("grandchild %d is not running before the cancel", child)
	}
	// A follower sees the lines as they come and ends when the run does.
	followed := make(chan string, 1)
	go func() {
		out, _, _ := s.cli("jobs", "logs", r.ID, "--follow")
		followed <- out
	}()
	out, errOut, code := s.cli("jobs", "cancel", r.ID)
	if code != 0 || !strings.Contains(out, "CANCELED") {
		t.Fatalf("jobs cancel: %s %s", out, errOut)
	}
	if alive(child) {
		t.Errorf("grandchild %d survived the cancel", child)
	}
	if got := <-followed; !strings.Contains(got, "stdout started child") || !strings.Contains(got, "run canceled") {
		t.Errorf("followed log:\n%s", got)
	}
	r, _ = c.GetJobRun(ctxFor(t, time.Minute), r.ID)
	if r.State != slipway.RunCanceled || !strings.HasPrefix(r.Reason, "canceled by ") {
		t.Errorf("canceled run = %s %q", r.State, r.Reason)
	}
}

func TestJobEnvironmentAndOutputs(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	// The run proves its token works against the API, and that the server's own environment (the harness
	// starts it with SLIPWAY_LOG_LEVEL) does not reach it.
	body := `import json, os, sys, urllib.request
req = urllib.request.Request(os.environ["SLIPWAY_URL"] + "/api/v1/whoami", headers={"Authorization": "Bearer " + os.environ["SLIPWAY_TOKEN"]})
who = json.load(urllib.request.urlopen(req))
leaked = [k for k in os.environ if k.startswith("SLIPWAY_LOG") or k == "SLIPWAY_DATA_DIR"]
json.dump({"role": who["role"], "args": sys.argv[1:], "leaked": leaked, "greeting": os.environ.get("GREETING")},
          open(os.path.join(os.environ["SLIPWAY_OUTPUT_DIR"], "outputs.json"), "w"))
open(os.path.join(os.environ["SLIPWAY_OUTPUT_DIR"], "note.txt"), "w").write("kept\n")
`
	if _, err := c.CreateJob(ctxFor(t, time.Minute), slipway.JobSpec{Name: "env", Env: map[string]string{"GREETING": "hi"}}, strings.NewReader(body), "env.py"); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := s.cli("jobs", "run", "env", "--wait", "--", "a", "b")
	if code != 0 {
		t.Fatalf("jobs run: %s %s", out, errOut)
	}
	runs, _, err := c.ListJobRuns(ctxFor(t, time.Minute), client.JobRunFilter{Job: "env"})
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	o := runs[0].Outputs
	if o["role"] != "editor" || o["greeting"] != "hi" || len(o["leaked"].([]any)) != 0 || len(o["args"].([]any)) != 2 {
		t.Errorf("outputs = %v", o)
	}
	files, err := c.ListJobRunOutputs(ctxFor(t, time.Minute), runs[0].ID)
	if err != nil || len(files) != 2 {
		t.Errorf("output files = %+v, %v", files, err)
	}
	// The run's token was revoked when it ended.
	toks, _ := c.ListTokens(ctxFor(t, time.Minute))
	for _, tok := range toks {
		if strings.HasPrefix(tok.Name, "run-") && tok.RevokedAt == nil {
			t.Errorf("token %s of a finished run is not revoked", tok.Name)
		}
	}
}

func TestJobAndPipelineValidation(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	ctx := ctxFor(t, time.Minute)
	_, err := c.CreateJob(ctx, slipway.JobSpec{Name: "x", Entrypoint: "missing.py"}, strings.NewReader("print(1)"), "train.py")
	assertProblem(t, err, 400, `entrypoint "missing.py" is not in the artifact`)
	_, err = c.CreateJob(ctx, slipway.JobSpec{Name: "x", Entrypoint: "train.py"}, bytes.NewReader(zipWith(t, "../evil.py", "x")), "p.zip")
	assertProblem(t, err, 400, "artifact refused")
	_, err = c.CreatePipeline(ctx, []byte("name: p\nsteps:\n  - {name: a, script: x, depends_on: [b]}\n  - {name: b, script: x, depends_on: [a]}\n"), nil, "")
	assertProblem(t, err, 400, "cycle")
	_, err = c.CreatePipeline(ctx, []byte(`{"name": "p", "steps": [{"name": "a", "job": "nope"}, {"name": "b", "script": "echo ${params.x}"}]}`), nil, "")
	assertProblem(t, err, 400, `job "nope" does not exist`)
	assertProblem(t, err, 400, "declares no param x")
	createShellJob(t, c, "ok", "true", slipway.JobSpec{})
	_, err = c.CreateSchedule(ctx, client.ScheduleSpec{Name: "s", Cron: "61 * * * *", Target: struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	}{"job", "ok"}})
	assertProblem(t, err, 400, "invalid cron")
	if _, err := c.CreatePipeline(ctx, []byte("name: p\nparams: {n: null}\nsteps: [{name: a, script: \"true\"}]\n"), nil, ""); err != nil {
		t.Fatal(err)
	}
	_, err = c.RunPipeline(ctx, "p", nil)
	assertProblem(t, err, 400, "missing param n")
	// problem+json on the wire.
	resp, b := s.do(t, http.MethodPost, "/api/v1/pipelines", s.Token, strings.NewReader("name: q\nsteps: []\n"), "application/yaml")
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" || !bytes.Contains(b, []byte("no steps")) {
		t.Errorf("POST /pipelines with no steps = %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}

func assertProblem(t *testing.T, err error, status int, detail string) {
	t.Helper()
	var ce *client.Error
	if !asClientError(err, &ce) || ce.Status != status || !strings.Contains(ce.Problem.Detail, detail) {
		t.Errorf("err = %v, want %d with %q", err, status, detail)
	}
}

// TestPipelineRetriesCacheAndResume: a job step that fails twice then succeeds (attempts and backoff recorded),
// a cached step reused by the next run, and a failed run resumed from its failed step only.
func TestPipelineRetriesCacheAndResume(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	shared := t.TempDir()
	createShellJob(t, c, "flaky", `n=$(cat "$STATE/attempts" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$STATE/attempts"
if [ "$n" -lt 3 ]; then echo "attempt $n failed on purpose" >&2; exit 2; fi
echo "{\"attempt\": $n}" > "$SLIPWAY_OUTPUT_DIR/outputs.json"
`, slipway.JobSpec{})
	def := `
name: robust
params: {dir: null}
steps:
  - name: prepare
    cache: true
    script: |
      echo ran >> "${params.dir}/prepare.log"
      echo '{"rows": 100}' > "$SLIPWAY_OUTPUT_DIR/outputs.json"
  - name: flaky
    job: flaky
    depends_on: [prepare]
    retries: 3
    retry_backoff_seconds: 0.2
    with: {env: {STATE: "${params.dir}"}}
  - name: gate
    depends_on: [flaky]
    script: test -f "${params.dir}/open" || { echo "gate is closed" >&2; exit 1; }
`
	if _, err := c.CreatePipeline(ctxFor(t, time.Minute), []byte(def), nil, ""); err != nil {
		t.Fatal(err)
	}
	r, err := c.RunPipeline(ctxFor(t, time.Minute), "robust", map[string]any{"dir": shared})
	if err != nil {
		t.Fatal(err)
	}
	r = waitPipelineRun(t, c, r.ID)
	flaky := stepNamed(r, "flaky")
	if r.State != slipway.RunFailed || stepNamed(r, "gate").State != slipway.StepFailed {
		t.Fatalf("first run = %s %q", r.State, r.Reason)
	}
	if flaky.State != slipway.StepSucceeded || flaky.Attempts != 3 || len(flaky.History) != 3 ||
		flaky.History[0].State != slipway.StepFailed || !strings.Contains(flaky.History[0].Reason, "attempt 1 failed on purpose") {
		t.Fatalf("flaky = %+v", flaky)
	}
	for i, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond} { // exponential backoff
		if gap := flaky.History[i+1].StartedAt.Sub(*flaky.History[i].FinishedAt); gap < want {
			t.Errorf("attempt %d started %s after attempt %d ended, want ≥ %s", i+2, gap, i+1, want)
		}
	}

	// Resume from the failed step: prepare and flaky keep their results.
	os.WriteFile(filepath.Join(shared, "open"), nil, 0o644)
	out, errOut, code := s.cli("pipelines", "retry", r.ID)
	if code != 0 {
		t.Fatalf("retry: %s %s", out, errOut)
	}
	r = waitPipelineRun(t, c, r.ID)
	if r.State != slipway.RunSucceeded || r.Retries != 1 || stepNamed(r, "prepare").Attempts != 1 || stepNamed(r, "flaky").Attempts != 3 ||
		stepNamed(r, "gate").Attempts != 2 {
		t.Errorf("resumed run = %s; attempts prepare %d flaky %d gate %d", r.State, stepNamed(r, "prepare").Attempts, stepNamed(r, "flaky").Attempts, stepNamed(r, "gate").Attempts)
	}

	// A new run reuses the cached prepare step.
	r2, err := c.RunPipeline(ctxFor(t, time.Minute), "robust", map[string]any{"dir": shared})
	if err != nil {
		t.Fatal(err)
	}
	r2 = waitPipelineRun(t, c, r2.ID)
	prep := stepNamed(r2, "prepare")
	if r2.State != slipway.RunSucceeded || !prep.Cached || prep.JobRun != stepNamed(r, "prepare").JobRun || prep.Outputs["rows"] != 100.0 {
		t.Errorf("second run = %s; prepare %+v", r2.State, prep)
	}
	log, _ := os.ReadFile(filepath.Join(shared, "prepare.log"))
	if string(log) != "ran\n" {
		t.Errorf("prepare ran %q, want once", log)
	}
}

// TestScheduleForbidWhileRunning: a every-second schedule on a job that takes longer than a second; with
// policy forbid the ticks during a run are recorded as skipped and runs never overlap.
func TestScheduleForbidWhileRunning(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	createShellJob(t, c, "slow", "sleep 3\n", slipway.JobSpec{})
	out, errOut, code := s.cli("schedules", "create", "every-second", "--cron", "* * * * * *", "--job", "slow", "--policy", "forbid")
	if code != 0 {
		t.Fatalf("schedules create: %s %s", out, errOut)
	}
	var sch *slipway.Schedule
	waitFor(t, "a skipped tick and two started runs", 2*time.Minute, func() bool {
		var err error
		if sch, err = c.GetSchedule(context.Background(), "every-second"); err != nil {
			t.Fatal(err)
		}
		started, skipped := 0, 0
		for _, tk := range sch.Ticks {
			switch tk.Action {
			case "started":
				started++
			case "skipped":
				skipped++
			}
		}
		return started >= 2 && skipped >= 1
	})
	if _, _, code := s.cli("schedules", "delete", "every-second"); code != 0 {
		t.Fatal("schedules delete failed")
	}
	for _, tk := range sch.Ticks {
		if tk.Action == "skipped" && !strings.Contains(tk.Reason, "still going (policy forbid)") {
			t.Errorf("skipped tick reason = %q", tk.Reason)
		}
	}
	runs, _, err := c.ListJobRuns(ctxFor(t, time.Minute), client.JobRunFilter{Job: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		waitJobRun(t, c, r.ID)
	}
	runs, _, _ = c.ListJobRuns(ctxFor(t, time.Minute), client.JobRunFilter{Job: "slow"})
	for i := 0; i+1 < len(runs); i++ { // newest first: each run started after the previous one finished
		if newer, older := runs[i], runs[i+1]; newer.StartedAt.Before(*older.FinishedAt) {
			t.Errorf("runs %s and %s overlap under policy forbid", older.ID, newer.ID)
		}
	}
	for _, r := range runs {
		if r.CreatedBy != "schedule:every-second" {
			t.Errorf("run %s created by %q", r.ID, r.CreatedBy)
		}
	}
}

// waiterScript waits until the file $RELEASE exists, then succeeds with an output: a run whose end the test
// decides.
// waiterScript waits for $RELEASE; then, given $CLI_BINARY, it calls the API (reached_server in its outputs).
const waiterScript = `echo "waiting for release"
while [ ! -f "$RELEASE" ]; do sleep 0.05; done
echo released
reached=null
if [ -n "$CLI_BINARY" ]; then
  if "$CLI_BINARY" whoami; then reached=true; else reached=false; fi
fi
echo "{\"released\": true, \"reached_server\": $reached}" > "$SLIPWAY_OUTPUT_DIR/outputs.json"
`

func runLog(t *testing.T, c *client.Client, id string) string {
	t.Helper()
	body, err := c.JobRunLogs(ctxFor(t, time.Minute), id, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	b, _ := io.ReadAll(body)
	return string(b)
}

func waitLog(t *testing.T, c *client.Client, id, want string) {
	t.Helper()
	waitFor(t, "run "+id+" to log "+want, time.Minute, func() bool { return strings.Contains(runLog(t, c, id), want) })
}

// TestJobRunsOutliveTheServer: runs go on through a graceful restart, a kill -9 of the server and a stretch with
// no server at all; the next server re-attaches to each, its log has every line once, and cancel, pipeline
// steps and outputs work on re-attached runs as on any other.
func TestJobRunsOutliveTheServer(t *testing.T) {
	t.Parallel()
	dir, shared := t.TempDir(), t.TempDir()
	s := startServer(t, dir)
	c := s.Client()
	createShellJob(t, c, "tree", treeScript, slipway.JobSpec{})
	createShellJob(t, c, "waiter", waiterScript, slipway.JobSpec{})
	def := `
name: survivor
params: {release: null}
steps:
  - name: work
    script: |
      echo "step waiting"
      while [ ! -f "${params.release}" ]; do sleep 0.05; done
      echo "step released"
`
	if _, err := c.CreatePipeline(ctxFor(t, time.Minute), []byte(def), nil, ""); err != nil {
		t.Fatal(err)
	}
	release := func(name string) string { return filepath.Join(shared, name) }
	runWaiter := func(c *client.Client, name string) *slipway.JobRun {
		r, err := c.RunJob(ctxFor(t, time.Minute), "waiter", client.RunInput{Env: map[string]string{"RELEASE": release(name), "CLI_BINARY": binary}})
		if err != nil {
			t.Fatal(err)
		}
		waitLog(t, c, r.ID, "waiting for release")
		return r
	}

	// A graceful restart (SIGTERM): the run is left running and re-attached.
	graceful := runWaiter(c, "graceful")
	s.Stop()
	s = startServer(t, dir)
	c = s.Client()
	if r, _ := c.GetJobRun(ctxFor(t, time.Minute), graceful.ID); r.State != slipway.RunInProgress {
		t.Fatalf("after a graceful restart the run is %s %q, want IN_PROGRESS", r.State, r.Reason)
	}
	os.WriteFile(release("graceful"), nil, 0o644)
	// The restarted server listens on another port: the run reaches it through SLIPWAY_URL_FILE.
	if r := waitJobRun(t, c, graceful.ID); r.State != slipway.RunSucceeded || r.Outputs["released"] != true || r.Outputs["reached_server"] != true {
		t.Errorf("re-attached run = %s %q, outputs %v", r.State, r.Reason, r.Outputs)
	}
	log := runLog(t, c, graceful.ID)
	for _, line := range []string{"stdout waiting for release", "the server is shutting down", "re-attached", "stdout released", "run succeeded"} {
		if strings.Count(log, line) != 1 {
			t.Errorf("the log has %q %d times:\n%s", line, strings.Count(log, line), log)
		}
	}

	// kill -9 of the server while a job (with a child process) and a pipeline step run.
	jr, err := c.RunJob(ctxFor(t, time.Minute), "tree", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := c.RunPipeline(ctxFor(t, time.Minute), "survivor", map[string]any{"release": release("step")})
	if err != nil {
		t.Fatal(err)
	}
	jobChild := pidFromOutput(t, c, jr.ID, "child.pid")
	var stepRun string
	waitFor(t, "the pipeline step's job run", time.Minute, func() bool {
		r, _ := c.GetPipelineRun(context.Background(), pr.ID)
		stepRun = stepNamed(r, "work").JobRun
		return stepRun != ""
	})
	waitLog(t, c, stepRun, "step waiting")
	s.Kill()
	s = startServer(t, dir)
	c = s.Client()
	if !alive(jobChild) {
		t.Fatalf("the job's child %d died with the server", jobChild)
	}
	for _, id := range []string{jr.ID, stepRun} {
		if r, err := c.GetJobRun(ctxFor(t, time.Minute), id); err != nil || r.State != slipway.RunInProgress {
			t.Fatalf("run %s after kill -9 and restart: %+v, %v; want IN_PROGRESS", id, r, err)
		}
	}
	// Cancel reaches a re-attached run's whole process tree.
	if _, err := c.CancelJobRun(ctxFor(t, time.Minute), jr.ID); err != nil {
		t.Fatal(err)
	}
	if r := waitJobRun(t, c, jr.ID); r.State != slipway.RunCanceled {
		t.Errorf("canceled re-attached run = %s %q", r.State, r.Reason)
	}
	waitFor(t, "the canceled run's child to die", 30*time.Second, func() bool { return !alive(jobChild) })
	// The pipeline step was re-attached, not retried: one attempt, which succeeds once released.
	os.WriteFile(release("step"), nil, 0o644)
	p := waitPipelineRun(t, c, pr.ID)
	if work := stepNamed(p, "work"); p.State != slipway.RunSucceeded || work.Attempts != 1 {
		t.Errorf("pipeline after restart = %s %q; work %+v", p.State, p.Reason, work)
	}

	// A run that ends while no server runs reports its real end when one comes back.
	offline := runWaiter(c, "offline")
	offline, _ = c.GetJobRun(ctxFor(t, time.Minute), offline.ID)
	s.Stop()
	os.WriteFile(release("offline"), nil, 0o644)
	waitFor(t, "the run to end with no server", 30*time.Second, func() bool { return !alive(offline.PID) })
	s = startServer(t, dir)
	c = s.Client()
	if r := waitJobRun(t, c, offline.ID); r.State != slipway.RunSucceeded || r.Outputs["released"] != true {
		t.Errorf("run that ended offline = %s %q, outputs %v", r.State, r.Reason, r.Outputs)
	}
	if log := runLog(t, c, offline.ID); !strings.Contains(log, "stdout released") {
		t.Errorf("the output written while no server ran is missing:\n%s", log)
	}
}

package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

func (e *env) createPipeline(t *testing.T, def string) *slipway.Pipeline {
	t.Helper()
	spec, err := ParsePipeline([]byte(def))
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.s.CreatePipeline(context.Background(), spec, Upload{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) runPipeline(t *testing.T, name string, params map[string]any) *slipway.PipelineRun {
	t.Helper()
	r, err := e.s.RunPipeline(context.Background(), name, params, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) waitPipeline(t *testing.T, id string) *slipway.PipelineRun {
	t.Helper()
	for {
		ch := e.s.Changed()
		r, err := e.s.GetPipelineRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State.Terminal() && !e.s.driving(id) {
			return r
		}
		select {
		case <-ch:
		case <-t.Context().Done():
			t.Fatalf("pipeline run %s still %s", id, r.State)
		}
	}
}

func stepOf(r *slipway.PipelineRun, name string) *slipway.StepRun {
	for _, s := range r.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func TestPipelineOutputsRetriesAndOnExit(t *testing.T) {
	e := newEnv(t)
	shared := t.TempDir()
	e.createPipeline(t, `
name: flow
params:
  dir: null
  greeting: hello
steps:
  - name: produce
    script: |
      echo "${params.greeting}" > "$SLIPWAY_OUTPUT_DIR/data.txt"
      echo '{"count": 3, "label": "x"}' > "$SLIPWAY_OUTPUT_DIR/outputs.json"
  - name: flaky
    depends_on: [produce]
    retries: 3
    retry_backoff_seconds: 0.05
    script: |
      n=$(cat "${params.dir}/attempts" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "${params.dir}/attempts"
      test "$n" -ge 3 || { echo "attempt $n: not yet" >&2; exit 1; }
      test "$(cat ${steps.produce.output_dir}/data.txt)" = hello
      echo "{\"seen\": \"${steps.produce.outputs.count}-${steps.produce.outputs.label}\"}" > "$SLIPWAY_OUTPUT_DIR/outputs.json"
on_exit:
  name: report
  script: echo "status=$SLIPWAY_PIPELINE_STATUS param=$SLIPWAY_PARAM_GREETING" > "${params.dir}/report"
`)
	r := e.waitPipeline(t, e.runPipeline(t, "flow", map[string]any{"dir": shared}).ID)
	if r.State != slipway.RunSucceeded {
		t.Fatalf("run = %s %q", r.State, r.Reason)
	}
	flaky := stepOf(r, "flaky")
	if flaky.Attempts != 3 || len(flaky.History) != 3 || flaky.History[0].State != slipway.StepFailed ||
		!strings.Contains(flaky.History[0].Reason, "attempt 1: not yet") || flaky.Outputs["seen"] != "3-x" {
		t.Errorf("flaky = %+v", flaky)
	}
	report, _ := os.ReadFile(filepath.Join(shared, "report"))
	if string(report) != "status=SUCCEEDED param=hello\n" {
		t.Errorf("on_exit wrote %q", report)
	}
}

func TestPipelineFailureSkipsDownstreamThenResumes(t *testing.T) {
	e := newEnv(t)
	shared := t.TempDir()
	e.createPipeline(t, `
name: resumable
params: {dir: null}
steps:
  - name: first
    script: echo run >> "${params.dir}/first"
  - name: gate
    depends_on: [first]
    script: test -f "${params.dir}/open" || { echo "gate closed" >&2; exit 4; }
  - name: last
    depends_on: [gate]
    script: echo done > "${params.dir}/last"
on_exit:
  name: always
  script: echo "$SLIPWAY_PIPELINE_STATUS" >> "${params.dir}/exit"
`)
	r := e.waitPipeline(t, e.runPipeline(t, "resumable", map[string]any{"dir": shared}).ID)
	if r.State != slipway.RunFailed || !strings.Contains(r.Reason, "step gate failed: exit status 4: gate closed") {
		t.Fatalf("run = %s %q", r.State, r.Reason)
	}
	if st := stepOf(r, "last"); st.State != slipway.StepSkipped {
		t.Errorf("last = %s, want SKIPPED", st.State)
	}
	os.WriteFile(filepath.Join(shared, "open"), nil, 0o644)
	if _, err := e.s.RetryPipelineRun(context.Background(), r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	r = e.waitPipeline(t, r.ID)
	if r.State != slipway.RunSucceeded || r.Retries != 1 {
		t.Fatalf("resumed run = %s %q retries %d", r.State, r.Reason, r.Retries)
	}
	first, _ := os.ReadFile(filepath.Join(shared, "first"))
	exits, _ := os.ReadFile(filepath.Join(shared, "exit"))
	if string(first) != "run\n" || stepOf(r, "first").Attempts != 1 {
		t.Errorf("the succeeded step ran again: %q", first)
	}
	if stepOf(r, "gate").Attempts != 2 || string(exits) != "FAILED\nSUCCEEDED\n" {
		t.Errorf("gate attempts %d, exit step saw %q", stepOf(r, "gate").Attempts, exits)
	}
	if _, err := e.s.RetryPipelineRun(context.Background(), r.ID, "test"); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Errorf("retrying a succeeded run: %v, want ECONFLICT", err)
	}
}

func TestPipelineCacheHit(t *testing.T) {
	e := newEnv(t)
	shared := t.TempDir()
	e.createPipeline(t, `
name: cached
params: {dir: null, n: 1}
steps:
  - name: expensive
    cache: true
    script: |
      echo x >> "${params.dir}/ran"
      echo '{"n": ${params.n}}' > "$SLIPWAY_OUTPUT_DIR/outputs.json"
  - name: use
    depends_on: [expensive]
    cache: true
    script: test "${steps.expensive.outputs.n}" = "${params.n}"
`)
	first := e.waitPipeline(t, e.runPipeline(t, "cached", map[string]any{"dir": shared}).ID)
	second := e.waitPipeline(t, e.runPipeline(t, "cached", map[string]any{"dir": shared}).ID)
	third := e.waitPipeline(t, e.runPipeline(t, "cached", map[string]any{"dir": shared, "n": 2.0}).ID)
	for _, r := range []*slipway.PipelineRun{first, second, third} {
		if r.State != slipway.RunSucceeded {
			t.Fatalf("run %s = %s %q", r.ID, r.State, r.Reason)
		}
	}
	if stepOf(first, "expensive").Cached || !stepOf(second, "expensive").Cached || !stepOf(second, "use").Cached {
		t.Errorf("cached flags: first %v, second %v/%v", stepOf(first, "expensive").Cached, stepOf(second, "expensive").Cached, stepOf(second, "use").Cached)
	}
	if stepOf(second, "expensive").JobRun != stepOf(first, "expensive").JobRun || stepOf(second, "expensive").Outputs["n"] != 1.0 {
		t.Errorf("the cache hit must reuse the first run's outputs: %+v", stepOf(second, "expensive"))
	}
	if stepOf(third, "expensive").Cached {
		t.Errorf("a changed param must miss the cache")
	}
	ran, _ := os.ReadFile(filepath.Join(shared, "ran"))
	if string(ran) != "x\nx\n" {
		t.Errorf("expensive ran %q, want twice (first and changed param)", ran)
	}
}

func TestPipelineCancelAndTimeout(t *testing.T) {
	e := newEnv(t)
	e.createPipeline(t, `
name: long
steps:
  - name: slow
    script: sleep 300
  - name: after
    depends_on: [slow]
    script: "true"
on_exit:
  name: cleanup
  script: echo "$SLIPWAY_PIPELINE_STATUS"
`)
	r := e.runPipeline(t, "long", nil)
	for {
		ch := e.s.Changed()
		cur, _ := e.s.GetPipelineRun(context.Background(), r.ID)
		if st := stepOf(cur, "slow"); st.JobRun != "" {
			// The step records its run's id just before the run is queued: a moment of "not found" is expected.
			if jr, err := e.s.GetRun(context.Background(), st.JobRun); err == nil && jr.State == slipway.RunInProgress {
				break
			}
		}
		<-ch
	}
	if _, err := e.s.CancelPipelineRun(context.Background(), r.ID, "tester"); err != nil {
		t.Fatal(err)
	}
	r = e.waitPipeline(t, r.ID)
	if r.State != slipway.RunCanceled || stepOf(r, "slow").State != slipway.StepCanceled || stepOf(r, "after").State != slipway.StepCanceled ||
		stepOf(r, "cleanup").State != slipway.StepSucceeded {
		t.Errorf("canceled run = %s; steps %s %s %s", r.State, stepOf(r, "slow").State, stepOf(r, "after").State, stepOf(r, "cleanup").State)
	}

	e.createPipeline(t, `
name: timeboxed
steps:
  - name: slow
    timeout_seconds: 1
    retries: 1
    script: sleep 300
`)
	r = e.waitPipeline(t, e.runPipeline(t, "timeboxed", nil).ID)
	slow := stepOf(r, "slow")
	if r.State != slipway.RunFailed || slow.Attempts != 2 || !strings.Contains(slow.Reason, "exceeded max runtime 1s") {
		t.Errorf("timeboxed = %s, slow = %d attempts %q", r.State, slow.Attempts, slow.Reason)
	}
}

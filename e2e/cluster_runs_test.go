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
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// countLines is how many lines a marker file holds (0 when it does not exist): one per execution of a step.
func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// Stop the server that owns a pipeline run (its slow step running there) and a batch run (mid-way through its
// chunks): the other server finishes both. The steps that had finished do not run again, the interrupted step
// is retried by its policy, and the batch run resumes from its checkpoints so that its table holds every row
// exactly once.
//   - kill -9: the other server adopts both once their leases expire; it fails the step's job run, naming the
//     lost server.
//   - SIGTERM: the owner stops the step's process (its job run FAILED "server ... shut down") and its batch
//     run, and releases the leases: the other server adopts both at once.
func TestClusterRunsSurviveTheirOwner(t *testing.T) {
	t.Run("kill -9", func(t *testing.T) {
		runsSurviveTheirOwner(t, (*server).Kill, true, "stopped renewing the run's lease",
			"adopted a pipeline run", "adopted a job run whose server is lost", "resuming batch prediction adopted from another server")
	})
	t.Run("SIGTERM", func(t *testing.T) {
		runsSurviveTheirOwner(t, (*server).Stop, false, "shut down while the run was in progress",
			"adopted a pipeline run", "resuming batch prediction adopted from another server")
	})
}

// runsSurviveTheirOwner stops the owner with stop; the lost step's job run must fail with a reason naming the
// owner and containing stepReason, and the other server's log must hold each of logs. With stray, the lost
// step's process outlived its server: the server's restart on its data folder must stop it.
func runsSurviveTheirOwner(t *testing.T, stop func(*server), stray bool, stepReason string, logs ...string) {
	slipwaytest.UseS3Credentials(t)
	bucket := slipwaytest.StartS3(t, "slipway")
	store := "s3://slipway/prod?endpoint=" + bucket.URL
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "slipway")
	warehouse := pg.CreateDatabase(t, "warehouse")
	imports, marks := t.TempDir(), t.TempDir()
	// Both servers read the same import folder (a shared mount in production) and write to the same warehouse.
	args := []string{"--database", dsn, "--artifact-store", store, "--import-dir", imports, "--connection", "pg=" + warehouse}
	a := startServer(t, "", args...)
	ca := a.Client()
	// The first attempt of the slow step waits for a file that the test writes only at its end: it is still
	// running when its server dies (its supervised process outlives the server, as a process on a machine that
	// lost its server would). A retry finds a line in slow.log already and ends at once.
	release := filepath.Join(marks, "release")
	t.Cleanup(func() { os.WriteFile(release, nil, 0o644) })
	def := `
name: failover
params: {dir: null}
steps:
  - name: prepare
    script: |
      echo ran >> "${params.dir}/prepare.log"
      echo '{"rows": 3000}' > "$SLIPWAY_OUTPUT_DIR/outputs.json"
  - name: slow
    depends_on: [prepare]
    retries: 2
    retry_backoff_seconds: 0.1
    script: |
      if [ -s "${params.dir}/slow.log" ]; then echo retry >> "${params.dir}/slow.log"; exit 0; fi
      echo first >> "${params.dir}/slow.log"
      while [ ! -f "${params.dir}/release" ]; do sleep 0.1; done
  - name: report
    depends_on: [slow]
    script: echo "ran after ${steps.prepare.outputs.rows} rows" >> "${params.dir}/report.log"
`
	if _, err := ca.CreatePipeline(ctxFor(t, time.Minute), []byte(def), nil, ""); err != nil {
		t.Fatal(err)
	}
	pr, err := ca.RunPipeline(ctxFor(t, time.Minute), "failover", map[string]any{"dir": marks})
	if err != nil {
		t.Fatal(err)
	}
	var stepRun string
	waitFor(t, "the slow step to run on A", 2*time.Minute, func() bool {
		r, _ := ca.GetPipelineRun(context.Background(), pr.ID)
		stepRun = stepNamed(r, "slow").JobRun
		return stepRun != "" && countLines(t, filepath.Join(marks, "slow.log")) == 1
	})
	// B joins only now: the step's job run was claimed by A's queue, so A owns the pipeline run and the job run.
	dirB := t.TempDir()
	if err := os.WriteFile(filepath.Join(dirB, "admin.token"), []byte(a.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, dirB, args...)
	cb := b.Client()
	idA := serverID(t, pg, a)
	for _, q := range []string{"SELECT owner FROM pipeline_runs WHERE id = '" + pr.ID + "'", "SELECT owner FROM job_runs WHERE id = '" + stepRun + "'"} {
		if got := pg.Psql(t, "slipway", q); got != idA || idA == "" {
			t.Fatalf("%s: %q, want A (%s)", q, got, idA)
		}
	}

	// A batch run through A, killed mid-way.
	pushSlowChurn(t, a) // 50 ms per chunk, so that the kill lands mid-run
	_, lines := readChurn(t, 3000)
	os.WriteFile(filepath.Join(imports, "all.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	br, err := ca.CreateBatchPrediction(context.Background(), slipway.BatchSpec{Model: "churn-slow",
		Input: slipway.BatchInput{Path: "all.csv"}, Output: slipway.BatchOutput{Connection: "pg", Table: "scores"},
		KeyColumns: []string{"customer_id"}, ChunkSize: 50, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	var killed time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mid, err := ca.WaitBatchPrediction(ctx, br.ID, func(r *slipway.BatchRun) {
		if r.RowsDone >= 500 && killed.IsZero() {
			killed = time.Now()
			stop(a)
		}
	}, 20*time.Millisecond)
	if err == nil || mid == nil || mid.State.Terminal() || killed.IsZero() {
		t.Fatalf("the batch run finished before its server stopped (%v, %+v): slow the model down", err, mid)
	}
	if n := pg.Psql(t, "warehouse", "SELECT COUNT(*) FROM scores"); n == "3000" {
		t.Fatalf("the table is complete before the takeover")
	}

	// B takes both over once A's leases expire.
	var adopted time.Duration
	waitFor(t, "B to adopt A's runs", 2*time.Minute, func() bool {
		owners := pg.Psql(t, "slipway", "SELECT (SELECT owner FROM pipeline_runs WHERE id = '"+pr.ID+"') || ' ' || (SELECT owner FROM batch_runs WHERE id = '"+br.ID+"')")
		if owners == serverID(t, pg, b)+" "+serverID(t, pg, b) {
			adopted = time.Since(killed)
			return true
		}
		return false
	})
	t.Logf("B adopted the pipeline run and the batch run %s after A was stopped", adopted.Round(100*time.Millisecond))

	r := waitPipelineRun(t, cb, pr.ID)
	if r.State != slipway.RunSucceeded {
		t.Fatalf("pipeline run after the takeover: %s %q", r.State, r.Reason)
	}
	slow := stepNamed(r, "slow")
	if len(slow.History) != 2 || slow.History[0].JobRun != stepRun || slow.History[0].State != slipway.StepFailed ||
		!strings.Contains(slow.History[0].Reason, "server "+idA+" ") || !strings.Contains(slow.History[0].Reason, stepReason) || slow.State != slipway.StepSucceeded {
		t.Fatalf("slow step: %s, history %+v", slow.State, slow.History)
	}
	jr, err := cb.GetJobRun(ctxFor(t, time.Minute), stepRun)
	if err != nil || jr.State != slipway.RunFailed || !strings.Contains(jr.Reason, idA) || !strings.Contains(jr.Reason, stepReason) {
		t.Fatalf("the lost step's job run: %+v %v", jr, err)
	}
	for file, want := range map[string]int{"prepare.log": 1, "slow.log": 2, "report.log": 1} {
		if got := countLines(t, filepath.Join(marks, file)); got != want {
			t.Errorf("%s has %d lines, want %d: a finished step ran again, or a step did not run", file, got, want)
		}
	}
	if p := stepNamed(r, "prepare"); p.Attempts != 1 || len(p.History) != 1 {
		t.Errorf("prepare ran %d times: %+v", p.Attempts, p.History)
	}

	done := waitBatch(t, b, br.ID)
	if done.State != slipway.BatchSucceeded || done.RowsDone != 3000 {
		t.Fatalf("batch run after the takeover: %s (%s), %d rows", done.State, done.Reason, done.RowsDone)
	}
	if got := pg.Psql(t, "warehouse", "SELECT COUNT(*) || ' ' || COUNT(DISTINCT customer_id) FROM scores"); got != "3000 3000" {
		t.Fatalf("the table holds %s rows/distinct customers, want 3000 3000", got)
	}
	if n := pg.Psql(t, "warehouse", fmt.Sprintf("SELECT COUNT(*) FROM slipway_batch_checkpoints WHERE batch_id = '%s'", br.ID)); n != "60" {
		t.Fatalf("%s checkpoints, want 60", n)
	}
	if stray {
		if !alive(jr.PID) {
			t.Fatalf("the lost step's process %d died with its server: nothing left to test", jr.PID)
		}
		a2 := startServer(t, a.dataDir, args...)
		waitFor(t, "A's restart to stop the process its previous life left running", time.Minute, func() bool { return !alive(jr.PID) })
		if !strings.Contains(a2.Log(), "stopping a process left running by this folder's previous server") {
			t.Errorf("A's restart did not say it stopped the stray process")
		}
	}
	for _, want := range logs {
		if !strings.Contains(b.Log(), want) {
			t.Errorf("B's log does not say %q", want)
		}
	}
}

// A job run in progress on A is canceled through B: B answers as the owner would, once the run is CANCELED,
// and A has stopped the run's whole process tree. A finished run stays a conflict through either server.
func TestClusterCancelJobRunThroughAnotherServer(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	bucket := slipwaytest.StartS3(t, "slipway")
	store := "s3://slipway/prod?endpoint=" + bucket.URL
	pg := slipwaytest.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "slipway")
	a := clusterMember(t, "", dsn, store, "")
	ca := a.Client()
	createShellJob(t, ca, "tree", treeScript, slipway.JobSpec{})
	run, err := ca.RunJob(ctxFor(t, time.Minute), "tree", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	child := pidFromOutput(t, ca, run.ID, "child.pid")
	// B joins only now: A's queue claimed the run, so A owns it and runs its process.
	b := clusterMember(t, "", dsn, store, a.Token)
	cb := b.Client()
	if owner, idA := pg.Psql(t, "slipway", "SELECT owner FROM job_runs WHERE id = '"+run.ID+"'"), serverID(t, pg, a); owner != idA || idA == "" {
		t.Fatalf("the run's owner is %q, want A (%s)", owner, idA)
	}
	inProgress, err := ca.GetJobRun(ctxFor(t, time.Minute), run.ID)
	if err != nil || inProgress.State != slipway.RunInProgress || !alive(inProgress.PID) || !alive(child) {
		t.Fatalf("before the cancel: %+v %v (child alive: %v)", inProgress, err, alive(child))
	}

	canceled, err := cb.CancelJobRun(ctxFor(t, time.Minute), run.ID)
	if err != nil || canceled.State != slipway.RunCanceled || !strings.HasPrefix(canceled.Reason, "canceled by ") {
		t.Fatalf("cancel through B: %+v %v, want the run CANCELED", canceled, err)
	}
	for _, pid := range []int{inProgress.PID, child} {
		if alive(pid) {
			t.Errorf("process %d survived the cancel through B", pid)
		}
	}
	if !strings.Contains(a.Log(), "job run canceled through another server") {
		t.Errorf("A's log does not say it stopped the run for another server")
	}
	for name, c := range map[string]*client.Client{"A": ca, "B": cb} {
		if _, err := c.CancelJobRun(ctxFor(t, time.Minute), run.ID); slipway.ErrorCode(err) != slipway.ECONFLICT ||
			!strings.Contains(err.Error(), "already CANCELED") {
			t.Errorf("cancel a finished run through %s: %v, want a conflict", name, err)
		}
	}
}

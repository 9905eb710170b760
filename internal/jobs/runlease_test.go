package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

// partitioned is a server's view of the leases table while it is cut off from the database: its heartbeats,
// renewals and acquisitions fail.
type partitioned struct {
	*sqlstore.DB
	cut *atomic.Bool
}

var errPartitioned = errors.New("partitioned from the database")

func (p partitioned) Heartbeat(ctx context.Context, m cluster.Member, forget time.Duration) error {
	if p.cut.Load() {
		return errPartitioned
	}
	return p.DB.Heartbeat(ctx, m, forget)
}

func (p partitioned) RenewLeases(ctx context.Context, holder string, ttl time.Duration) (map[string]int64, error) {
	if p.cut.Load() {
		return nil, errPartitioned
	}
	return p.DB.RenewLeases(ctx, holder, ttl)
}

func (p partitioned) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	if p.cut.Load() {
		return 0, false, errPartitioned
	}
	return p.DB.AcquireLease(ctx, name, holder, ttl)
}

func lineCount(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// Server A owns a pipeline run whose step runs there, then is cut off from the leases (a partition): B adopts
// both runs once A's leases expire, fails the step's job run naming A, retries the step and finishes the
// pipeline, without running the finished step again. A, which still runs, stops the step's process and its
// driver when it finds its leases lost, and the store refuses the writes it still makes: B's record stands.
func TestPartitionedOwnerDoesNotWriteOverItsSuccessor(t *testing.T) {
	dbDir, marks := t.TempDir(), t.TempDir()
	dbA, dbB := openDB(t, dbDir), openDB(t, dbDir) // two servers on one database
	// Long enough that B, renewing every third of it, keeps its leases on a loaded machine under -race.
	ttl := 2 * time.Second
	var cut atomic.Bool
	t.Cleanup(func() { cut.Store(false) }) // A closes normally
	nodeA := cluster.New(cluster.Config{Store: partitioned{dbA, &cut}, AdvertiseURL: "http://a", TTL: ttl})
	nodeB := cluster.New(cluster.Config{Store: dbB, AdvertiseURL: "http://b", TTL: ttl})
	dbA.FenceRuns(nodeA.ID())
	dbB.FenceRuns(nodeB.ID())
	ctx := context.Background()
	if err := nodeA.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeA.Close(ctx) })
	on := func(db *sqlstore.DB, n *cluster.Node) func(*Config) {
		return func(c *Config) {
			c.Store, c.Tokens, c.Models, c.Leases, c.AdoptEvery = db, db, db, n, 100*time.Millisecond
		}
	}
	a := newEnv(t, on(dbA, nodeA))
	a.createPipeline(t, `
name: part
params: {dir: null}
steps:
  - name: first
    script: echo ran >> "${params.dir}/first.log"
  - name: slow
    depends_on: [first]
    retries: 1
    script: |
      if [ -s "${params.dir}/slow.log" ]; then echo retry >> "${params.dir}/slow.log"; exit 0; fi
      echo first >> "${params.dir}/slow.log"
      while [ ! -f "${params.dir}/release" ]; do sleep 0.05; done
`)
	t.Cleanup(func() { os.WriteFile(filepath.Join(marks, "release"), nil, 0o644) })
	run := a.runPipeline(t, "part", map[string]any{"dir": marks})
	for lineCount(t, filepath.Join(marks, "slow.log")) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	lost, err := a.s.GetPipelineRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	lostJob := stepOf(lost, "slow").JobRun

	cut.Store(true) // A is cut off; B joins and takes over once A's leases expire
	if err := nodeB.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeB.Close(ctx) })
	b := newEnv(t, on(dbB, nodeB))
	done := b.waitPipeline(t, run.ID)
	if done.State != slipway.RunSucceeded {
		t.Fatalf("pipeline run on B: %s %q", done.State, done.Reason)
	}
	// A finds its leases lost: it stops the step's process and its driver (its writes are refused).
	for {
		a.s.mu.Lock()
		busy := len(a.s.running) > 0
		a.s.mu.Unlock()
		if !busy && !a.s.driving(run.ID) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	jr, err := b.s.store.FindJobRun(ctx, lostJob)
	if err != nil {
		t.Fatal(err)
	}
	if jr.State != slipway.RunFailed || !strings.Contains(jr.Reason, "server "+nodeA.ID()+" stopped renewing the run's lease") {
		t.Fatalf("the lost step's job run: %s %q (A wrote over B's record?)", jr.State, jr.Reason)
	}
	if got, _ := b.s.GetPipelineRun(ctx, run.ID); got.State != slipway.RunSucceeded {
		t.Fatalf("after A stopped: %s %q", got.State, got.Reason)
	}
	if n := lineCount(t, filepath.Join(marks, "first.log")); n != 1 {
		t.Fatalf("the finished step ran %d times", n)
	}
	if n := lineCount(t, filepath.Join(marks, "slow.log")); n != 2 {
		t.Fatalf("the interrupted step ran %d times, want 2 (the lost attempt and its retry)", n)
	}
}

// Runs whose processes run on A are canceled through B, which owns nothing that runs: a job run (B's call
// returns once A has stopped it, as A's would) and a pipeline run that B drives while its step's job run runs
// on A (B's driver flags the step's job run, and A stops it).
func TestCancelThroughAServerThatDoesNotRunTheProcess(t *testing.T) {
	dbDir, marks := t.TempDir(), t.TempDir()
	dbA, dbB := openDB(t, dbDir), openDB(t, dbDir) // two servers on one database
	nodeA := cluster.New(cluster.Config{Store: dbA, AdvertiseURL: "http://a", TTL: 5 * time.Second})
	nodeB := cluster.New(cluster.Config{Store: dbB, AdvertiseURL: "http://b", TTL: 5 * time.Second})
	dbA.FenceRuns(nodeA.ID())
	dbB.FenceRuns(nodeB.ID())
	ctx := context.Background()
	for _, n := range []*cluster.Node{nodeA, nodeB} {
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close(ctx) })
	}
	on := func(db *sqlstore.DB, n *cluster.Node) func(*Config) {
		return func(c *Config) {
			c.Store, c.Tokens, c.Models, c.Leases, c.AdoptEvery = db, db, db, n, 100*time.Millisecond
		}
	}
	a := newEnv(t, on(dbA, nodeA))
	// B's queue never starts (it waits for the server's URL): A's queue claims every job run.
	b := newEnv(t, on(dbB, nodeB), func(c *Config) { c.URL = "" })

	a.createJob(t, "sleepy", "sleepy.sh", "echo started >> \""+marks+"/sleepy.log\"\nsleep 300\n", slipway.JobSpec{})
	jr := a.run(t, "sleepy", RunInput{})
	for lineCount(t, filepath.Join(marks, "sleepy.log")) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if !a.s.following(jr.ID) || b.s.following(jr.ID) {
		t.Fatalf("job run %s: followed by A %v, by B %v; want A only", jr.ID, a.s.following(jr.ID), b.s.following(jr.ID))
	}
	got, err := b.s.CancelRun(t.Context(), jr.ID, "alice")
	if err != nil || got.State != slipway.RunCanceled || got.Reason != "canceled by alice" {
		t.Fatalf("cancel through B: %+v %v, want CANCELED by alice", got, err)
	}
	if _, err := a.s.CancelRun(t.Context(), jr.ID, "alice"); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Fatalf("cancel the finished run through A: %v, want a conflict", err)
	}

	b.createPipeline(t, `
name: far
params: {dir: null}
steps:
  - name: slow
    script: |
      echo started >> "${params.dir}/slow.log"
      sleep 300
`)
	run := b.runPipeline(t, "far", map[string]any{"dir": marks})
	for r, _ := b.s.GetPipelineRun(ctx, run.ID); stepOf(r, "slow").JobRun == ""; r, _ = b.s.GetPipelineRun(ctx, run.ID) {
		time.Sleep(20 * time.Millisecond)
	}
	a.s.kick() // B queued the step's job run: that wakes B's queue only, and A's looks by itself every 30 s
	for lineCount(t, filepath.Join(marks, "slow.log")) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := b.s.CancelPipelineRun(ctx, run.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	done := b.waitPipeline(t, run.ID)
	step := stepOf(done, "slow")
	if done.State != slipway.RunCanceled || step.State != slipway.StepCanceled {
		t.Fatalf("pipeline run: %s %q, step %s %q", done.State, done.Reason, step.State, step.Reason)
	}
	if sr, err := a.s.GetRun(ctx, step.JobRun); err != nil || sr.State != slipway.RunCanceled || sr.Reason != "the pipeline run was canceled" {
		t.Fatalf("the step's job run: %+v %v", sr, err)
	}
}

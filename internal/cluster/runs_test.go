package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/cluster"
)

// A run whose owner stops renewing its lease becomes an orphan; exactly one other server adopts it, and the
// store then records that server as the run's owner.
func TestOrphanRunIsAdoptedOnce(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	ttl := 300 * time.Millisecond
	a := cluster.New(cluster.Config{Store: db, AdvertiseURL: "http://a", TTL: ttl})
	b := cluster.New(cluster.Config{Store: db, AdvertiseURL: "http://b", TTL: ttl})
	c := cluster.New(cluster.Config{Store: db, AdvertiseURL: "http://c", TTL: ttl})
	db.FenceRuns(a.ID()) // the run is claimed by a
	if ok, err := a.Acquire(ctx, cluster.RunLease(slipway.RunKindJob, "jr-1"), nil); err != nil || !ok {
		t.Fatalf("a takes the run's lease: %v %v", ok, err)
	}
	if err := db.CreateJobRun(ctx, &slipway.JobRun{ID: "jr-1", Job: "j", State: slipway.RunAccepted}); err != nil {
		t.Fatal(err)
	}
	if err := db.StartJobRun(ctx, "jr-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if orphans, err := cluster.OrphanRuns(ctx, b, db, slipway.RunKindJob); err != nil || len(orphans) != 0 {
		t.Fatalf("a run whose owner renews is an orphan: %+v %v", orphans, err)
	}
	time.Sleep(2 * ttl) // a does not renew (as if killed)
	orphans, err := cluster.OrphanRuns(ctx, b, db, slipway.RunKindJob)
	if err != nil || len(orphans) != 1 || orphans[0].Owner != a.ID() {
		t.Fatalf("orphans: %+v %v", orphans, err)
	}
	won := 0
	for _, n := range []*cluster.Node{b, c} {
		ok, err := cluster.AdoptRun(ctx, n, db, slipway.RunKindJob, orphans[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d servers adopted the run, want 1", won)
	}
	runs, err := db.ActiveRuns(ctx, slipway.RunKindJob)
	if err != nil || len(runs) != 1 || runs[0].Owner != b.ID() {
		t.Fatalf("after the adoption: %+v %v (b is %s)", runs, err, b.ID())
	}
	// The lease taken again by a (its restart, say) does not give the run back: the owner moved on.
	stale := orphans[0]
	if err := b.Release(ctx, cluster.RunLease(slipway.RunKindJob, "jr-1")); err != nil {
		t.Fatal(err)
	}
	if ok, err := cluster.AdoptRun(ctx, a, db, slipway.RunKindJob, stale, nil); err != nil || ok {
		t.Fatalf("adopting from a stale owner: %v %v, want refused", ok, err)
	}
	if a.Holds(cluster.RunLease(slipway.RunKindJob, "jr-1")) {
		t.Fatal("a refused adoption kept the lease")
	}
}

package cluster_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-ml/slipway/internal/cluster"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

func openStore(t *testing.T) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A node that stops renewing (here: never started, as if killed) loses its lease at expiry to another node,
// which renews it; the first one, renewing again, learns it lost the lease and is told once.
func TestNodeLosesAnExpiredLease(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	ttl := 300 * time.Millisecond
	a := cluster.New(cluster.Config{Store: db, AdvertiseURL: "http://a", TTL: ttl})
	b := cluster.New(cluster.Config{Store: db, AdvertiseURL: "http://b", TTL: ttl})
	lost := make(chan string, 2)
	if ok, err := a.Acquire(ctx, "deployment/x", func() { lost <- "x" }); err != nil || !ok {
		t.Fatalf("a acquires: %v %v", ok, err)
	}
	if ok, _ := b.Acquire(ctx, "deployment/x", nil); ok {
		t.Fatal("b took a live lease")
	}
	time.Sleep(2 * ttl) // a does not renew: its lease expires
	if a.Holds("deployment/x") {
		t.Fatal("a still believes it holds a lease past its deadline")
	}
	if ok, err := b.Acquire(ctx, "deployment/x", nil); err != nil || !ok {
		t.Fatalf("b takes the expired lease: %v %v", ok, err)
	}
	if err := a.Start(ctx); err != nil { // a's first renewal finds the lease gone
		t.Fatal(err)
	}
	defer a.Close(ctx)
	select {
	case <-lost:
	case <-time.After(time.Minute):
		t.Fatal("a was never told it lost the lease")
	}
	h, ok, err := a.Holder(ctx, "deployment/x")
	if err != nil || !ok || h.Server != b.ID() {
		t.Fatalf("holder %+v %v %v, want b", h, ok, err)
	}
}

// A started node keeps its lease alive past many TTLs; Close releases it at once and leaves the members.
func TestNodeRenewsAndReleasesOnClose(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	ttl := time.Second
	a := cluster.New(cluster.Config{Store: db, AdvertiseURL: "http://a", TTL: ttl})
	b := cluster.New(cluster.Config{Store: db, AdvertiseURL: "http://b", TTL: ttl})
	a.Campaign("monitor")
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.Holds("monitor") {
		t.Fatal("a did not take the free monitor lease at start")
	}
	time.Sleep(3 * ttl)
	if !a.Holds("monitor") {
		t.Fatal("a lost a lease it renews")
	}
	if ok, _ := b.Acquire(ctx, "monitor", nil); ok {
		t.Fatal("b took a renewed lease")
	}
	others, err := b.Others(ctx)
	if err != nil || len(others) != 1 || others[0].ID != a.ID() {
		t.Fatalf("b sees %+v %v, want a", others, err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Acquire(ctx, "monitor", nil); err != nil || !ok {
		t.Fatalf("b takes the lease a released: %v %v", ok, err)
	}
	if others, err := b.Others(ctx); err != nil || len(others) != 0 {
		t.Fatalf("a is still a member after Close: %+v %v", others, err)
	}
}

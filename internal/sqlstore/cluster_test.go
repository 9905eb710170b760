package sqlstore

import (
	"context"
	"sync"
	"testing"
	"time"

	cl "github.com/slipway-ml/slipway/internal/cluster"
)

// Two servers racing for one lease: exactly one wins each round, on both dialects (one database, two
// connections each, as two servers have).
func TestLeaseCompareAndSet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		a, b := twoServers(t, td)
		for round := range 20 {
			name := "deployment/race" + string(rune('a'+round))
			var wg sync.WaitGroup
			won := make([]bool, 2)
			for i, db := range []*DB{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, ok, err := db.AcquireLease(ctx, name, []string{"A", "B"}[i], time.Minute)
					if err != nil {
						t.Error(err)
					}
					won[i] = ok
				}()
			}
			wg.Wait()
			if won[0] == won[1] {
				t.Fatalf("round %d: both or neither won the lease: %v", round, won)
			}
		}
		// The holder acquires its own lease again (same epoch); the other server still cannot.
		e1, ok, err := a.AcquireLease(ctx, "monitor", "A", time.Minute)
		if err != nil || !ok {
			t.Fatalf("A acquire: %d %v %v", e1, ok, err)
		}
		e2, ok, err := a.AcquireLease(ctx, "monitor", "A", time.Minute)
		if err != nil || !ok || e2 != e1 {
			t.Fatalf("A re-acquire: epoch %d (was %d) %v %v", e2, e1, ok, err)
		}
		if _, ok, err := b.AcquireLease(ctx, "monitor", "B", time.Minute); err != nil || ok {
			t.Fatalf("B took a live lease of A: %v %v", ok, err)
		}
	})
}

// An expired lease goes to the next server with a new epoch; the old holder can then neither renew nor
// release it. A released lease is free at once.
func TestLeaseExpiryAndRelease(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		db := openTestDB(t, td)
		e1, ok, err := db.AcquireLease(ctx, "deployment/d", "A", 20*time.Millisecond)
		if err != nil || !ok {
			t.Fatalf("A acquire: %v %v", ok, err)
		}
		time.Sleep(100 * time.Millisecond) // past the lease's expiry on any clock
		if live := liveHolders(t, db, "deployment/"); len(live) != 0 {
			t.Fatalf("an expired lease is still live: %v", live)
		}
		e2, ok, err := db.AcquireLease(ctx, "deployment/d", "B", time.Minute)
		if err != nil || !ok || e2 <= e1 {
			t.Fatalf("B took the expired lease: epoch %d (was %d) %v %v", e2, e1, ok, err)
		}
		renewed, err := db.RenewLeases(ctx, "A", time.Minute)
		if err != nil || len(renewed) != 0 {
			t.Fatalf("A renewed a lease B holds: %v %v", renewed, err)
		}
		if err := db.ReleaseLease(ctx, "deployment/d", "A", e1); err != nil {
			t.Fatal(err)
		}
		if live := liveHolders(t, db, "deployment/"); live["deployment/d"] != "B" {
			t.Fatalf("A's stale release freed B's lease: %v", live)
		}
		if hs, err := db.LiveLeases(ctx, "deployment/d"); err != nil || len(hs) != 1 || hs[0].Previous != "" {
			t.Fatalf("a lease taken over after expiry names a previous holder: %+v %v", hs, err)
		}
		renewed, err = db.RenewLeases(ctx, "B", time.Minute)
		if err != nil || renewed["deployment/d"] != e2 {
			t.Fatalf("B renews: %v %v", renewed, err)
		}
		if err := db.ReleaseLease(ctx, "deployment/d", "B", e2); err != nil {
			t.Fatal(err)
		}
		if live := liveHolders(t, db, "deployment/"); len(live) != 0 {
			t.Fatalf("a released lease is still live: %v", live)
		}
		// Released and not yet taken: it names the server handing it over, which still serves meanwhile.
		if h, live, found, err := db.FindLease(ctx, "deployment/d"); err != nil || !found || live || h.Server != "" || h.Previous != "B" {
			t.Fatalf("a released lease: %+v live %v found %v %v", h, live, found, err)
		}
		if _, _, found, err := db.FindLease(ctx, "deployment/never"); err != nil || found {
			t.Fatalf("a lease never taken: found %v %v", found, err)
		}
		// The next holder learns who released it (for a hand-over).
		if _, _, err := db.AcquireLease(ctx, "deployment/d", "C", time.Minute); err != nil {
			t.Fatal(err)
		}
		if hs, err := db.LiveLeases(ctx, "deployment/d"); err != nil || len(hs) != 1 || hs[0].Server != "C" || hs[0].Previous != "B" {
			t.Fatalf("after B released and C took the lease: %+v %v", hs, err)
		}
		if err := db.ReleaseLease(ctx, "deployment/d", "C", e2+1); err != nil {
			t.Fatal(err)
		}
		if renewed, err := db.RenewLeases(ctx, "B", time.Minute); err != nil || len(renewed) != 0 {
			t.Fatalf("a released lease was renewed: %v %v", renewed, err)
		}
		if _, ok, err := db.AcquireLease(ctx, "deployment/d", "A", time.Minute); err != nil || !ok {
			t.Fatalf("A takes the released lease: %v %v", ok, err)
		}
	})
}

func TestMembership(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		db := openTestDB(t, td)
		started := time.Now().UTC()
		for _, m := range []cl.Member{{ID: "A", AdvertiseURL: "http://a", StartedAt: started}, {ID: "B", AdvertiseURL: "http://b", GRPCAddress: "grpc://b:9001", StartedAt: started.Add(time.Second)}} {
			if err := db.Heartbeat(ctx, m, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := db.Members(ctx, time.Minute)
		if err != nil || len(ms) != 2 || ms[0].ID != "A" || ms[1].AdvertiseURL != "http://b" || ms[1].GRPCAddress != "grpc://b:9001" || ms[0].GRPCAddress != "" {
			t.Fatalf("members %+v %v", ms, err)
		}
		if _, _, err := db.AcquireLease(ctx, "deployment/x", "B", time.Minute); err != nil {
			t.Fatal(err)
		}
		hs, err := db.LiveLeases(ctx, "deployment/")
		if err != nil || len(hs) != 1 || hs[0].AdvertiseURL != "http://b" || hs[0].GRPCAddress != "grpc://b:9001" {
			t.Fatalf("live leases %+v %v", hs, err)
		}
		// The gRPC address comes with the holder, and with the previous holder once B released the lease.
		h, live, _, err := db.FindLease(ctx, "deployment/x")
		if err != nil || !live || h.GRPCAddress != "grpc://b:9001" {
			t.Fatalf("lease %+v %v %v", h, live, err)
		}
		epoch, _, _ := db.AcquireLease(ctx, "deployment/x", "B", time.Minute)
		if err := db.ReleaseLease(ctx, "deployment/x", "B", epoch); err != nil {
			t.Fatal(err)
		}
		if h, _, _, err := db.FindLease(ctx, "deployment/x"); err != nil || h.Server != "" || h.PreviousGRPC != "grpc://b:9001" {
			t.Fatalf("released lease %+v %v", h, err)
		}
		if err := db.LeaveCluster(ctx, "B"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		// A's next heartbeat forgets nobody recent, but a row silent longer than forget goes.
		if err := db.Heartbeat(ctx, cl.Member{ID: "C", AdvertiseURL: "http://c", StartedAt: started}, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		ms, err = db.Members(ctx, time.Minute)
		if err != nil || len(ms) != 1 || ms[0].ID != "C" {
			t.Fatalf("members after B left and A went silent: %+v %v", ms, err)
		}
	})
}

func liveHolders(t *testing.T, db *DB, prefix string) map[string]string {
	t.Helper()
	hs, err := db.LiveLeases(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, h := range hs {
		out[h.Lease] = h.Server
	}
	return out
}

// twoServers opens one fresh database twice, as two servers do; both close with the test.
func twoServers(t *testing.T, td testDialect) (a, b *DB) {
	t.Helper()
	inst := td.fresh(t)
	open := func() *DB {
		db, err := inst.open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	return open(), open()
}

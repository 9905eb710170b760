package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func verifyAudit(t *testing.T, db *DB, f slipway.AuditFilter) (slipway.AuditVerification, []*slipway.AuditEntry) {
	t.Helper()
	var v slipway.AuditChainVerifier
	var es []*slipway.AuditEntry
	if err := db.ScanAudit(context.Background(), f, func(e *slipway.AuditEntry) error {
		v.Add(e)
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v.Result(), es
}

func TestAuditLog(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		start := time.Now().UTC().Add(-time.Hour)
		// Concurrent appends, as several handlers (or servers) write at once: the chain stays whole.
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					e := &slipway.AuditEntry{Time: start.Add(time.Duration(w*10+i) * time.Minute), TokenName: fmt.Sprintf("writer-%d", w),
						Action: "createDeployment", Target: fmt.Sprintf("deployments/d%d", i), Status: 201, Detail: []byte(`{"n":1}`)}
					if err := db.AppendAudit(ctx, e); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		v, es := verifyAudit(t, db, slipway.AuditFilter{})
		if !v.OK || v.Entries != 40 || v.FirstSeq != 1 || v.LastSeq != 40 || v.Anchor != "" {
			t.Fatalf("after 40 concurrent appends: %+v", v)
		}
		if string(es[0].Detail) != `{"n":1}` {
			t.Fatalf("detail read back as %q", es[0].Detail)
		}

		for _, tc := range []struct {
			name string
			f    slipway.AuditFilter
			want int
		}{
			{"actor", slipway.AuditFilter{Actor: "writer-1"}, 10},
			{"target and what is below it", slipway.AuditFilter{Target: "deployments/d1"}, 4},
			{"target prefix stops at a segment", slipway.AuditFilter{Target: "deployments/d"}, 0},
			{"action", slipway.AuditFilter{Action: "createDeployment"}, 40},
			{"after and limit", slipway.AuditFilter{After: 35, Limit: 3}, 3},
			{"time window", slipway.AuditFilter{From: start, To: start.Add(10 * time.Minute)}, 10},
		} {
			if _, got := verifyAudit(t, db, tc.f); len(got) != tc.want {
				t.Errorf("%s: %d entries, want %d", tc.name, len(got), tc.want)
			}
		}

		// Retention removes the oldest entries (by seq, whatever their clocks said) but keeps the newest; what is
		// left still verifies from its anchor.
		n, err := db.DeleteAuditBefore(ctx, start.Add(39*time.Minute)) // the time of writer 3's last entry, seq ≥ 10
		if err != nil || n == 0 {
			t.Fatalf("retention removed %d, %v", n, err)
		}
		if v, _ := verifyAudit(t, db, slipway.AuditFilter{}); !v.OK || v.Anchor == "" || v.Entries != 40-n {
			t.Fatalf("after retention: %+v", v)
		}
		if _, err := db.DeleteAuditBefore(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("retention of everything: %v", err)
		}
		if v, _ := verifyAudit(t, db, slipway.AuditFilter{}); v.Entries != 1 {
			t.Fatalf("retention removed the newest entry: %+v", v)
		}

		// An edited row is caught.
		if err := db.AppendAudit(ctx, &slipway.AuditEntry{Action: "deleteModel", Target: "models/m", Status: 204}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.w.ExecContext(ctx, `UPDATE audit_log SET status = 200 WHERE action = 'deleteModel'`); err != nil {
			t.Fatal(err)
		}
		if v, _ := verifyAudit(t, db, slipway.AuditFilter{}); v.OK {
			t.Fatalf("an edited entry verified: %+v", v)
		}
	})
}

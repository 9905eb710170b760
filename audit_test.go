package slipway

import (
	"testing"
	"time"
)

// chain builds n correctly chained entries.
func chain(n int) []*AuditEntry {
	var out []*AuditEntry
	prev := ""
	for i := 1; i <= n; i++ {
		e := &AuditEntry{Seq: int64(i), Time: time.Date(2026, 12, 6, 12, 0, i, 0, time.UTC), TokenName: "admin",
			Action: "createDeployment", Target: "deployments/d", Status: 201, PrevHash: prev}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

func TestAuditChainVerifier(t *testing.T) {
	tests := []struct {
		name     string
		mangle   func([]*AuditEntry) []*AuditEntry
		brokenAt int64
	}{
		{"intact", func(es []*AuditEntry) []*AuditEntry { return es }, 0},
		{"a field edited", func(es []*AuditEntry) []*AuditEntry { es[2].TokenName = "mallory"; return es }, 3},
		{"a field edited and its hash recomputed", func(es []*AuditEntry) []*AuditEntry {
			es[2].Status = 403
			es[2].Hash = es[2].ComputeHash()
			return es
		}, 4},
		{"an entry removed", func(es []*AuditEntry) []*AuditEntry { return append(es[:2], es[3:]...) }, 4},
		{"two entries swapped", func(es []*AuditEntry) []*AuditEntry { es[1], es[2] = es[2], es[1]; return es }, 3},
		{"the detail edited", func(es []*AuditEntry) []*AuditEntry { es[0].Detail = []byte(`{"x":1}`); return es }, 1},
		{"the oldest removed (retention): still holds", func(es []*AuditEntry) []*AuditEntry { return es[2:] }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v AuditChainVerifier
			for _, e := range tt.mangle(chain(5)) {
				v.Add(e)
			}
			r := v.Result()
			if r.BrokenAt != tt.brokenAt || r.OK != (tt.brokenAt == 0) {
				t.Fatalf("verification %+v, want broken at %d", r, tt.brokenAt)
			}
			if r.OK && r.Head == "" {
				t.Fatal("an intact chain has no head")
			}
		})
	}
}

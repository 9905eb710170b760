package slipway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"
)

// An entry without a project hashes as entries did before projects (their chains still verify); the project,
// when set, is covered by the hash.
func TestAuditHashWithProject(t *testing.T) {
	e := &AuditEntry{Seq: 7, Time: time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC), TokenName: "ci", Action: "createModel", PrevHash: "abc"}
	b, _ := json.Marshal([]any{e.Seq, e.Time.Format(time.RFC3339Nano), "", "ci", "", "createModel", "", "", "", 0, "", "", "", ""})
	sum := sha256.Sum256(append([]byte("abc\n"), b...))
	if got := e.ComputeHash(); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("hash of an entry without a project changed: %s", got)
	}
	before := e.ComputeHash()
	e.Project = "risk"
	if e.ComputeHash() == before {
		t.Fatal("the project is not covered by the hash")
	}
}

func TestProjectContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := ProjectFromContext(ctx); ok || ProjectForCreate(ctx) != DefaultProject {
		t.Fatal("a context without a project")
	}
	ctx = WithProject(ctx, "risk")
	if p, ok := ProjectFromContext(ctx); !ok || p != "risk" || ProjectForCreate(ctx) != "risk" {
		t.Fatal("a context in risk")
	}
	if (ProjectSpec{Name: "Risk"}).Validate() == nil || (ProjectSpec{Name: "risk"}).Validate() != nil {
		t.Fatal("project names")
	}
}

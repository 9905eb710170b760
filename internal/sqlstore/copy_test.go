package sqlstore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// populate writes metadata and monitoring rows of every shape the copy must carry: text and integer keys,
// identity ids, NULLs, bytes (with a NUL and invalid UTF-8 in them), floats and foreign keys.
func populate(t *testing.T, l Installation) {
	t.Helper()
	ctx := context.Background()
	in, err := openInstallation(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	readyVersion(t, in.meta, "churn")
	readyVersion(t, in.meta, "churn")
	readyVersion(t, in.meta, "Zeta") // upper case sorts first in bytes, not in every collation
	if _, err := in.meta.SetAlias(ctx, "churn", "champion", 1, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.meta.SetAlias(ctx, "churn", "champion", 2, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.meta.InstallationID(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var cs []*slipway.Capture
	for i := range 1234 { // more than one batch
		cs = append(cs, &slipway.Capture{Deployment: "churn", RequestID: strings.Repeat("r", i%7) + string(rune('a'+i%26)),
			ModelVersion: 1, Time: now.Add(time.Duration(i) * time.Millisecond), Rows: i % 5, Protocol: "v2",
			Inputs: []byte{0, 0xff, byte(i)}, Outputs: []byte(`{"y":[0.5]}`)})
	}
	if err := in.mon.InsertCaptures(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := in.mon.InsertLogs(ctx, []*slipway.LogLine{{Deployment: "churn", Time: now, Kind: "access", Line: "GET /", Fields: []byte(`{"status":200}`)},
		{Deployment: "churn", Time: now, Kind: "predict", Line: "no fields"}}); err != nil {
		t.Fatal(err)
	}
	if err := in.mon.UpsertMetricPoints(ctx, []*slipway.MetricPoint{{Deployment: "churn", Minute: now.Truncate(time.Minute), Requests: 7}}); err != nil {
		t.Fatal(err)
	}
}

func TestCopyInstallationBothWays(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sqliteA := Installation{SQLite: filepath.Join(dir, "slipway.db")}
	sqliteB := Installation{SQLite: filepath.Join(dir, "b", "slipway.db")}
	pg := Installation{Postgres: postgresDatabase(t)}
	populate(t, sqliteA)

	var progressed int
	report, err := CopyInstallation(ctx, sqliteA, pg, CopyOptions{BatchRows: 100, Progress: func(CopyProgress) { progressed++ }})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int64{}
	for _, tc := range report.Tables {
		if !tc.Verified || len(tc.Digest) != 64 {
			t.Errorf("table %s not verified: %+v", tc.Table, tc)
		}
		rows[tc.Table] = tc.Rows
	}
	for table, want := range map[string]int64{"models": 2, "model_versions": 3, "aliases": 1, "alias_history": 2,
		"installation": 1, "captures": 1234, "logs": 2, "metric_points": 1} {
		if rows[table] != want {
			t.Errorf("%s: copied %d rows, want %d (report %+v)", table, rows[table], want, report.Tables)
		}
	}
	if progressed < 13 {
		t.Errorf("%d progress reports for 1234 captures in batches of 100", progressed)
	}

	// The copied installation works: its identity counters continue after the copied ids, its data reads back.
	in, err := openInstallation(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.meta.SetAlias(ctx, "churn", "champion", 1, "carol"); err != nil {
		t.Fatalf("a new alias move after the copy: %v", err)
	}
	if hist, err := in.meta.FindAliasHistory(ctx, "churn", "champion"); err != nil || len(hist) != 3 {
		t.Fatalf("alias history after the copy: %d, %v", len(hist), err)
	}
	if err := in.mon.InsertLogs(ctx, []*slipway.LogLine{{Deployment: "churn", Time: time.Now(), Kind: "access", Line: "after"}}); err != nil {
		t.Fatalf("a new log line after the copy: %v", err)
	}
	in.close()

	// Into a non-empty target: refused before anything is written.
	if _, err := CopyInstallation(ctx, sqliteA, pg, CopyOptions{}); !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), "already holds Slipway state") {
		t.Fatalf("copy into a non-empty target: %v", err)
	}

	// And back, PostgreSQL to SQLite: the same digests for the tables that did not change since.
	back, err := CopyInstallation(ctx, pg, sqliteB, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, tc := range report.Tables {
		digests[tc.Table] = tc.Digest
	}
	for _, tc := range back.Tables {
		changed := tc.Table == "aliases" || tc.Table == "alias_history" || tc.Table == "logs"
		if !tc.Verified || (digests[tc.Table] == tc.Digest) == changed {
			t.Errorf("back to SQLite, %s: %+v (first copy's digest %s)", tc.Table, tc, digests[tc.Table])
		}
	}
}

func TestCopyInstallationErrors(t *testing.T) {
	ctx := context.Background()
	missing := Installation{SQLite: filepath.Join(t.TempDir(), "nothing", "slipway.db")}
	if _, err := CopyInstallation(ctx, missing, Installation{SQLite: filepath.Join(t.TempDir(), "x.db")}, CopyOptions{}); err == nil ||
		!strings.Contains(err.Error(), "no Slipway database there") {
		t.Fatalf("copy from a missing file: %v", err)
	}
	a := Installation{SQLite: filepath.Join(t.TempDir(), "slipway.db")}
	populate(t, a)
	if _, err := CopyInstallation(ctx, a, a, CopyOptions{}); err == nil || !strings.Contains(err.Error(), "same database") {
		t.Fatalf("copy onto itself: %v", err)
	}
	bad := Installation{Postgres: "postgres://nobody:secret@127.0.0.1:1/none?connect_timeout=2"}
	if _, err := CopyInstallation(ctx, a, bad, CopyOptions{}); err == nil || !strings.Contains(err.Error(), "open the target") ||
		strings.Contains(err.Error(), "secret") {
		t.Fatalf("copy to an unreachable server: %v", err)
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// A batch run whose input was uploaded to server A and whose output is a file moves to server B when A is
// killed (-9) mid-run: the upload, the output's committed parts and the merged output live in the bucket, and
// the parts' checkpoints in the database. B resumes from those checkpoints, the output holds every row exactly
// once, and it downloads through B (its bytes match the digest recorded for it).
func TestClusterBatchUploadAndFileOutputMove(t *testing.T) {
	a, b, pg := twoClusterMembers(t)
	ca, cb := a.Client(), b.Client()

	pushSlowChurn(t, a) // 50 ms per chunk, so that the kill lands mid-run
	const n = 3000
	_, lines := readChurn(t, n)
	input := filepath.Join(t.TempDir(), "customers.csv")
	if err := os.WriteFile(input, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up, err := ca.UploadFilePath(ctxFor(t, time.Minute), input)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.dataDir, "batch", "files", up.ID)); !os.IsNotExist(err) {
		t.Fatalf("the upload is in A's data folder (%v): it must be in the bucket only", err)
	}
	br, err := ca.CreateBatchPrediction(ctxFor(t, time.Minute), slipway.BatchSpec{Model: "churn-slow",
		Input: slipway.BatchInput{File: up.ID}, Output: slipway.BatchOutput{Format: "csv"},
		KeyColumns: []string{"customer_id"}, ChunkSize: 50, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if owner, idA := pg.Psql(t, "slipway", "SELECT owner FROM batch_runs WHERE id = '"+br.ID+"'"), serverID(t, pg, a); owner != idA || idA == "" {
		t.Fatalf("the run's owner is %q, want A (%s)", owner, idA)
	}

	var killed time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mid, err := ca.WaitBatchPrediction(ctx, br.ID, func(r *slipway.BatchRun) {
		if r.RowsDone >= 500 && killed.IsZero() {
			killed = time.Now()
			a.Kill()
		}
	}, 20*time.Millisecond)
	if err == nil || mid == nil || mid.State.Terminal() || killed.IsZero() {
		t.Fatalf("the batch run finished before its server was killed (%v, %+v): slow the model down", err, mid)
	}
	committed := pg.Psql(t, "slipway", "SELECT COUNT(*) FROM batch_parts WHERE run_id = '"+br.ID+"'")
	if committed == "0" || committed == "60" {
		t.Fatalf("%s of 60 parts committed when A was killed: want some, not all", committed)
	}

	done := waitBatch(t, b, br.ID)
	if done.State != slipway.BatchSucceeded || done.RowsDone != n || done.Output.SHA256 == "" {
		t.Fatalf("batch run after the takeover: %s (%s), %d rows, output %+v", done.State, done.Reason, done.RowsDone, done.Output)
	}
	t.Logf("B finished the run adopted %s after the kill; %s parts were committed by A", time.Since(killed).Round(100*time.Millisecond), committed)
	if !strings.Contains(b.Log(), "resuming batch prediction adopted from another server") {
		t.Errorf("B's log does not say it resumed the run")
	}

	var out bytes.Buffer
	size, err := cb.DownloadBatchOutput(ctxFor(t, time.Minute), done.ID, &out)
	if err != nil || size != done.Output.Size {
		t.Fatalf("download through B: %d bytes, %v; want %d", size, err, done.Output.Size)
	}
	if sum := sha256.Sum256(out.Bytes()); hex.EncodeToString(sum[:]) != done.Output.SHA256 {
		t.Fatalf("the downloaded output does not match its recorded SHA-256")
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, name := range recs[0] {
		if name == "customer_id" {
			col = i
		}
	}
	seen := map[string]bool{}
	for _, r := range recs[1:] {
		seen[r[col]] = true
	}
	if len(recs)-1 != n || len(seen) != n {
		t.Fatalf("the output holds %d rows, %d distinct customers; want %d and %d", len(recs)-1, len(seen), n, n)
	}
	// The merged parts are gone once the run's success is recorded: only the output stays.
	if left := pg.Psql(t, "slipway", "SELECT COUNT(*) FROM batch_parts WHERE run_id = '"+br.ID+"'"); left != "0" {
		t.Errorf("%s parts left after the run succeeded", left)
	}
}

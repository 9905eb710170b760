package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// Listing batch runs pages newest first; no limit lists them all.
func TestFindBatchRunsPages(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		for i := range 3 {
			r := &slipway.BatchRun{ID: fmt.Sprint("b", i), State: slipway.BatchAccepted, Model: "m", Version: 1, RowsTotal: -1}
			if err := db.CreateBatchRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		accepted := slipway.BatchAccepted
		tests := []struct {
			f     slipway.BatchFilter
			want  int
			first string
		}{
			{slipway.BatchFilter{}, 3, "b2"},
			{slipway.BatchFilter{Limit: 1, Offset: 1}, 1, "b1"},
			{slipway.BatchFilter{State: &accepted, Offset: 2}, 1, "b0"},
		}
		for _, tc := range tests {
			runs, total, err := db.FindBatchRuns(ctx, tc.f)
			if err != nil || total != 3 || len(runs) != tc.want || runs[0].ID != tc.first {
				t.Errorf("%+v: %d runs (total %d), %v; want %d from %s", tc.f, len(runs), total, err, tc.want, tc.first)
			}
		}
	})
}

// A file output's parts: each chunk committed once (whichever server), only by the run's owner, listed in
// chunk order; their blobs, the run's output and uploaded files count as referenced (kept by the garbage
// collection, and by BlobReferenced) until their records go.
func TestBatchParts(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		a, b := twoServers(t, td)
		a.FenceRuns("A")
		b.FenceRuns("B")
		digest := func(c byte) string { return strings.Repeat(string(c), 64) }
		r := &slipway.BatchRun{ID: "b-1", State: slipway.BatchAccepted, Model: "m", Version: 1, RowsTotal: -1}
		if err := a.CreateBatchRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := a.SetBatchState(ctx, "b-1", slipway.BatchAccepted, slipway.BatchInProgress, ""); err != nil { // A claims it
			t.Fatal(err)
		}
		if err := a.CommitBatchPart(ctx, "b-1", slipway.BatchPart{Chunk: 1, Digest: digest('1'), Rows: 10, Skipped: 1,
			Errors: []slipway.BatchError{{Chunk: 1, RowStart: 12, RowEnd: 12, Message: "bad"}}}); err != nil {
			t.Fatal(err)
		}
		if err := a.CommitBatchPart(ctx, "b-1", slipway.BatchPart{Chunk: 0, Rows: 0, Skipped: 10}); err != nil {
			t.Fatal(err)
		}
		if err := a.CommitBatchPart(ctx, "b-1", slipway.BatchPart{Chunk: 1, Digest: digest('2'), Rows: 10}); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("chunk 1 committed twice: %v, want a conflict", err)
		}
		// B adopts the run: A's commits are refused from then on, B's go in.
		if err := b.ClaimRun(ctx, slipway.RunKindBatch, "b-1", "A", "B"); err != nil {
			t.Fatal(err)
		}
		if err := a.CommitBatchPart(ctx, "b-1", slipway.BatchPart{Chunk: 2, Digest: digest('3'), Rows: 5}); slipway.ErrorCode(err) != slipway.ECONFLICT || !strings.Contains(err.Error(), "owned by server B") {
			t.Fatalf("a commit by the old owner: %v, want a conflict naming B", err)
		}
		if err := b.CommitBatchPart(ctx, "b-1", slipway.BatchPart{Chunk: 2, Digest: digest('4'), Rows: 5}); err != nil {
			t.Fatal(err)
		}
		parts, err := a.FindBatchParts(ctx, "b-1")
		if err != nil || len(parts) != 3 || parts[0].Chunk != 0 || parts[0].Digest != "" || parts[1].Digest != digest('1') ||
			parts[1].Skipped != 1 || len(parts[1].Errors) != 1 || parts[1].Errors[0].RowStart != 12 || parts[2].Digest != digest('4') {
			t.Fatalf("parts: %+v %v", parts, err)
		}

		// References: parts, the output, uploads; the LIKE on manifests' files finds a file's digest.
		if err := b.SetBatchOutput(ctx, "b-1", slipway.BatchOutput{Format: "csv", SHA256: digest('5')}); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateUploadedFile(ctx, &slipway.UploadedFile{ID: "f-1", Name: "in.csv", Size: 3, SHA256: digest('6')}); err != nil {
			t.Fatal(err)
		}
		keep, err := a.ReferencedDigests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range "1456" {
			if used, err := a.BlobReferenced(ctx, digest(byte(c))); err != nil || !used || !keep[digest(byte(c))] {
				t.Fatalf("blob %c: referenced %v %v, kept by gc %v", c, used, err, keep[digest(byte(c))])
			}
		}
		if used, err := a.BlobReferenced(ctx, digest('3')); err != nil || used {
			t.Fatalf("a refused part's blob: referenced %v %v", used, err)
		}
		if _, err := a.BlobReferenced(ctx, "x%"); err == nil {
			t.Fatal("a non-digest was accepted into a LIKE pattern")
		}
		if err := a.DeleteBatchParts(ctx, "b-1"); err != nil {
			t.Fatal(err)
		}
		if used, _ := a.BlobReferenced(ctx, digest('1')); used {
			t.Fatal("a deleted part's blob is still referenced")
		}
	})
}

package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/blob"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

// TestParquetColumnReader reads a file with several row groups, small pages, dictionary-encoded text,
// optional columns with nulls and a timestamp through the column-wise reader, in chunks that straddle
// pages and row groups, and checks every value against what was written.
func TestParquetColumnReader(t *testing.T) {
	type row struct {
		ID   int64      `parquet:"id"`
		X    *float64   `parquet:"x,optional"`
		N    *int32     `parquet:"n,optional"`
		Cat  *string    `parquet:"cat,optional,dict"`
		At   time.Time  `parquet:"at,timestamp(microsecond)"`
		Flag bool       `parquet:"flag"`
		Skip string     `parquet:"skip"` // not selected
		Opt  *time.Time `parquet:"opt,optional,timestamp(millisecond)"`
	}
	const total = 2500
	cats := []string{"basic", "pro", "enterprise", "ünï"}
	base := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	var rows []row
	for i := range total {
		r := row{ID: int64(i), At: base.Add(time.Duration(i) * time.Second), Flag: i%3 == 0, Skip: fmt.Sprint(i)}
		if i%7 != 0 {
			x := float64(i) / 4
			r.X = &x
		}
		if i%5 != 0 {
			n := int32(-i)
			r.N = &n
		}
		if i%11 != 0 {
			r.Cat = &cats[i%len(cats)]
		}
		if i%2 == 0 {
			o := base.Add(time.Duration(i) * time.Millisecond)
			r.Opt = &o
		}
		rows = append(rows, r)
	}
	path := filepath.Join(t.TempDir(), "in.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[row](f, parquet.MaxRowsPerRowGroup(900), parquet.PageBufferSize(512), parquet.Compression(&parquet.Snappy))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := newParquetSource(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	if n := len(src.pf.RowGroups()); n < 3 {
		t.Fatalf("%d row groups, want several", n)
	}
	idx := map[string]int{}
	for i, c := range src.columns() {
		idx[c.name] = i
	}
	// x read as float, n as float (an INT32 feeding a float64 feature), n again as int, cat as string.
	sel := []selected{{idx["id"], "id", kindInt}, {idx["x"], "x", kindFloat}, {idx["n"], "n", kindFloat},
		{idx["n"], "n_int", kindInt}, {idx["cat"], "cat", kindString}, {idx["at"], "at", kindTime},
		{idx["flag"], "flag", kindBool}, {idx["opt"], "opt", kindTime}}
	ctx := context.Background()
	if err := src.start(ctx, sel); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for chunkN := 0; ; chunkN++ {
		c, err := src.next(ctx, 333)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		if c.index != chunkN || c.start != int64(seen) || len(c.bad) != 0 {
			t.Fatalf("chunk %d: index %d start %d bad %v", chunkN, c.index, c.start, c.bad)
		}
		for r := range c.n {
			i := seen + r
			want := rows[i]
			id, x, nf, ni, cat, at, flag, opt := c.cols[0], c.cols[1], c.cols[2], c.cols[3], c.cols[4], c.cols[5], c.cols[6], c.cols[7]
			if id.i[r] != want.ID || at.t[r] != want.At || flag.b[r] != want.Flag {
				t.Fatalf("row %d: id %d at %v flag %v, want %+v", i, id.i[r], at.t[r], flag.b[r], want)
			}
			if (want.X == nil) != math.IsNaN(x.f[r]) || want.X != nil && x.f[r] != *want.X {
				t.Fatalf("row %d: x = %v, want %v", i, x.f[r], want.X)
			}
			if want.N == nil {
				if !nf.isNull(r) || !ni.isNull(r) || !math.IsNaN(nf.f[r]) {
					t.Fatalf("row %d: n should be missing: %v %v", i, nf.f[r], ni.i[r])
				}
			} else if nf.f[r] != float64(*want.N) || ni.i[r] != int64(*want.N) || ni.isNull(r) {
				t.Fatalf("row %d: n = %v / %v, want %d", i, nf.f[r], ni.i[r], *want.N)
			}
			if want.Cat == nil && !cat.isNull(r) || want.Cat != nil && (cat.isNull(r) || cat.s[r] != *want.Cat) {
				t.Fatalf("row %d: cat = %q (null %v), want %v", i, cat.s[r], cat.isNull(r), want.Cat)
			}
			if want.Opt == nil && !opt.isNull(r) || want.Opt != nil && !opt.t[r].Equal(want.Opt.Truncate(time.Millisecond)) {
				t.Fatalf("row %d: opt = %v, want %v", i, opt.t[r], want.Opt)
			}
		}
		seen += c.n
	}
	if seen != total {
		t.Fatalf("read %d rows, want %d", seen, total)
	}
}

// TestParquetFileSinkParts writes parts column by column (one of them empty: every row of its chunk was
// skipped) and merges them by splicing row groups; the output holds every row in chunk order.
// The parts and the output live in the artifact store: a local folder, and a real S3 server (versitygw) whose
// blobs are fetched back for the merge and the read.
func TestParquetFileSinkParts(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	srv := slipwaytest.StartS3(t, "batch")
	for _, store := range []string{"local", "s3"} {
		t.Run(store, func(t *testing.T) {
			var blobs blob.Store
			if store == "local" {
				local, err := blob.OpenLocal(filepath.Join(t.TempDir(), "blobs"))
				if err != nil {
					t.Fatal(err)
				}
				blobs = local
			} else {
				s3, err := blob.OpenS3(context.Background(), blob.S3Config{URL: "s3://batch/parts", Endpoint: srv.URL, TempDir: t.TempDir(), Installation: "inst-1"})
				if err != nil {
					t.Fatal(err)
				}
				blobs = s3
			}
			testParquetFileSinkParts(t, blobs)
		})
	}
}

func testParquetFileSinkParts(t *testing.T, blobs blob.Store) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.CreateBatchRun(ctx, &slipway.BatchRun{ID: "b-1", State: slipway.BatchInProgress, Model: "churn", Version: 2}); err != nil {
		t.Fatal(err)
	}
	svc := New(Config{Store: db, Blobs: blobs, Dir: filepath.Join(dir, "batch"), Log: slog.New(slog.DiscardHandler)})
	s := newFileSink(svc, svc.runDir("b-1"), FormatParquet, "b-1", "churn", 2, slog.New(slog.DiscardHandler))
	if err := s.prepare(ctx, []outCol{{"id", kindInt}, {"label", kindInt}, {"score", kindFloat}, {"cat", kindString}}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	part := func(index, from, n int) *chunkOut {
		out := &chunkOut{index: index, rows: n, scoredAt: at}
		id, label, score, cat := newColumn(kindInt, n), newColumn(kindInt, n), newColumn(kindFloat, n), newColumn(kindString, n)
		for i := from; i < from+n; i++ {
			id.i = append(id.i, int64(i))
			label.i = append(label.i, int64(i%2))
			score.f = append(score.f, float64(i)/10)
			if i%3 == 0 {
				score.f[len(score.f)-1] = math.NaN() // stored as null
			}
			cat.s = append(cat.s, fmt.Sprint("c", i%4))
		}
		out.cols = []*column{id, label, score, cat}
		return out
	}
	for _, p := range []*chunkOut{part(2, 20, 10), part(0, 0, 10), part(1, 10, 0)} {
		if err := s.write(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// A chunk is committed once: a second commit of chunk 0 (another server's, resuming the run) is refused.
	if err := s.write(ctx, part(0, 0, 10)); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Fatalf("second commit of chunk 0: %v, want a conflict", err)
	}
	out, err := s.finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "output.parquet")
	rc, err := blobs.Open(ctx, out.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc) // verified against the digest at its end
	rc.Close()
	if err != nil || int64(len(b)) != out.Size {
		t.Fatalf("output blob: %d bytes, %v; want %d", len(b), err, out.Size)
	}
	os.WriteFile(local, b, 0o644)
	// The parts stay until the run's success is recorded; dropping them removes their blobs too.
	parts, _ := db.FindBatchParts(ctx, "b-1")
	if len(parts) != 3 || parts[0].Digest == "" || parts[1].Digest != "" || parts[2].Rows != 10 {
		t.Fatalf("parts: %+v", parts)
	}
	if err := svc.dropParts(ctx, "b-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Stat(ctx, parts[0].Digest); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("a dropped part's blob: %v, want not found", err)
	}
	if left, _ := db.FindBatchParts(ctx, "b-1"); len(left) != 0 {
		t.Fatalf("parts after the drop: %+v", left)
	}
	type outRow struct {
		ID           int64    `parquet:"id"`
		Label        int64    `parquet:"label"`
		Score        *float64 `parquet:"score,optional"`
		Cat          string   `parquet:"cat"`
		Model        string   `parquet:"model"`
		ModelVersion int64    `parquet:"model_version"`
		BatchID      string   `parquet:"batch_id"`
	}
	rows, err := parquet.ReadFile[outRow](local)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 20 {
		t.Fatalf("%d rows, want 20", len(rows))
	}
	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pf.RowGroups()); n != 2 { // spliced: one row group per non-empty part, nothing re-encoded
		t.Fatalf("%d row groups, want 2", n)
	}
	for k, r := range rows {
		i := k
		if k >= 10 {
			i = k + 10 // chunk 1 was empty, chunk 2 holds 20..29
		}
		if r.ID != int64(i) || r.Label != int64(i%2) || r.Cat != fmt.Sprint("c", i%4) || r.Model != "churn" || r.ModelVersion != 2 || r.BatchID != "b-1" ||
			(i%3 == 0) != (r.Score == nil) || r.Score != nil && *r.Score != float64(i)/10 {
			t.Fatalf("row %d: %+v", k, r)
		}
	}
}

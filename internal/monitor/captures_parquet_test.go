package monitor

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// insertWideCaptures stores n captures of rows rows each, a millisecond apart from t0, alternating versions 1
// and 2: inputs age (FP64) and plan (BYTES), outputs prediction (INT64) and probabilities ([rows, 2] FP32); the
// first row of every labelEvery-th request has ground truth. Row r of request i has age i*rows+r.
func insertWideCaptures(t testing.TB, e *env, t0 time.Time, n, rows, labelEvery int) {
	t.Helper()
	ctx := context.Background()
	var batch []*slipway.Capture
	var fb []*slipway.Feedback
	for i := range n {
		ages, plans, preds, probs := make([]float64, rows), make([]string, rows), make([]int64, rows), make([]float32, 2*rows)
		for r := range rows {
			ages[r], plans[r], preds[r] = float64(i*rows+r), []string{"basic", "pro"}[r%2], int64((i+r)%2)
			probs[2*r], probs[2*r+1] = 0.25, 0.75
		}
		id := fmt.Sprintf("r%07d", i)
		batch = append(batch, &slipway.Capture{Deployment: "churn", RequestID: id, ModelVersion: 1 + i%2,
			Time: t0.Add(time.Duration(i) * time.Millisecond), Rows: rows, Protocol: ProtoV2,
			Inputs: workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewFloat64("age", nil, ages), workerproto.NewBytes("plan", nil, plans)}),
			Outputs: workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewInt64("prediction", nil, preds),
				workerproto.NewFloat32("probabilities", []int64{int64(rows), 2}, probs)})})
		if i%labelEvery == 0 {
			label := fmt.Sprint(i % 2)
			fb = append(fb, &slipway.Feedback{Deployment: "churn", RequestID: id, Label: &label, Time: t0, ReceivedAt: t0})
		}
		if len(batch) == 2048 || i == n-1 {
			if err := e.data.InsertCaptures(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
		if len(fb) == 5000 || i == n-1 && len(fb) > 0 {
			if _, err := e.data.UpsertFeedback(ctx, fb); err != nil {
				t.Fatal(err)
			}
			fb = fb[:0]
		}
	}
}

// checkParquetExport reads an exported file back with the Go library and checks every row, in order, against
// what insertWideCaptures stored: n requests of rows rows.
func checkParquetExport(t *testing.T, path string, t0 time.Time, n, rows, labelEvery int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range pf.Schema().Fields() {
		names = append(names, c.Name())
	}
	if got := fmt.Sprint(names); got != "[time request_id version row age plan output.prediction output.probabilities label value]" {
		t.Fatalf("columns %s", got)
	}
	if pf.NumRows() != int64(n*rows) {
		t.Fatalf("%d rows in the file, want %d", pf.NumRows(), n*rows)
	}
	t.Logf("%d rows in %d row groups, %d MB", pf.NumRows(), len(pf.RowGroups()), st.Size()>>20)
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 512)
	k := 0
	for {
		m, err := r.ReadRows(buf)
		for _, row := range buf[:m] {
			i, sub := k/rows, k%rows
			// Leaf values in column order; probabilities are a list of two.
			var byCol [10][]parquet.Value
			for _, v := range row {
				byCol[v.Column()] = append(byCol[v.Column()], v)
			}
			ok := byCol[0][0].Int64() == t0.Add(time.Duration(i)*time.Millisecond).UnixMilli() &&
				byCol[1][0].String() == fmt.Sprintf("r%07d", i) && byCol[2][0].Int64() == int64(1+i%2) && byCol[3][0].Int64() == int64(sub) &&
				byCol[4][0].Double() == float64(i*rows+sub) && byCol[5][0].String() == []string{"basic", "pro"}[sub%2] &&
				byCol[6][0].Int64() == int64((i+sub)%2) && len(byCol[7]) == 2 && byCol[7][0].Double() == 0.25 && byCol[7][1].Double() == 0.75 &&
				byCol[9][0].IsNull()
			labelled := i%labelEvery == 0 && sub == 0
			ok = ok && byCol[8][0].IsNull() != labelled && (!labelled || byCol[8][0].String() == fmt.Sprint(i%2))
			if !ok {
				t.Fatalf("row %d (request %d, row %d) out of order or wrong: %v", k, i, sub, row)
			}
			k++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if k != n*rows {
		t.Fatalf("read %d rows, want %d", k, n*rows)
	}
}

// A small export: every row, in order, with lists for wide outputs and the ground truth; an empty window is a
// valid file with the fixed columns.
func TestExportCapturesParquet(t *testing.T) {
	e := newEnv(t, nil)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	insertWideCaptures(t, e, t0, 700, 3, 4) // several pages of 256 captures
	path := filepath.Join(t.TempDir(), "captures.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.s.ExportCaptures(context.Background(), f, CaptureExport{Deployment: "churn", From: t0, To: t0.Add(time.Hour), Format: ExportParquet}, nil)
	if err != nil || rows != 2100 {
		t.Fatalf("%d rows, %v", rows, err)
	}
	f.Close()
	checkParquetExport(t, path, t0, 700, 3, 4)

	f, _ = os.Create(path)
	if rows, err := e.s.ExportCaptures(context.Background(), f, CaptureExport{Deployment: "churn", From: t0.Add(-time.Hour), To: t0, Format: ExportParquet}, nil); err != nil || rows != 0 {
		t.Fatalf("empty: %d %v", rows, err)
	}
	f.Close()
	st, _ := os.Stat(path)
	g, _ := os.Open(path)
	defer g.Close()
	pf, err := parquet.OpenFile(g, st.Size())
	if err != nil || pf.NumRows() != 0 || len(pf.Schema().Fields()) != 6 {
		t.Fatalf("empty export: %v", err)
	}
}

// A million captured rows exported as Parquet come back complete and in order, and the export's live heap
// stays bounded by a row group: exporting the whole window grows it no more than exporting a quarter of it
// (peaks compared in the same run, plus a margin of a quarter for noise), and by a small fraction of the
// values it writes (measured, not timed).
func TestExportCapturesParquetMillionRowsBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts a million captured rows")
	}
	e := newEnv(t, nil)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const n, rows = 100_000, 10
	insertWideCaptures(t, e, t0, n, rows, 7)
	dir := t.TempDir()
	export := func(name string, to time.Time) (path string, growth int64, written int64) {
		path = filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		probe := &heapProbe{w: f, every: 256 << 10, base: liveHeap()}
		if _, err := e.s.ExportCaptures(context.Background(), probe, CaptureExport{Deployment: "churn", From: t0, To: to, Format: ExportParquet}, nil); err != nil {
			t.Fatal(err)
		}
		return path, int64(probe.max) - int64(probe.base), probe.n
	}
	_, quarterGrowth, _ := export("quarter.parquet", t0.Add(n/4*time.Millisecond))
	path, growth, written := export("all.parquet", t0.Add(n*time.Millisecond))
	// What the file holds uncompressed: 8 bytes per number, the ids and plans' bytes.
	values := int64(n*rows) * (8 + 8 + 8 + 8 + 8 + 5 + 8 + 2*8 + 8)
	t.Logf("a quarter: live heap +%.1f MB; all %d rows: +%.1f MB, %.1f MB written (%.0f MB of values)", float64(quarterGrowth)/(1<<20),
		n*rows, float64(growth)/(1<<20), float64(written)/(1<<20), float64(values)/(1<<20))
	if growth > quarterGrowth+quarterGrowth/4+(1<<20) {
		t.Errorf("the live heap grew by %d bytes for the whole window, %d for a quarter of it: it grows with the window", growth, quarterGrowth)
	}
	if growth > values/10 {
		t.Errorf("the live heap grew by %d bytes exporting %d bytes of values: more than a row group", growth, values)
	}
	checkParquetExport(t, path, t0, n, rows, 7)
}

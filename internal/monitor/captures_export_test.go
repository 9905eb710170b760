package monitor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// insertCaptures stores n one-or-two-row captures of "churn" directly through the store, a second apart from
// t0, alternating versions 1 and 2; every labelEvery-th request gets ground truth for its first row.
func insertCaptures(t testing.TB, e *env, t0 time.Time, n, labelEvery int) {
	t.Helper()
	ctx := context.Background()
	var batch []*slipway.Capture
	var fb []*slipway.Feedback
	for i := range n {
		rows := 1 + i%2
		ages, plans, preds, probs := make([]float64, rows), make([]string, rows), make([]int64, rows), make([]float64, rows)
		for r := range rows {
			ages[r], plans[r], preds[r], probs[r] = float64(20+i%50), []string{"basic", "pro"}[r], int64(i%2), float64(i%100)/100
		}
		id := fmt.Sprintf("r%07d", i)
		batch = append(batch, &slipway.Capture{Deployment: "churn", RequestID: id, ModelVersion: 1 + i%2,
			Time: t0.Add(time.Duration(i) * time.Second), Rows: rows, Protocol: ProtoV2,
			Inputs:  workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewFloat64("age", nil, ages), workerproto.NewBytes("plan", nil, plans)}),
			Outputs: workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewInt64("prediction", nil, preds), workerproto.NewFloat64("probability", nil, probs)})})
		if i%labelEvery == 0 {
			label := fmt.Sprint((i + 1) % 2)
			fb = append(fb, &slipway.Feedback{Deployment: "churn", RequestID: id, Row: 0, Label: &label, Time: t0, ReceivedAt: t0})
		}
		if len(batch) == 2048 || i == n-1 {
			if err := e.data.InsertCaptures(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := e.data.UpsertFeedback(ctx, fb); err != nil {
		t.Fatal(err)
	}
}

// The export is complete and ordered, with each row's ground truth, in both formats; version= filters.
func TestExportCapturesCompleteAndOrdered(t *testing.T) {
	e := newEnv(t, nil)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const n = 1000 // several pages
	insertCaptures(t, e, t0, n, 3)
	ctx := context.Background()
	var out bytes.Buffer
	rows, err := e.s.ExportCaptures(ctx, &out, CaptureExport{Deployment: "churn", From: t0, To: t0.Add(time.Hour), Format: ExportJSONL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := n + n/2 // every other request has two rows
	if rows != int64(wantRows) {
		t.Fatalf("%d rows exported, want %d", rows, wantRows)
	}
	sc := bufio.NewScanner(&out)
	i, row, lines := 0, 0, 0
	for sc.Scan() {
		var l struct {
			Time      time.Time          `json:"time"`
			RequestID string             `json:"request_id"`
			Version   int                `json:"version"`
			Row       int                `json:"row"`
			Inputs    map[string]any     `json:"inputs"`
			Outputs   map[string]any     `json:"outputs"`
			Label     *string            `json:"label"`
			Extra     map[string]float64 `json:"-"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d: %v: %s", lines, err, sc.Text())
		}
		if l.RequestID != fmt.Sprintf("r%07d", i) || l.Row != row || !l.Time.Equal(t0.Add(time.Duration(i)*time.Second)) || l.Version != 1+i%2 {
			t.Fatalf("line %d out of order or wrong: %s (want request %d row %d)", lines, sc.Text(), i, row)
		}
		if l.Inputs["age"] != float64(20+i%50) || l.Outputs["prediction"] != float64(i%2) || l.Inputs["plan"] != []string{"basic", "pro"}[row] {
			t.Fatalf("line %d values: %s", lines, sc.Text())
		}
		if wantLabel := i%3 == 0 && row == 0; (l.Label != nil) != wantLabel || wantLabel && *l.Label != fmt.Sprint((i+1)%2) {
			t.Fatalf("line %d ground truth: %s", lines, sc.Text())
		}
		lines++
		if row++; row == 1+i%2 {
			i, row = i+1, 0
		}
	}
	if lines != wantRows || i != n {
		t.Fatalf("%d lines for %d requests", lines, i)
	}

	// CSV of version 2 only: the odd requests, two rows each.
	out.Reset()
	if rows, err = e.s.ExportCaptures(ctx, &out, CaptureExport{Deployment: "churn", From: t0, To: t0.Add(time.Hour), Version: 2, Format: ExportCSV}, nil); err != nil || rows != n {
		t.Fatalf("csv: %d rows, %v", rows, err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "time,request_id,version,row,age,plan,output.prediction,output.probability,label,value" || len(recs) != n+1 {
		t.Fatalf("csv header %v, %d records", recs[0], len(recs))
	}
	if r := recs[1]; r[1] != "r0000001" || r[2] != "2" || r[3] != "0" || r[4] != "21" || r[5] != "basic" || r[6] != "1" || r[7] != "0.01" || r[8] != "" {
		t.Fatalf("first csv record %v", r)
	}
	if r := recs[3]; r[1] != "r0000003" || r[8] != "0" { // request 3: labelled "0" on its first row
		t.Fatalf("labelled csv record %v", r)
	}

	if _, err := e.s.ExportCaptures(ctx, io.Discard, CaptureExport{Deployment: "churn", From: t0, To: t0.Add(time.Hour), Format: "xml"}, nil); slipway.ErrorCode(err) != slipway.EINVALID {
		t.Fatalf("format xml: %v", err)
	}
}

// heapProbe records the live heap (after a collection) every so many bytes written through it.
type heapProbe struct {
	w         io.Writer
	n, next   int64
	every     int64
	base, max uint64
}

func (p *heapProbe) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.n >= p.next {
		p.next += p.every
		p.max = max(p.max, liveHeap())
	}
	return n, err
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// An export of 200,000 captured requests holds one page in memory: the live heap measured during the export
// grows by a small fraction of what it writes (a ratio, measured in the same run; no time limit).
func TestExportCapturesBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 200,000 captures")
	}
	e := newEnv(t, nil)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const n = 200_000
	start := time.Now()
	insertCaptures(t, e, t0, n, 30)
	t.Logf("inserted in %s", time.Since(start))
	start = time.Now()
	probe := &heapProbe{w: io.Discard, every: 4 << 20, base: liveHeap()}
	rows, err := e.s.ExportCaptures(context.Background(), probe, CaptureExport{Deployment: "churn", From: t0, To: t0.Add(n * time.Second), Format: ExportJSONL}, nil)
	if err != nil || rows != n+n/2 {
		t.Fatalf("%d rows, %v", rows, err)
	}
	t.Logf("exported in %s", time.Since(start))
	growth := int64(probe.max) - int64(probe.base)
	t.Logf("exported %d rows, %d MB; live heap grew by at most %.2f MB (%.2f%% of the output)", rows, probe.n>>20,
		float64(growth)/(1<<20), 100*float64(growth)/float64(probe.n))
	if growth > probe.n/20 {
		t.Fatalf("the live heap grew by %d bytes while exporting %d: the export holds more than a page", growth, probe.n)
	}
}

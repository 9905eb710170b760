package monitor

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Capture export formats.
const (
	ExportJSONL = "jsonl"
	ExportCSV   = "csv"
)

// exportPage is how many captured requests an export reads at a time: what it holds in memory, whatever the
// window's length.
const exportPage = 256

// CaptureExport asks for a deployment's captures with From <= time < To (Version 0: every version).
type CaptureExport struct {
	Deployment string
	From, To   time.Time
	Version    int
	Format     string
}

// Check refuses an export that cannot be answered.
func (q CaptureExport) Check() error {
	switch {
	case q.Format != ExportJSONL && q.Format != ExportCSV && q.Format != ExportParquet:
		return invalidf("format=%q: give jsonl, csv or parquet", q.Format)
	case !q.From.Before(q.To):
		return invalidf("from must be before to")
	case q.Version < 0:
		return invalidf("version must be a version number")
	}
	return nil
}

// ExportCaptures writes the captured rows of q to w, oldest first, one captured row per line: its time,
// request id, version and row number, its inputs and outputs, and the ground truth received for it (label or
// value; empty when none). It reads the captures a page at a time, so that its memory does not grow with the
// window; flush (optional) is called after each page, for a streamed response. It returns the rows written.
func (s *Service) ExportCaptures(ctx context.Context, w io.Writer, q CaptureExport, flush func()) (int64, error) {
	if err := q.Check(); err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var enc rowEncoder = &jsonlEncoder{w: bw}
	switch q.Format {
	case ExportCSV:
		enc = &csvEncoder{w: csv.NewWriter(bw)}
	case ExportParquet:
		enc = &parquetEncoder{out: bw}
	}
	page := slipway.CapturePage{Deployment: q.Deployment, From: q.From, To: q.To, Version: q.Version, Limit: exportPage}
	var rows int64
	for {
		items, err := s.data.PageCaptures(ctx, page)
		if err != nil {
			return rows, fmt.Errorf("export the captures of %s: %w", q.Deployment, err)
		}
		for _, lc := range items {
			n, err := exportCapture(enc, lc)
			if err != nil {
				return rows, fmt.Errorf("export capture %s of %s: %w", lc.Capture.RequestID, q.Deployment, err)
			}
			rows += n
		}
		last := len(items) < page.Limit
		if err := enc.flush(); err != nil {
			return rows, err
		}
		if last {
			if err := enc.close(); err != nil {
				return rows, err
			}
		}
		if err := bw.Flush(); err != nil {
			return rows, err
		}
		if flush != nil {
			flush()
		}
		if last {
			return rows, nil
		}
		end := items[len(items)-1].Capture
		page.AfterTime, page.AfterID = end.Time, end.ID
	}
}

// exportRow is one captured row as exported.
type exportRow struct {
	c               *slipway.Capture
	row             int
	inputs, outputs []workerproto.Tensor
	truth           *slipway.Feedback
}

type rowEncoder interface {
	encode(r *exportRow) error
	flush() error // after each page of captures
	close() error // after the last
}

func exportCapture(enc rowEncoder, lc slipway.LabelledCapture) (int64, error) {
	c := lc.Capture
	in, err := workerproto.DecodeTensors(c.Inputs)
	if err != nil {
		return 0, fmt.Errorf("inputs: %w", err)
	}
	out, err := workerproto.DecodeTensors(c.Outputs)
	if err != nil {
		return 0, fmt.Errorf("outputs: %w", err)
	}
	truth := make(map[int]*slipway.Feedback, len(lc.Feedback))
	for _, f := range lc.Feedback {
		truth[f.Row] = f
	}
	for row := range c.Rows {
		if err := enc.encode(&exportRow{c: c, row: row, inputs: in, outputs: out, truth: truth[row]}); err != nil {
			return int64(row), err
		}
	}
	return int64(c.Rows), nil
}

// cellValue is a tensor's value at row as JSON would carry it: a number (nil for NaN), text, a boolean, or a
// list of them when the tensor has several elements per row; nil past the tensor's rows.
func cellValue(t *workerproto.Tensor, row int) any {
	k := rowWidth(t)
	if len(t.Shape) == 0 || row >= int(t.Shape[0]) {
		return nil
	}
	if k == 1 {
		return elemValue(t, row)
	}
	vals := make([]any, k)
	for j := range k {
		vals[j] = elemValue(t, row*k+j)
	}
	return vals
}

func elemValue(t *workerproto.Tensor, i int) any {
	if t.Datatype == "BYTES" {
		return string(t.Strings[i])
	}
	dt := workerproto.ParseDatatype(t.Datatype)
	n := workerproto.ReadNumber(dt, t.Data, i)
	switch {
	case dt == workerproto.BOOL:
		return n.Mag != 0
	case n.IsFloat && (math.IsNaN(n.F) || math.IsInf(n.F, 0)):
		return nil
	case n.IsFloat:
		return n.F
	}
	if v, ok := n.Int64(); ok {
		return v
	}
	return n.Float64()
}

type jsonlEncoder struct {
	w *bufio.Writer
}

// jsonlLine is one exported row in JSON Lines. Columns keep their order through ordered keys.
type jsonlLine struct {
	Time      time.Time       `json:"time"`
	RequestID string          `json:"request_id"`
	Version   int             `json:"version"`
	Row       int             `json:"row"`
	Inputs    json.RawMessage `json:"inputs"`
	Outputs   json.RawMessage `json:"outputs"`
	Label     *string         `json:"label"`
	Value     *float64        `json:"value"`
}

func (e *jsonlEncoder) encode(r *exportRow) error {
	l := jsonlLine{Time: r.c.Time, RequestID: r.c.RequestID, Version: r.c.ModelVersion, Row: r.row,
		Inputs: orderedObject(r.inputs, r.row), Outputs: orderedObject(r.outputs, r.row)}
	if r.truth != nil {
		l.Label, l.Value = r.truth.Label, r.truth.Value
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if _, err := e.w.Write(b); err != nil {
		return err
	}
	return e.w.WriteByte('\n')
}

func (e *jsonlEncoder) flush() error { return nil }
func (e *jsonlEncoder) close() error { return nil }

// orderedObject is {name: value} of the tensors at row, in the tensors' order (a Go map would sort them).
func orderedObject(ts []workerproto.Tensor, row int) json.RawMessage {
	b := []byte{'{'}
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		name, _ := json.Marshal(ts[i].Name)
		v, _ := json.Marshal(cellValue(&ts[i], row))
		b = append(append(append(b, name...), ':'), v...)
	}
	return append(b, '}')
}

// csvEncoder writes one column per input and per output ("output." and the name); the columns are those of
// the first captured request, later requests' other columns are left out (export one version at a time when
// versions differ).
type csvEncoder struct {
	w               *csv.Writer
	inputs, outputs []string
	rec             []string
}

func (e *csvEncoder) encode(r *exportRow) error {
	if e.inputs == nil {
		e.inputs, e.outputs = names(r.inputs), names(r.outputs)
		header := append([]string{"time", "request_id", "version", "row"}, e.inputs...)
		for _, o := range e.outputs {
			header = append(header, "output."+o)
		}
		if err := e.w.Write(append(header, "label", "value")); err != nil {
			return err
		}
	}
	e.rec = append(e.rec[:0], r.c.Time.Format(time.RFC3339Nano), r.c.RequestID, strconv.Itoa(r.c.ModelVersion), strconv.Itoa(r.row))
	e.rec = appendCells(e.rec, e.inputs, r.inputs, r.row)
	e.rec = appendCells(e.rec, e.outputs, r.outputs, r.row)
	label, value := "", ""
	if f := r.truth; f != nil && f.Label != nil {
		label = *f.Label
	}
	if f := r.truth; f != nil && f.Value != nil {
		value = strconv.FormatFloat(*f.Value, 'g', -1, 64)
	}
	return e.w.Write(append(e.rec, label, value))
}

func (e *csvEncoder) flush() error {
	e.w.Flush()
	return e.w.Error()
}

func (e *csvEncoder) close() error { return e.flush() }

func names(ts []workerproto.Tensor) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// appendCells appends the cells of the columns named cols (empty: the request has no such column).
func appendCells(rec, cols []string, ts []workerproto.Tensor, row int) []string {
	for _, name := range cols {
		cell := ""
		for i := range ts {
			if ts[i].Name == name {
				cell = csvCell(cellValue(&ts[i], row))
				break
			}
		}
		rec = append(rec, cell)
	}
	return rec
}

func csvCell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

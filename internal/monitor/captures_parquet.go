package monitor

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// ExportParquet is the Parquet capture export format.
const ExportParquet = "parquet"

// parquetRowGroupRows bounds a row group: the writer holds one row group's encoded columns until it is
// written out, so the export's memory is bounded by this, not by the window.
const parquetRowGroupRows = 65_536

// parquetRowGroupBytes bounds a row group by the bytes of its values as well (rows with wide tensors).
const parquetRowGroupBytes = 32 << 20

// Column kinds of the Parquet export.
const (
	pqString = iota
	pqInt
	pqDouble
	pqBool
)

// pqColumn is an input or output column of the Parquet export: the tensor it is read from, and its type,
// fixed by the first captured request that has it.
type pqColumn struct {
	name     string // the tensor's name
	field    string // the Parquet column's name
	kind     int
	repeated bool // several values per row: a list
}

// parquetEncoder writes the captured rows as one Parquet file: `time`, `request_id`, `version`, `row`, the
// input columns, `output.` + each output, `label` and `value`, in that order. Like CSV, its columns are
// those of the first captured request (the schema comes first in Parquet); a later request's other columns
// are left out and its missing ones are null.
type parquetEncoder struct {
	out             io.Writer
	w               *parquet.GenericWriter[any]
	inputs, outputs []pqColumn
	row             parquet.Row
	groupRows       int
	groupBytes      int
}

func (e *parquetEncoder) start(r *exportRow) {
	taken := map[string]bool{"time": true, "request_id": true, "version": true, "row": true, "label": true, "value": true}
	unique := func(name string) string {
		for taken[name] {
			name += "_"
		}
		taken[name] = true
		return name
	}
	for _, t := range r.inputs {
		e.inputs = append(e.inputs, pqColumnOf(&t, unique(t.Name)))
	}
	for _, t := range r.outputs {
		e.outputs = append(e.outputs, pqColumnOf(&t, unique("output."+t.Name)))
	}
	e.open()
}

// open creates the writer for the columns known (none when the window is empty: the fixed columns only).
func (e *parquetEncoder) open() {
	g := parquet.Group{
		"time":       parquet.Required(parquet.Timestamp(parquet.Millisecond)),
		"request_id": parquet.Required(parquet.String()),
		"version":    parquet.Required(parquet.Int(64)),
		"row":        parquet.Required(parquet.Int(64)),
		"label":      parquet.Optional(parquet.String()),
		"value":      parquet.Optional(parquet.Leaf(parquet.DoubleType)),
	}
	order := []string{"time", "request_id", "version", "row"}
	for _, c := range slices.Concat(e.inputs, e.outputs) {
		g[c.field] = c.node()
		order = append(order, c.field)
	}
	order = append(order, "label", "value")
	schema := parquet.NewSchema("captures", orderedGroup{Group: g, order: order})
	e.w = parquet.NewGenericWriter[any](e.out, schema, parquet.Compression(&parquet.Snappy),
		parquet.MaxRowsPerRowGroup(parquetRowGroupRows), parquet.CreatedBy("slipway", "", ""))
}

func pqColumnOf(t *workerproto.Tensor, field string) pqColumn {
	c := pqColumn{name: t.Name, field: field, repeated: rowWidth(t) > 1}
	switch dt := workerproto.ParseDatatype(t.Datatype); {
	case t.Datatype == "BYTES":
		c.kind = pqString
	case dt == workerproto.BOOL:
		c.kind = pqBool
	case strings.HasPrefix(t.Datatype, "FP"):
		c.kind = pqDouble
	default:
		c.kind = pqInt
	}
	return c
}

func (c pqColumn) node() parquet.Node {
	var leaf parquet.Node
	switch c.kind {
	case pqString:
		leaf = parquet.String()
	case pqBool:
		leaf = parquet.Leaf(parquet.BooleanType)
	case pqDouble:
		leaf = parquet.Leaf(parquet.DoubleType)
	default:
		leaf = parquet.Int(64)
	}
	if c.repeated {
		return parquet.Repeated(leaf)
	}
	return parquet.Optional(leaf)
}

// value is v (a cell's element, as elemValue reads it) as the column's kind; ok is false for a null (a NaN, or
// a value of another kind).
func (c pqColumn) value(v any) (parquet.Value, int, bool) {
	switch x := v.(type) {
	case string:
		if c.kind == pqString {
			return parquet.ByteArrayValue([]byte(x)), len(x), true
		}
	case bool:
		if c.kind == pqBool {
			return parquet.BooleanValue(x), 1, true
		}
	case int64:
		switch c.kind {
		case pqInt:
			return parquet.Int64Value(x), 8, true
		case pqDouble:
			return parquet.DoubleValue(float64(x)), 8, true
		}
	case float64:
		switch {
		case c.kind == pqDouble:
			return parquet.DoubleValue(x), 8, true
		case c.kind == pqInt && x == math.Trunc(x) && math.Abs(x) < 1<<63:
			return parquet.Int64Value(int64(x)), 8, true
		}
	}
	return parquet.Value{}, 0, false
}

// appendCell appends column col's values for the row (its leaf index): one optional value, or a list.
func (e *parquetEncoder) appendCell(c pqColumn, col int, ts []workerproto.Tensor, row int) {
	var cell any
	for i := range ts {
		if ts[i].Name == c.name {
			cell = cellValue(&ts[i], row)
			break
		}
	}
	if !c.repeated {
		if list, ok := cell.([]any); ok && len(list) > 0 {
			cell = list[0] // a wider tensor than the first request's: its first value
		}
		v, n, ok := c.value(cell)
		if !ok {
			e.row = append(e.row, parquet.NullValue().Level(0, 0, col))
			return
		}
		e.groupBytes += n
		e.row = append(e.row, v.Level(0, 1, col))
		return
	}
	list, ok := cell.([]any)
	if !ok && cell != nil {
		list = []any{cell}
	}
	rep := 0
	for _, x := range list {
		v, n, ok := c.value(x)
		if !ok {
			continue // a list cannot hold a null here: a NaN is left out
		}
		e.groupBytes += n
		e.row = append(e.row, v.Level(rep, 1, col))
		rep = 1
	}
	if rep == 0 {
		e.row = append(e.row, parquet.NullValue().Level(0, 0, col)) // an empty list
	}
}

func (e *parquetEncoder) encode(r *exportRow) error {
	if e.w == nil {
		e.start(r)
	}
	e.row = append(e.row[:0],
		parquet.Int64Value(r.c.Time.UnixMilli()).Level(0, 0, 0),
		parquet.ByteArrayValue([]byte(r.c.RequestID)).Level(0, 0, 1),
		parquet.Int64Value(int64(r.c.ModelVersion)).Level(0, 0, 2),
		parquet.Int64Value(int64(r.row)).Level(0, 0, 3))
	col := 4
	for _, c := range e.inputs {
		e.appendCell(c, col, r.inputs, r.row)
		col++
	}
	for _, c := range e.outputs {
		e.appendCell(c, col, r.outputs, r.row)
		col++
	}
	label, value := parquet.NullValue().Level(0, 0, col), parquet.NullValue().Level(0, 0, col+1)
	if f := r.truth; f != nil && f.Label != nil {
		label = parquet.ByteArrayValue([]byte(*f.Label)).Level(0, 1, col)
	}
	if f := r.truth; f != nil && f.Value != nil {
		value = parquet.DoubleValue(*f.Value).Level(0, 1, col+1)
	}
	e.row = append(e.row, label, value)
	e.groupBytes += 24 + len(r.c.RequestID)
	if _, err := e.w.WriteRows([]parquet.Row{e.row}); err != nil {
		return fmt.Errorf("write a parquet row: %w", err)
	}
	e.groupRows++
	if e.groupRows >= parquetRowGroupRows || e.groupBytes >= parquetRowGroupBytes {
		e.groupRows, e.groupBytes = 0, 0
		if err := e.w.Flush(); err != nil { // the row group goes out: memory stays bounded
			return fmt.Errorf("write a parquet row group: %w", err)
		}
	}
	return nil
}

// flush leaves the row group open: a page of captures is far smaller than a row group worth having.
func (e *parquetEncoder) flush() error { return nil }

// close writes the last row group and the footer.
func (e *parquetEncoder) close() error {
	if e.w == nil {
		e.open()
	}
	if err := e.w.Close(); err != nil {
		return fmt.Errorf("write the parquet footer: %w", err)
	}
	return nil
}

// orderedGroup is a Parquet group whose fields keep the given order (a parquet.Group sorts them by name), so
// that the file's columns read as the export's other formats do.
type orderedGroup struct {
	parquet.Group
	order []string
}

func (g orderedGroup) Fields() []parquet.Field {
	fields := slices.Clone(g.Group.Fields())
	slices.SortStableFunc(fields, func(a, b parquet.Field) int {
		return slices.Index(g.order, a.Name()) - slices.Index(g.order, b.Name())
	})
	return fields
}

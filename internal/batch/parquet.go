package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/slipway-ml/slipway"
)

// parquetSource reads a flat Parquet file (one leaf column per field) row group by row group.
type parquetSource struct {
	f       *os.File
	pf      *parquet.File
	cols    []srcColumn
	units   []time.Duration // per column: timestamp unit, or 24h for DATE, 0 otherwise
	readers []*columnValues // per selected column
	sel     []selected
	row     int64
	chunkN  int
	intern  map[string]string // text values seen, shared by the chunks' string columns
}

// newParquetSource reads the schema of f; the source owns f from here, and closes it if it fails.
func newParquetSource(f *os.File) (_ *parquetSource, err error) {
	defer func() {
		if err != nil {
			_ = f.Close() // read-only: the error returned says what is wrong with the input
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("batch: stat parquet input: %w", err)
	}
	if st.Size() == 0 {
		return nil, slipway.Errorf(slipway.EINVALID, "the input file is empty: a Parquet input needs a Parquet file with at least a schema")
	}
	pf, err := openParquet(f, st.Size())
	if err != nil {
		return nil, slipway.Wrap(slipway.EINVALID, err, "the input is not a readable Parquet file: %v", err)
	}
	s := &parquetSource{f: f, pf: pf}
	for _, field := range pf.Schema().Fields() {
		if !field.Leaf() || field.Repeated() {
			return nil, slipway.Errorf(slipway.EINVALID, "Parquet column %q is nested or repeated: batch inputs take flat tables (one value per column per row)", field.Name())
		}
		k, unit := parquetKind(field.Type())
		s.cols = append(s.cols, srcColumn{name: field.Name(), kind: k})
		s.units = append(s.units, unit)
	}
	return s, nil
}

// openParquet opens a file, turning the library's panics on malformed input into errors.
func openParquet(r io.ReaderAt, size int64) (pf *parquet.File, err error) {
	defer func() {
		if v := recover(); v != nil {
			pf, err = nil, fmt.Errorf("malformed file (%v)", v)
		}
	}()
	return parquet.OpenFile(r, size)
}

// parquetKind maps a leaf type to a column kind (kindNone: a type batch inputs do not read).
func parquetKind(t parquet.Type) (kind, time.Duration) {
	if lt := t.LogicalType(); lt != nil {
		switch v := lt.Value.(type) {
		case *format.TimestampType:
			if v.Unit.Value != nil {
				return kindTime, v.Unit.Value.Duration()
			}
		case *format.DateType:
			return kindTime, 24 * time.Hour
		case *format.DecimalType:
			return kindNone, 0
		}
	}
	switch t.Kind() {
	case parquet.Boolean:
		return kindBool, 0
	case parquet.Int32, parquet.Int64:
		return kindInt, 0
	case parquet.Float, parquet.Double:
		return kindFloat, 0
	case parquet.ByteArray:
		return kindString, 0
	}
	return kindNone, 0
}

func (s *parquetSource) columns() []srcColumn { return s.cols }

func (s *parquetSource) sample(ctx context.Context, cols []int, n int) ([]kind, error) {
	out := make([]kind, len(cols))
	for j, c := range cols {
		out[j] = s.cols[c].kind
	}
	return out, nil
}

func (s *parquetSource) total(ctx context.Context) (int64, error) { return s.pf.NumRows(), nil }

func (s *parquetSource) start(ctx context.Context, sel []selected) error {
	for _, sl := range sel {
		if s.cols[sl.src].kind == kindNone {
			return slipway.Errorf(slipway.EINVALID, "Parquet column %q has a type batch inputs do not read (%s): cast it to a number, string, boolean or timestamp", sl.name, s.pf.Schema().Fields()[sl.src].Type())
		}
	}
	s.sel = sel
	s.intern = map[string]string{}
	s.readers = make([]*columnValues, len(sel))
	for j, sl := range sel {
		cv := &columnValues{buf: make([]parquet.Value, 1024)}
		for _, rg := range s.pf.RowGroups() {
			cv.chunks = append(cv.chunks, rg.ColumnChunks()[sl.src])
		}
		s.readers[j] = cv
	}
	return nil
}

// columnValues reads one column across the file's row groups. Reading column by column (the file's own
// layout) instead of assembling rows halved the read's CPU: the input is flat, so every column has exactly
// one value per row and the columns stay aligned.
type columnValues struct {
	chunks []parquet.ColumnChunk // the column's chunk in each row group, in order
	next   int                   // next row group to open
	r      parquet.ColumnChunkValueReader
	buf    []parquet.Value
	pend   []parquet.Value // values read but not yet returned
}

// values returns the pending values, reading more when there are none; io.EOF after the last row group.
// Byte-array values point into the current page: they are valid until the next call.
func (cv *columnValues) values() ([]parquet.Value, error) {
	for len(cv.pend) == 0 {
		if cv.r == nil {
			if cv.next == len(cv.chunks) {
				return nil, io.EOF
			}
			cv.r = parquet.NewColumnChunkValueReader(cv.chunks[cv.next])
			cv.next++
		}
		m, err := cv.r.ReadValues(cv.buf)
		cv.pend = cv.buf[:m]
		if errors.Is(err, io.EOF) {
			_ = cv.r.Close() // every value was read: closing only releases the chunk's pages
			cv.r = nil
		} else if err != nil {
			return nil, err
		}
	}
	return cv.pend, nil
}

func (cv *columnValues) close() error {
	if cv.r == nil {
		return nil
	}
	err := cv.r.Close()
	cv.r = nil
	return err
}

func (s *parquetSource) next(ctx context.Context, n int) (c *chunk, err error) {
	defer func() {
		if v := recover(); v != nil {
			c, err = nil, slipway.Errorf(slipway.EINVALID, "the Parquet input is malformed after row %d: %v", s.row, v)
		}
	}()
	c = newChunk(s.sel, n)
	c.index, c.start = s.chunkN, s.row
	got := -1
	for j, sl := range s.sel {
		cv, col, k := s.readers[j], c.cols[j], 0
		for k < n {
			vals, err := cv.values()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, slipway.Wrap(slipway.EINVALID, err, "the Parquet input is malformed after row %d: %v", s.row+int64(k), err)
			}
			take := min(len(vals), n-k)
			for _, v := range vals[:take] {
				if !s.appendFast(col, v, sl.src) {
					if err := s.appendValue(col, v, sl.src); err != nil {
						col.appendNull()
						c.markBad(k, fmt.Sprintf("column %q: %v", sl.name, err))
					}
				}
				k++
			}
			cv.pend = vals[take:]
		}
		if got >= 0 && k != got {
			return nil, slipway.Errorf(slipway.EINVALID, "the Parquet input is malformed after row %d: column %q has %d values where %q has %d", s.row, sl.name, k, s.sel[0].name, got)
		}
		got = k
	}
	c.n = max(got, 0)
	if c.n == 0 {
		return nil, nil
	}
	s.row += int64(c.n)
	s.chunkN++
	return c, nil
}

// appendValue converts one Parquet value to the column's kind.
func (s *parquetSource) appendValue(col *column, v parquet.Value, src int) error {
	if v.IsNull() {
		col.appendNull()
		return nil
	}
	var x any
	switch v.Kind() {
	case parquet.Boolean:
		x = v.Boolean()
	case parquet.Int32:
		x = int64(v.Int32())
	case parquet.Int64:
		x = v.Int64()
	case parquet.Float:
		x = float64(v.Float())
	case parquet.Double:
		x = v.Double()
	case parquet.ByteArray, parquet.FixedLenByteArray:
		x = string(v.ByteArray())
	default:
		return fmt.Errorf("unsupported Parquet value %s", v.Kind())
	}
	if unit := s.units[src]; unit > 0 {
		if n, ok := x.(int64); ok {
			x = timeOf(n, unit)
		}
	}
	return col.appendAny(x)
}

// appendFast appends the common cases (numbers to float/int columns, text to string columns) without boxing
// the value in an interface, and reports whether it did. Text values are interned: categorical columns
// repeat a few values, and a string per row was most of the read's allocations.
func (s *parquetSource) appendFast(col *column, v parquet.Value, src int) bool {
	if s.units[src] > 0 || v.IsNull() {
		return false
	}
	switch col.kind {
	case kindFloat:
		switch v.Kind() {
		case parquet.Double:
			col.f = append(col.f, v.Double())
		case parquet.Float:
			col.f = append(col.f, float64(v.Float()))
		case parquet.Int64:
			col.f = append(col.f, float64(v.Int64()))
		case parquet.Int32:
			col.f = append(col.f, float64(v.Int32()))
		default:
			return false
		}
	case kindInt:
		switch v.Kind() {
		case parquet.Int64:
			col.i = append(col.i, v.Int64())
		case parquet.Int32:
			col.i = append(col.i, int64(v.Int32()))
		default:
			return false
		}
	case kindString:
		if k := v.Kind(); k != parquet.ByteArray && k != parquet.FixedLenByteArray {
			return false
		}
		b := v.ByteArray()
		str, ok := s.intern[string(b)] // no allocation for the lookup
		if !ok {
			str = string(b)
			if len(s.intern) < 4096 && len(b) <= 64 {
				s.intern[str] = str
			}
		}
		col.s = append(col.s, str)
	default:
		return false
	}
	col.markValue()
	return true
}

func timeOf(n int64, unit time.Duration) time.Time {
	if unit == 24*time.Hour {
		return time.Unix(n*86400, 0).UTC()
	}
	if unit >= time.Second || n > math.MaxInt64/int64(unit) || n < math.MinInt64/int64(unit) {
		return time.Unix(0, 0).Add(time.Duration(n) * unit).UTC()
	}
	return time.Unix(0, n*int64(unit)).UTC()
}

func (s *parquetSource) close() error {
	errs := make([]error, 0, len(s.readers)+1)
	for _, cv := range s.readers {
		errs = append(errs, cv.close())
	}
	return errors.Join(append(errs, s.f.Close())...)
}

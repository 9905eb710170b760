package inference

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// DecodeMLflowCSV decodes a text/csv scoring request: a header row of column names, then one row per
// record, each with exactly one field per header column. Columns are typed by the schema when given,
// else inferred per column: all integers → INT64; all numbers → FP64; all true/false → BOOL; anything
// else → BYTES. An empty field is NaN in a float column and "" in a string column (pandas' reading);
// in integer and bool columns it is an error. The request is always Tabular.
func DecodeMLflowCSV(body []byte, schema *slipway.Schema) (*MLflowRequest, error) {
	m, err := newMLDecoder(nil, schema)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))))
	r.FieldsPerRecord = -1 // checked here, with a better message
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, invalid("", "empty CSV: send a header row with the column names, then the rows")
	}
	if err != nil {
		return nil, csvError(err)
	}
	for j, name := range header {
		where := fmt.Sprintf("line 1, field %d", j+1)
		if _, err := checkName(name, where); err != nil {
			return nil, err
		}
		if _, err := m.addCol(name, where, loc{}); err != nil {
			return nil, err
		}
	}
	if err := m.checkComplete("line 1"); err != nil {
		return nil, err
	}
	vals := make([][]string, len(header))
	var lines []int
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(header) {
			return nil, invalid(fmt.Sprintf("line %d", line), "expected %d fields (one per header column), got %d", len(header), len(rec))
		}
		for j, v := range rec {
			vals[j] = append(vals[j], v)
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return nil, invalid("", "the CSV has a header but no rows")
	}
	out := make([]workerproto.Tensor, len(header))
	for j, c := range m.cols {
		if out[j], err = csvColumn(c, vals[j], lines); err != nil {
			return nil, err
		}
	}
	if m.schema != nil {
		ordered := make([]workerproto.Tensor, 0, len(out))
		for _, sc := range m.schema {
			ordered = append(ordered, out[m.find(sc.Name)])
		}
		out = ordered
	}
	return &MLflowRequest{Columns: out, Tabular: true}, nil
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return invalid(fmt.Sprintf("line %d, column %d", pe.Line, pe.Column), "invalid CSV: %v", pe.Err)
	}
	return invalid("", "invalid CSV: %v", err)
}

// csvColumn types the text values of one column.
func csvColumn(c *rawCol, vals []string, lines []int) (workerproto.Tensor, error) {
	dt, label := workerproto.NoDatatype, ""
	if c.spec != nil {
		dt, label = schemaDtype(c.spec.Dtype), c.spec.Dtype
	} else {
		dt = InferTextType(vals)
		label = dt.String()
	}
	col := newColumn(dt, len(vals))
	for i, v := range vals {
		var err error
		if col.data, err = appendCSV(col, v); err != nil {
			return workerproto.Tensor{}, invalid(fmt.Sprintf("line %d, column %q", lines[i], c.name), "%v (%s)", err, label)
		}
	}
	return col.tensor(c.name, []int64{int64(len(vals))}), nil
}

// appendCSV converts one field and appends it to col (its data, or its strings for BYTES).
func appendCSV(col *column, v string) ([]byte, error) {
	dt := col.dt
	switch {
	case dt == workerproto.BYTES:
		col.strs.AddString(v)
		return col.data, nil
	case dt == workerproto.BOOL:
		b, ok := csvBool(strings.TrimSpace(v))
		if !ok {
			return col.data, fmt.Errorf("expected true or false, got %s", quoteField(v))
		}
		if b {
			return append(col.data, 1), nil
		}
		return append(col.data, 0), nil
	case dt.IsFloat():
		t := strings.TrimSpace(v)
		if t == "" {
			return workerproto.AppendFloat(col.data, dt, math.NaN()), nil
		}
		bits := 64
		if dt == workerproto.FP32 {
			bits = 32
		}
		f, err := strconv.ParseFloat(t, bits)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return col.data, fmt.Errorf("expected a number, got %s", quoteField(v))
		}
		if err != nil && math.IsInf(f, 0) || !workerproto.FloatFits(dt, f) {
			return col.data, fmt.Errorf("%s is out of range", quoteField(v))
		}
		return workerproto.AppendFloat(col.data, dt, f), nil
	}
	t := strings.TrimSpace(v)
	if t == "" {
		return col.data, errors.New("missing value")
	}
	neg, mag, ok := csvInt(t)
	if !ok {
		f, err := strconv.ParseFloat(t, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return col.data, fmt.Errorf("expected an integer, got %s", quoteField(v))
		}
		neg, mag = f < 0, uint64(math.Abs(f))
	}
	if !workerproto.IntFits(dt, neg, mag) {
		return col.data, fmt.Errorf("%s is out of range", quoteField(v))
	}
	return workerproto.AppendInt(col.data, dt, neg, mag), nil
}

func quoteField(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("%.40q…", v)
	}
	return strconv.Quote(v)
}

// csvInt parses [+-]digits into sign and magnitude.
func csvInt(t string) (neg bool, mag uint64, ok bool) {
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg, t = t[0] == '-', t[1:]
	}
	if t == "" {
		return false, 0, false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < '0' || c > '9' {
			return false, 0, false
		}
		d := uint64(c - '0')
		if mag > (math.MaxUint64-d)/10 {
			return false, 0, false
		}
		mag = mag*10 + d
	}
	return neg, mag, true
}

// csvBool recognises true/false in the spellings pandas reads as booleans, plus 1 and 0.
func csvBool(t string) (value, ok bool) {
	switch t {
	case "true", "True", "TRUE", "1":
		return true, true
	case "false", "False", "FALSE", "0":
		return false, true
	}
	return false, false
}

// InferTextType picks the datatype of a column from its text values (CSV fields), the way pandas'
// read_csv does: all integers → INT64; all numbers → FP64; all true/false → BOOL; anything else → BYTES.
// Empty values are missing: they make an integer column FP64 (NaN) and a bool column BYTES, and a
// column of nothing but empty values is FP64, one of no values at all INT64.
func InferTextType(vals []string) workerproto.Datatype {
	ints, nums, bools, empty := true, true, true, false
	for _, v := range vals {
		t := strings.TrimSpace(v)
		if t == "" {
			empty = true
			continue
		}
		if ints {
			neg, mag, ok := csvInt(t)
			ints = ok && workerproto.IntFits(workerproto.INT64, neg, mag)
		}
		if nums && !ints {
			_, err := strconv.ParseFloat(t, 64)
			nums = err == nil || errors.Is(err, strconv.ErrRange)
		}
		if bools {
			switch t {
			case "true", "True", "TRUE", "false", "False", "FALSE":
			default:
				bools = false
			}
		}
	}
	switch {
	case ints && !empty:
		return workerproto.INT64
	case ints || nums:
		return workerproto.FP64 // all numbers (or all empty): empty fields are NaN
	case bools && !empty:
		return workerproto.BOOL
	}
	return workerproto.BYTES
}

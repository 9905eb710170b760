package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// kind is the value type of a column as it travels from input to output.
type kind uint8

const (
	kindNone kind = iota
	kindInt
	kindFloat
	kindString
	kindBool
	kindTime
)

func (k kind) String() string {
	return [...]string{"unknown", "integer", "float", "string", "boolean", "timestamp"}[k]
}

// column holds one column of a chunk. Exactly one value slice is used, by kind; null marks missing values
// (nil when there are none).
type column struct {
	kind kind
	i    []int64
	f    []float64
	s    []string
	b    []bool
	t    []time.Time
	null []bool
}

func newColumn(k kind, capacity int) *column {
	c := &column{kind: k}
	switch k {
	case kindInt:
		c.i = make([]int64, 0, capacity)
	case kindFloat:
		c.f = make([]float64, 0, capacity)
	case kindString:
		c.s = make([]string, 0, capacity)
	case kindBool:
		c.b = make([]bool, 0, capacity)
	case kindTime:
		c.t = make([]time.Time, 0, capacity)
	}
	return c
}

func (c *column) len() int {
	switch c.kind {
	case kindInt:
		return len(c.i)
	case kindFloat:
		return len(c.f)
	case kindString:
		return len(c.s)
	case kindBool:
		return len(c.b)
	case kindTime:
		return len(c.t)
	}
	return 0
}

// appendNull adds a missing value (NaN for floats).
func (c *column) appendNull() {
	n := c.len()
	if c.null == nil {
		c.null = make([]bool, n, n+64)
	}
	switch c.kind {
	case kindInt:
		c.i = append(c.i, 0)
	case kindFloat:
		c.f = append(c.f, math.NaN())
	case kindString:
		c.s = append(c.s, "")
	case kindBool:
		c.b = append(c.b, false)
	case kindTime:
		c.t = append(c.t, time.Time{})
	}
	c.null = append(c.null, true)
}

func (c *column) markValue() {
	if c.null != nil {
		c.null = append(c.null, false)
	}
}

func (c *column) isNull(r int) bool { return c.null != nil && c.null[r] }

// appendText parses a text field (CSV) into the column's kind. An empty field is a missing value: NaN for
// floats, "" for strings (pandas' reading), null otherwise.
func (c *column) appendText(v string) error {
	switch c.kind {
	case kindString:
		c.s = append(c.s, v)
		c.markValue()
		return nil
	}
	t := strings.TrimSpace(v)
	if t == "" {
		c.appendNull()
		return nil
	}
	switch c.kind {
	case kindFloat:
		f, err := strconv.ParseFloat(t, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("expected a number, got %s", quote(v))
		}
		c.f = append(c.f, f)
	case kindInt:
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(t, 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return fmt.Errorf("expected an integer, got %s", quote(v))
			}
			n = int64(f)
		}
		c.i = append(c.i, n)
	case kindBool:
		switch t {
		case "true", "True", "TRUE", "1":
			c.b = append(c.b, true)
		case "false", "False", "FALSE", "0":
			c.b = append(c.b, false)
		default:
			return fmt.Errorf("expected true or false, got %s", quote(v))
		}
	case kindTime:
		tm, err := parseTime(t)
		if err != nil {
			return err
		}
		c.t = append(c.t, tm)
	}
	c.markValue()
	return nil
}

func parseTime(t string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if tm, err := time.Parse(layout, t); err == nil {
			return tm, nil
		}
	}
	return time.Time{}, fmt.Errorf("expected a timestamp (RFC 3339), got %s", quote(t))
}

// appendAny adds a decoded value (JSON Lines, SQL rows): nil, bool, int64, float64, string, []byte,
// time.Time, json.Number-like strings.
func (c *column) appendAny(v any) error {
	if v == nil {
		c.appendNull()
		return nil
	}
	switch c.kind {
	case kindString:
		switch x := v.(type) {
		case string:
			c.s = append(c.s, x)
		case []byte:
			c.s = append(c.s, string(x))
		case int64, float64, bool:
			c.s = append(c.s, fmt.Sprint(x))
		case time.Time:
			c.s = append(c.s, x.Format(time.RFC3339Nano))
		default:
			return fmt.Errorf("expected a string, got %T", v)
		}
	case kindFloat:
		switch x := v.(type) {
		case float64:
			c.f = append(c.f, x)
		case float32:
			c.f = append(c.f, float64(x))
		case int64:
			c.f = append(c.f, float64(x))
		case int32:
			c.f = append(c.f, float64(x))
		case int:
			c.f = append(c.f, float64(x))
		case string:
			return c.appendText(x)
		case []byte:
			return c.appendText(string(x))
		default:
			return fmt.Errorf("expected a number, got %s", describe(v))
		}
	case kindInt:
		switch x := v.(type) {
		case int64:
			c.i = append(c.i, x)
		case int32:
			c.i = append(c.i, int64(x))
		case int:
			c.i = append(c.i, int64(x))
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return fmt.Errorf("expected an integer, got %v", x)
			}
			c.i = append(c.i, int64(x))
		case string:
			return c.appendText(x)
		case []byte:
			return c.appendText(string(x))
		default:
			return fmt.Errorf("expected an integer, got %s", describe(v))
		}
	case kindBool:
		switch x := v.(type) {
		case bool:
			c.b = append(c.b, x)
		case int64:
			if x != 0 && x != 1 {
				return fmt.Errorf("expected true or false, got %d", x)
			}
			c.b = append(c.b, x == 1)
		case string:
			return c.appendText(x)
		default:
			return fmt.Errorf("expected true or false, got %s", describe(v))
		}
	case kindTime:
		switch x := v.(type) {
		case time.Time:
			c.t = append(c.t, x)
		case string:
			return c.appendText(x)
		case []byte:
			return c.appendText(string(x))
		default:
			return fmt.Errorf("expected a timestamp, got %s", describe(v))
		}
	}
	c.markValue()
	return nil
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return "string " + quote(x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case float64:
		return fmt.Sprintf("number %v", x)
	}
	return fmt.Sprintf("%T", v)
}

func quote(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("%.40q…", v)
	}
	return strconv.Quote(v)
}

// take returns the rows idx of c, in that order.
func (c *column) take(idx []int) *column {
	out := newColumn(c.kind, len(idx))
	if c.null != nil {
		out.null = make([]bool, len(idx))
	}
	for j, r := range idx {
		switch c.kind {
		case kindInt:
			out.i = append(out.i, c.i[r])
		case kindFloat:
			out.f = append(out.f, c.f[r])
		case kindString:
			out.s = append(out.s, c.s[r])
		case kindBool:
			out.b = append(out.b, c.b[r])
		case kindTime:
			out.t = append(out.t, c.t[r])
		}
		if c.null != nil {
			out.null[j] = c.null[r]
		}
	}
	return out
}

// value returns row r as a Go value for a database driver (nil for null; NaN is null too).
func (c *column) value(r int) any {
	if c.isNull(r) {
		return nil
	}
	switch c.kind {
	case kindInt:
		return c.i[r]
	case kindFloat:
		if math.IsNaN(c.f[r]) {
			return nil
		}
		return c.f[r]
	case kindString:
		return c.s[r]
	case kindBool:
		return c.b[r]
	case kindTime:
		return c.t[r]
	}
	return nil
}

// tensorKind maps a schema dtype (numpy, MLflow or OIP names) to the column kind that carries it and the
// datatype the model receives.
func tensorKind(dtype string) (kind, string, bool) {
	switch strings.ToLower(dtype) {
	case "float64", "double", "fp64":
		return kindFloat, "FP64", true
	case "float32", "float", "fp32":
		return kindFloat, "FP32", true
	case "int64", "long", "int", "int32", "integer", "int16", "int8", "uint64", "uint32", "uint16", "uint8":
		return kindInt, "INT64", true
	case "bool", "boolean":
		return kindBool, "BOOL", true
	case "string", "str", "object", "binary", "bytes", "datetime", "bytes_":
		return kindString, "BYTES", true
	}
	return kindNone, "", false
}

// tensor encodes rows idx of c as a model input column of datatype dt.
func (c *column) tensor(name, dt string, idx []int) (workerproto.Tensor, error) {
	n := len(idx)
	t := workerproto.Tensor{Name: name, Datatype: dt, Shape: []int64{int64(n)}}
	switch dt {
	case "FP64", "FP32":
		d := workerproto.ParseDatatype(dt)
		t.Data = make([]byte, 0, d.Size()*n)
		for _, r := range idx {
			t.Data = workerproto.AppendFloat(t.Data, d, c.float(r))
		}
	case "INT64":
		t.Data = make([]byte, 0, 8*n)
		for _, r := range idx {
			t.Data = binary.LittleEndian.AppendUint64(t.Data, uint64(c.i[r]))
		}
	case "BOOL":
		t.Data = make([]byte, n)
		for j, r := range idx {
			if c.b[r] {
				t.Data[j] = 1
			}
		}
	case "BYTES":
		if c.kind != kindString {
			t.Strings = make([][]byte, n)
			for j, r := range idx {
				t.Strings[j] = []byte(c.text(r))
			}
			break
		}
		size := 0
		for _, r := range idx {
			size += len(c.s[r])
		}
		strs := workerproto.NewBytesBuilder(n, size)
		for _, r := range idx {
			if c.isNull(r) {
				strs.AddString("")
			} else {
				strs.AddString(c.s[r])
			}
		}
		t.Strings = strs.Strings()
	default:
		return t, fmt.Errorf("batch: no encoding for %s", dt)
	}
	return t, nil
}

func (c *column) float(r int) float64 {
	switch c.kind {
	case kindFloat:
		return c.f[r]
	case kindInt:
		if c.isNull(r) {
			return math.NaN()
		}
		return float64(c.i[r])
	}
	return math.NaN()
}

// text formats row r as text (CSV output, BYTES inputs).
func (c *column) text(r int) string {
	if c.isNull(r) {
		return ""
	}
	switch c.kind {
	case kindInt:
		return strconv.FormatInt(c.i[r], 10)
	case kindFloat:
		if math.IsNaN(c.f[r]) {
			return ""
		}
		return strconv.FormatFloat(c.f[r], 'g', -1, 64)
	case kindString:
		return c.s[r]
	case kindBool:
		return strconv.FormatBool(c.b[r])
	case kindTime:
		return c.t[r].UTC().Format(time.RFC3339Nano)
	}
	return ""
}

// fromTensor turns a model output (or one of its columns, for [N, K] outputs) into a column.
func fromTensor(t workerproto.Tensor, col, width int) (*column, error) {
	n := int(t.Shape[0])
	dt := workerproto.ParseDatatype(t.Datatype)
	at := func(r int) int { return r*width + col }
	var c *column
	switch {
	case dt.IsFloat():
		c = newColumn(kindFloat, n)
		for r := range n {
			c.f = append(c.f, workerproto.ReadFloat(dt, t.Data, at(r)))
		}
	case dt.IsInt():
		c = newColumn(kindInt, n)
		for r := range n {
			v, ok := workerproto.ReadNumber(dt, t.Data, at(r)).Int64()
			if !ok { // a UINT64 above 2^63-1
				return nil, fmt.Errorf("output %q row %d: %s does not fit a signed 64-bit integer", t.Name, r, workerproto.ReadNumber(dt, t.Data, at(r)))
			}
			c.i = append(c.i, v)
		}
	case dt == workerproto.BOOL:
		c = newColumn(kindBool, n)
		for r := range n {
			c.b = append(c.b, t.Data[at(r)] != 0)
		}
	case dt == workerproto.BYTES:
		c = newColumn(kindString, n)
		for r := range n {
			c.s = append(c.s, string(t.Strings[at(r)]))
		}
	default:
		return nil, fmt.Errorf("output %q has unsupported datatype %s", t.Name, t.Datatype)
	}
	return c, nil
}

// kindOfDatatype is the column kind an output tensor of datatype dt produces.
func kindOfDatatype(dt string) kind { return kindOf(workerproto.ParseDatatype(dt)) }

// kindOf is the column kind that carries values of datatype d.
func kindOf(d workerproto.Datatype) kind {
	switch {
	case d.IsFloat():
		return kindFloat
	case d.IsInt():
		return kindInt
	case d == workerproto.BOOL:
		return kindBool
	case d == workerproto.BYTES:
		return kindString
	}
	return kindNone
}

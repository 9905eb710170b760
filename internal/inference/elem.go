package inference

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// column accumulates the elements of one tensor from JSON tokens, converting each to the datatype with
// range checks.
type column struct {
	dt    workerproto.Datatype
	col   string // the column's name in messages; "" for OIP tensors, where messages name the datatype
	label string // the column's dtype as the user wrote it (int64), when col is set
	data  []byte
	strs  workerproto.BytesBuilder // the elements of a BYTES column
	n     int
}

func newColumn(dt workerproto.Datatype, capacity int) *column {
	c := &column{}
	c.init(dt, capacity, nil)
	return c
}

// init empties c for capacity elements of dt. A numeric column's data is cut from *room when it has space
// (and *room advances), its capacity capped so that the column never writes into the next one's share.
func (c *column) init(dt workerproto.Datatype, capacity int, room *[]byte) {
	*c = column{dt: dt}
	if dt == workerproto.BYTES {
		c.strs = workerproto.NewBytesBuilder(capacity, 0)
		return
	}
	need := capacity * dt.Size()
	if room != nil && len(*room) >= need {
		c.data = (*room)[:0:need]
		*room = (*room)[need:]
		return
	}
	c.data = make([]byte, 0, need)
}

// tensor returns the finished tensor.
func (c *column) tensor(name string, shape []int64) workerproto.Tensor {
	t := workerproto.Tensor{Name: name, Datatype: c.dt.String(), Shape: shape}
	if c.dt != workerproto.BYTES {
		t.Data = c.data
		if t.Data == nil {
			t.Data = []byte{}
		}
		return t
	}
	t.Strings = c.strs.Strings()
	return t
}

func (c *column) expected(want string, src []byte, t tok) error {
	return fmt.Errorf("expected %s for %s, got %s", want, c.what(), describe(src, t))
}

// what names what the elements are for, as in "expected a number for INT32" or `for column "age"`.
func (c *column) what() string {
	if c.col == "" {
		return c.dt.String()
	}
	return fmt.Sprintf("column %q", c.col)
}

// is names the datatype, as in "1.5 is not an integer (INT32)" or `(column "age" is int64)`.
func (c *column) is() string {
	if c.col == "" {
		return c.dt.String()
	}
	return fmt.Sprintf("column %q is %s", c.col, c.label)
}

// add converts one JSON value and appends it.
func (c *column) add(src []byte, t tok) error {
	switch {
	case c.dt == workerproto.BYTES:
		if t.k != kString {
			return c.expected("a string", src, t)
		}
		inner := src[t.start+1 : t.end-1]
		if t.esc {
			c.strs.AddFunc(func(dst []byte) []byte { return appendUnescaped(dst, inner) })
		} else {
			c.strs.Add(inner)
		}
	case c.dt == workerproto.BOOL:
		switch t.k {
		case kTrue:
			c.data = append(c.data, 1)
		case kFalse:
			c.data = append(c.data, 0)
		default:
			return c.expected("true or false", src, t)
		}
	case c.dt.IsInt():
		var neg bool
		var mag uint64
		raw := t.raw(src)
		switch t.k {
		case kInt:
			var ok bool
			if neg, mag, ok = parseIntText(raw); !ok {
				return fmt.Errorf("%s is out of range (%s)", clip(raw), c.is())
			}
		case kFloat:
			f, err := strconv.ParseFloat(string(raw), 64)
			if err != nil && math.IsInf(f, 0) {
				return fmt.Errorf("%s is out of range (%s)", clip(raw), c.is())
			}
			if f != math.Trunc(f) {
				return fmt.Errorf("%s is not an integer (%s)", clip(raw), c.is())
			}
			if math.Abs(f) > 1<<53 {
				return fmt.Errorf("%s: write integers beyond 2^53 without a fraction or exponent (%s)", clip(raw), c.is())
			}
			neg, mag = f < 0, uint64(math.Abs(f))
		default:
			return c.expected("an integer", src, t)
		}
		if !workerproto.IntFits(c.dt, neg, mag) {
			return fmt.Errorf("%s is out of range (%s)", clip(raw), c.is())
		}
		c.data = workerproto.AppendInt(c.data, c.dt, neg, mag)
	default:
		f, err := c.float(src, t)
		if err != nil {
			return err
		}
		c.data = workerproto.AppendFloat(c.data, c.dt, f)
	}
	c.n++
	return nil
}

// float converts a token to a float64 for a float column (FP32 values come out exactly representable).
func (c *column) float(src []byte, t tok) (float64, error) {
	switch t.k {
	case kInt, kFloat:
		raw := t.raw(src)
		f, ok := parseFloat(raw, c.dt)
		if !ok {
			return 0, fmt.Errorf("%s is out of range (%s)", clip(raw), c.is())
		}
		return f, nil
	case kNull:
		return math.NaN(), nil
	case kString:
		if f, ok := specialFloat(unquote(src, t)); ok {
			return f, nil
		}
	}
	return 0, c.expected("a number", src, t)
}

// parseFloat converts a JSON number (validated by the scanner) for the float datatype dt: FP32 values
// come out exactly representable. It reports false when the value does not fit dt.
func parseFloat(raw []byte, dt workerproto.Datatype) (float64, bool) {
	f, ok := fastFloat(raw, dt == workerproto.FP32)
	if !ok {
		bits := 64
		if dt == workerproto.FP32 {
			bits = 32 // round once, from the decimal text
		}
		var err error
		f, err = strconv.ParseFloat(string(raw), bits)
		if err != nil && math.IsInf(f, 0) { // an underflow to zero or a subnormal is fine
			return 0, false
		}
	}
	// The parse already failed on an FP32 or FP64 overflow: only FP16 needs the check, a call per element.
	return f, dt != workerproto.FP16 || workerproto.FloatFits(dt, f)
}

var (
	pow10f64 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}
	pow10f32 = [...]float32{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10}
)

// fastFloat converts a JSON number (validated by the scanner) with few digits and a small exponent,
// the common case, without strconv's general algorithm: when the decimal mantissa and the power of
// ten are both exact in the float type, one multiplication or division rounds correctly (Clinger's
// fast path, which strconv also takes after its own parse). It reports false for anything else.
func fastFloat(b []byte, f32 bool) (float64, bool) {
	i, neg := 0, false
	if i < len(b) && b[i] == '-' {
		neg, i = true, i+1
	}
	var mant uint64
	digits, exp := 0, 0
	for ; i < len(b) && isDigit(b[i]); i++ {
		if mant != 0 || b[i] != '0' {
			digits++
		}
		mant = mant*10 + uint64(b[i]-'0')
		if digits > 15 {
			return 0, false
		}
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && isDigit(b[i]); i++ {
			if mant != 0 || b[i] != '0' {
				digits++
			}
			mant = mant*10 + uint64(b[i]-'0')
			exp--
			if digits > 15 {
				return 0, false
			}
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg, i = b[i] == '-', i+1
		}
		e := 0
		for ; i < len(b) && isDigit(b[i]); i++ {
			e = e*10 + int(b[i]-'0')
			if e > 100 {
				return 0, false
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(b) {
		return 0, false
	}
	var f float64
	switch {
	case mant == 0:
		f = 0
	case f32:
		if mant >= 1<<24 || exp < -10 || exp > 10 {
			return 0, false
		}
		x := float32(mant)
		if exp < 0 {
			x /= pow10f32[-exp]
		} else {
			x *= pow10f32[exp]
		}
		f = float64(x)
	default:
		if exp < -22 || exp > 22 { // mant < 10^15 < 2^53: exact
			return 0, false
		}
		f = float64(mant)
		if exp < 0 {
			f /= pow10f64[-exp]
		} else {
			f *= pow10f64[exp]
		}
	}
	if neg {
		f = -f
	}
	return f, true
}

// specialFloat recognises the names of NaN and the infinities (case-insensitive).
func specialFloat(b []byte) (float64, bool) {
	if len(b) > 9 {
		return 0, false
	}
	switch strings.ToLower(string(b)) {
	case "nan":
		return math.NaN(), true
	case "inf", "+inf", "infinity", "+infinity":
		return math.Inf(1), true
	case "-inf", "-infinity":
		return math.Inf(-1), true
	}
	return 0, false
}

// parseIntText parses a JSON integer (already validated by the scanner) into sign and magnitude.
func parseIntText(b []byte) (neg bool, mag uint64, ok bool) {
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	for _, c := range b {
		d := uint64(c - '0')
		if mag > (math.MaxUint64-d)/10 {
			return neg, 0, false
		}
		mag = mag*10 + d
	}
	return neg, mag, true
}

// appendElemJSON appends element i of t (of datatype dt, consistent with its data) as a JSON value.
func appendElemJSON(b []byte, t *workerproto.Tensor, dt workerproto.Datatype, i int) []byte {
	switch dt {
	case workerproto.BYTES:
		return appendString(b, t.Strings[i])
	case workerproto.BOOL:
		if t.Data[i] != 0 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case workerproto.FP16:
		return appendHalf(b, binary.LittleEndian.Uint16(t.Data[2*i:]))
	case workerproto.FP32:
		return appendFloat(b, workerproto.ReadFloat(dt, t.Data, i), 32)
	case workerproto.FP64:
		return appendFloat(b, workerproto.ReadFloat(dt, t.Data, i), 64)
	}
	v := workerproto.ReadNumber(dt, t.Data, i)
	if v.Neg {
		b = append(b, '-')
	}
	return strconv.AppendUint(b, v.Mag, 10)
}

// appendHalf appends an FP16 value with the fewest significant digits that read back to the same half.
func appendHalf(b []byte, h uint16) []byte {
	f := workerproto.HalfToFloat64(h)
	if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
		return appendFloat(b, f, 64)
	}
	var tmp [32]byte
	for digits := 1; digits < 17; digits++ {
		s := strconv.AppendFloat(tmp[:0], f, 'e', digits-1, 64)
		if v, err := strconv.ParseFloat(string(s), 64); err == nil && workerproto.HalfFromFloat64(v) == h {
			return appendFloat(b, v, 64)
		}
	}
	return appendFloat(b, f, 64)
}

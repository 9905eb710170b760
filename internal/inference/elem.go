package inference

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// column accumulates the elements of one tensor from JSON tokens, converting each to the datatype with
// range checks. BYTES elements go to one arena so that a column costs a few allocations, not one per
// element.
type column struct {
	dt    dtype
	col   string // the column's name in messages; "" for OIP tensors, where messages name the datatype
	label string // the column's dtype as the user wrote it (int64), when col is set
	data  []byte
	arena []byte
	ends  []int
	n     int
}

func newColumn(dt dtype, capacity int) *column {
	c := &column{dt: dt}
	if dt == dtBytes {
		c.ends = make([]int, 0, capacity)
	} else {
		c.data = make([]byte, 0, capacity*dt.size())
	}
	return c
}

// tensor returns the finished tensor.
func (c *column) tensor(name string, shape []int64) workerproto.Tensor {
	t := workerproto.Tensor{Name: name, Datatype: c.dt.String(), Shape: shape}
	if c.dt != dtBytes {
		t.Data = c.data
		if t.Data == nil {
			t.Data = []byte{}
		}
		return t
	}
	t.Strings = make([][]byte, len(c.ends))
	start := 0
	for i, end := range c.ends {
		t.Strings[i] = c.arena[start:end:end]
		start = end
	}
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
	case c.dt == dtBytes:
		if t.k != kString {
			return c.expected("a string", src, t)
		}
		inner := src[t.start+1 : t.end-1]
		if t.esc {
			c.arena = appendUnescaped(c.arena, inner)
		} else {
			c.arena = append(c.arena, inner...)
		}
		c.ends = append(c.ends, len(c.arena))
	case c.dt == dtBool:
		switch t.k {
		case kTrue:
			c.data = append(c.data, 1)
		case kFalse:
			c.data = append(c.data, 0)
		default:
			return c.expected("true or false", src, t)
		}
	case c.dt.isInt():
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
		if !intFits(c.dt, neg, mag) {
			return fmt.Errorf("%s is out of range (%s)", clip(raw), c.is())
		}
		c.data = appendUint(c.data, c.dt.size(), intBits(neg, mag))
	default:
		f, err := c.float(src, t)
		if err != nil {
			return err
		}
		c.data = appendFloatBits(c.data, c.dt, f)
	}
	c.n++
	return nil
}

// float converts a token to a float64 for a float column (FP32 values come out exactly representable).
func (c *column) float(src []byte, t tok) (float64, error) {
	switch t.k {
	case kInt, kFloat:
		raw := t.raw(src)
		f, ok := fastFloat(raw, c.dt == dtFP32)
		if !ok {
			bits := 64
			if c.dt == dtFP32 {
				bits = 32 // round once, from the decimal text
			}
			var err error
			f, err = strconv.ParseFloat(string(raw), bits)
			if err != nil && math.IsInf(f, 0) { // an underflow to zero or a subnormal is fine
				return 0, fmt.Errorf("%s is out of range (%s)", clip(raw), c.is())
			}
		}
		if c.dt == dtFP16 && !halfFits(f) {
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

// intFits reports whether the integer with sign neg and magnitude mag fits the integer datatype dt.
func intFits(dt dtype, neg bool, mag uint64) bool {
	bits := uint(dt.size() * 8)
	if dt.isUint() {
		return (!neg || mag == 0) && (bits == 64 || mag < 1<<bits)
	}
	if neg {
		return mag <= 1<<(bits-1)
	}
	return mag < 1<<(bits-1)
}

// intBits is the two's complement bit pattern of the integer.
func intBits(neg bool, mag uint64) uint64 {
	if neg {
		return -mag
	}
	return mag
}

func appendUint(b []byte, size int, u uint64) []byte {
	switch size {
	case 1:
		return append(b, byte(u))
	case 2:
		return binary.LittleEndian.AppendUint16(b, uint16(u))
	case 4:
		return binary.LittleEndian.AppendUint32(b, uint32(u))
	}
	return binary.LittleEndian.AppendUint64(b, u)
}

// appendFloatBits appends f in the float datatype dt (the caller checked the range).
func appendFloatBits(b []byte, dt dtype, f float64) []byte {
	switch dt {
	case dtFP16:
		return binary.LittleEndian.AppendUint16(b, halfFromFloat64(f))
	case dtFP32:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f)))
	}
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// halfFits reports whether f is NaN, infinite, or a finite value that stays finite in FP16.
func halfFits(f float64) bool {
	h := halfFromFloat64(f)
	return h&0x7c00 != 0x7c00 || math.IsInf(f, 0) || math.IsNaN(f)
}

// halfFromFloat64 converts f to IEEE 754 binary16 bits, rounding to nearest even. Values beyond the
// range become ±Inf, NaN becomes a quiet NaN.
func halfFromFloat64(f float64) uint16 {
	b := math.Float64bits(f)
	sign := uint16(b>>48) & 0x8000
	exp := int(b>>52) & 0x7ff
	mant := b & (1<<52 - 1)
	if exp == 0x7ff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 1023 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 { // subnormal in FP16 (or zero): m = value / 2^-24
		if e < -10 {
			return sign
		}
		full := mant | 1<<52
		shift := uint(43 - e) // 43..53
		m := full >> shift
		rem := full & (1<<shift - 1)
		half := uint64(1) << (shift - 1)
		if rem > half || rem == half && m&1 == 1 {
			m++ // may carry into the smallest normal, whose bits are m = 0x400
		}
		return sign | uint16(m)
	}
	m := mant >> 42
	rem := mant & (1<<42 - 1)
	if rem > 1<<41 || rem == 1<<41 && m&1 == 1 {
		m++
		if m == 0x400 {
			m = 0
			e++
			if e >= 0x1f {
				return sign | 0x7c00
			}
		}
	}
	return sign | uint16(e)<<10 | uint16(m)
}

// halfToFloat64 converts IEEE 754 binary16 bits to a float64 (exactly).
func halfToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return sign * m * (1.0 / (1 << 24))
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * (1 + m/1024) * math.Ldexp(1, e-15)
}

// val is one numeric element: an integer (neg, mag) or a float.
type val struct {
	isFloat bool
	f       float64
	neg     bool
	mag     uint64
}

func (v val) float() float64 {
	if v.isFloat {
		return v.f
	}
	if v.neg {
		return -float64(v.mag)
	}
	return float64(v.mag)
}

func (v val) String() string {
	switch {
	case v.isFloat:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	case v.neg:
		return "-" + strconv.FormatUint(v.mag, 10)
	}
	return strconv.FormatUint(v.mag, 10)
}

// readVal reads element i of numeric data of datatype dt.
func readVal(dt dtype, data []byte, i int) val {
	switch dt {
	case dtBool, dtUint8:
		return val{mag: uint64(data[i])}
	case dtUint16:
		return val{mag: uint64(binary.LittleEndian.Uint16(data[2*i:]))}
	case dtUint32:
		return val{mag: uint64(binary.LittleEndian.Uint32(data[4*i:]))}
	case dtUint64:
		return val{mag: binary.LittleEndian.Uint64(data[8*i:])}
	case dtInt8:
		return intVal(int64(int8(data[i])))
	case dtInt16:
		return intVal(int64(int16(binary.LittleEndian.Uint16(data[2*i:]))))
	case dtInt32:
		return intVal(int64(int32(binary.LittleEndian.Uint32(data[4*i:]))))
	case dtInt64:
		return intVal(int64(binary.LittleEndian.Uint64(data[8*i:])))
	case dtFP16:
		return val{isFloat: true, f: halfToFloat64(binary.LittleEndian.Uint16(data[2*i:]))}
	case dtFP32:
		return val{isFloat: true, f: float64(math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])))}
	}
	return val{isFloat: true, f: math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))}
}

func intVal(x int64) val {
	if x < 0 {
		return val{neg: true, mag: uint64(-x)}
	}
	return val{mag: uint64(x)}
}

var (
	errNotInteger = errors.New("not an integer")
	errRange      = errors.New("out of range")
)

// appendVal converts v to the numeric datatype dt and appends it. It fails on a non-integral float for
// an integer datatype, on an integer or float that does not fit, and on anything but 0 or 1 for BOOL.
func appendVal(b []byte, dt dtype, v val) ([]byte, error) {
	if dt.isFloat() {
		f := v.float()
		switch {
		case dt == dtFP32 && !math.IsInf(f, 0) && math.IsInf(float64(float32(f)), 0),
			dt == dtFP16 && !halfFits(f):
			return b, errRange
		}
		return appendFloatBits(b, dt, f), nil
	}
	neg, mag := v.neg, v.mag
	if v.isFloat {
		if v.f != math.Trunc(v.f) { // NaN and ±Inf too
			return b, errNotInteger
		}
		if math.Abs(v.f) >= 1<<64 {
			return b, errRange
		}
		neg, mag = v.f < 0, uint64(math.Abs(v.f))
	}
	if dt == dtBool {
		if neg && mag != 0 || mag > 1 {
			return b, errRange
		}
		return append(b, byte(mag)), nil
	}
	if !intFits(dt, neg, mag) {
		return b, errRange
	}
	return appendUint(b, dt.size(), intBits(neg, mag)), nil
}

// appendElemJSON appends element i of t (of datatype dt, consistent with its data) as a JSON value.
func appendElemJSON(b []byte, t *workerproto.Tensor, dt dtype, i int) []byte {
	switch dt {
	case dtBytes:
		return appendString(b, t.Strings[i])
	case dtBool:
		if t.Data[i] != 0 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case dtFP16:
		return appendHalf(b, binary.LittleEndian.Uint16(t.Data[2*i:]))
	case dtFP32:
		return appendFloat(b, float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))), 32)
	case dtFP64:
		return appendFloat(b, math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])), 64)
	}
	v := readVal(dt, t.Data, i)
	if v.neg {
		b = append(b, '-')
	}
	return strconv.AppendUint(b, v.mag, 10)
}

// appendHalf appends an FP16 value with the fewest significant digits that read back to the same half.
func appendHalf(b []byte, h uint16) []byte {
	f := halfToFloat64(h)
	if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
		return appendFloat(b, f, 64)
	}
	var tmp [32]byte
	for digits := 1; digits < 17; digits++ {
		s := strconv.AppendFloat(tmp[:0], f, 'e', digits-1, 64)
		if v, err := strconv.ParseFloat(string(s), 64); err == nil && halfFromFloat64(v) == h {
			return appendFloat(b, v, 64)
		}
	}
	return appendFloat(b, f, 64)
}

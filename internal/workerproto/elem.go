package workerproto

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
)

// This file is the tensor element layer: the one place that knows how each datatype lays out its
// elements in Tensor.Data, and the IEEE 754 half-float conversions. Hot loops resolve a tensor's
// datatype name to a Datatype once and then read or append elements without boxing them.

// Datatype is an Open Inference Protocol datatype as a small integer, for switches in element loops.
// Its constants are spelled like the protocol's names.
type Datatype uint8

// The OIP datatypes, in the order of the protocol's table.
const (
	NoDatatype Datatype = iota
	BOOL
	UINT8
	UINT16
	UINT32
	UINT64
	INT8
	INT16
	INT32
	INT64
	FP16
	FP32
	FP64
	BYTES
)

var datatypeNames = [...]string{"", "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"}

var datatypeSizes = [...]int{0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 0}

// Datatypes lists the OIP datatype names, for error messages.
func Datatypes() []string { return datatypeNames[1:] }

// ParseDatatype returns the Datatype named by an OIP datatype name, or NoDatatype.
// It is called for every column of every request: a switch (compiled to a search on length and contents) beats
// a scan of the name table, which compared up to 12 names for the common FP64.
func ParseDatatype(name string) Datatype {
	switch name {
	case "BOOL":
		return BOOL
	case "UINT8":
		return UINT8
	case "UINT16":
		return UINT16
	case "UINT32":
		return UINT32
	case "UINT64":
		return UINT64
	case "INT8":
		return INT8
	case "INT16":
		return INT16
	case "INT32":
		return INT32
	case "INT64":
		return INT64
	case "FP16":
		return FP16
	case "FP32":
		return FP32
	case "FP64":
		return FP64
	case "BYTES":
		return BYTES
	}
	return NoDatatype
}

// String returns the OIP name ("" for NoDatatype).
func (d Datatype) String() string { return datatypeNames[d] }

// Size is the element size in bytes (0 for BYTES and NoDatatype).
func (d Datatype) Size() int { return datatypeSizes[d] }

// IsInt reports whether d is a signed or unsigned integer datatype (not BOOL).
func (d Datatype) IsInt() bool { return d >= UINT8 && d <= INT64 }

// IsUint reports whether d is an unsigned integer datatype.
func (d Datatype) IsUint() bool { return d >= UINT8 && d <= UINT64 }

// IsFloat reports whether d is FP16, FP32 or FP64.
func (d Datatype) IsFloat() bool { return d >= FP16 && d <= FP64 }

// IsNumeric reports whether d holds numbers (BOOL counts: it casts to 0 and 1).
func (d Datatype) IsNumeric() bool { return d >= BOOL && d <= FP64 }

// Number is one numeric element: a float, or an integer as sign and magnitude so that every INT64 and
// UINT64 value fits.
type Number struct {
	IsFloat bool
	F       float64
	Neg     bool
	Mag     uint64
}

// IntNumber is the Number of the integer x.
func IntNumber(x int64) Number {
	if x < 0 {
		return Number{Neg: true, Mag: uint64(-x)}
	}
	return Number{Mag: uint64(x)}
}

// Float64 converts v to a float64 (rounding integers beyond 2^53).
func (v Number) Float64() float64 {
	if v.IsFloat {
		return v.F
	}
	if v.Neg {
		return -float64(v.Mag)
	}
	return float64(v.Mag)
}

// Int64 returns the integer v and whether it is one that fits an int64.
func (v Number) Int64() (int64, bool) {
	if v.IsFloat || !IntFits(INT64, v.Neg, v.Mag) {
		return 0, false
	}
	if v.Neg {
		return -int64(v.Mag-1) - 1, true // -2^63 has no positive counterpart
	}
	return int64(v.Mag), true
}

// String formats v as Go formats a float64 or an integer.
func (v Number) String() string {
	switch {
	case v.IsFloat:
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case v.Neg:
		return "-" + strconv.FormatUint(v.Mag, 10)
	}
	return strconv.FormatUint(v.Mag, 10)
}

// ReadNumber reads element i of numeric data of datatype dt (BOOL reads as 0 or 1).
func ReadNumber(dt Datatype, data []byte, i int) Number {
	switch dt {
	case BOOL, UINT8:
		return Number{Mag: uint64(data[i])}
	case UINT16:
		return Number{Mag: uint64(binary.LittleEndian.Uint16(data[2*i:]))}
	case UINT32:
		return Number{Mag: uint64(binary.LittleEndian.Uint32(data[4*i:]))}
	case UINT64:
		return Number{Mag: binary.LittleEndian.Uint64(data[8*i:])}
	case INT8:
		return IntNumber(int64(int8(data[i])))
	case INT16:
		return IntNumber(int64(int16(binary.LittleEndian.Uint16(data[2*i:]))))
	case INT32:
		return IntNumber(int64(int32(binary.LittleEndian.Uint32(data[4*i:]))))
	case INT64:
		return IntNumber(int64(binary.LittleEndian.Uint64(data[8*i:])))
	}
	return Number{IsFloat: true, F: ReadFloat(dt, data, i)}
}

// ReadFloat reads element i of numeric data of datatype dt as a float64: exact for floats and for
// integers up to 2^53. It returns NaN for a datatype that is not numeric.
func ReadFloat(dt Datatype, data []byte, i int) float64 {
	switch dt {
	case FP64:
		return math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
	case FP32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])))
	case FP16:
		return HalfToFloat64(binary.LittleEndian.Uint16(data[2*i:]))
	case INT64:
		return float64(int64(binary.LittleEndian.Uint64(data[8*i:])))
	case INT32:
		return float64(int32(binary.LittleEndian.Uint32(data[4*i:])))
	case INT16:
		return float64(int16(binary.LittleEndian.Uint16(data[2*i:])))
	case INT8:
		return float64(int8(data[i]))
	case UINT64:
		return float64(binary.LittleEndian.Uint64(data[8*i:]))
	case UINT32:
		return float64(binary.LittleEndian.Uint32(data[4*i:]))
	case UINT16:
		return float64(binary.LittleEndian.Uint16(data[2*i:]))
	case UINT8, BOOL:
		return float64(data[i])
	}
	return math.NaN()
}

// Errors of AppendNumber.
var (
	ErrNotInteger = errors.New("not an integer")
	ErrRange      = errors.New("out of range")
)

// AppendNumber converts v to the numeric datatype dt and appends it. It fails with ErrNotInteger on a
// non-integral float for an integer datatype, and with ErrRange on a value that does not fit (for BOOL,
// anything but 0 and 1).
func AppendNumber(b []byte, dt Datatype, v Number) ([]byte, error) {
	if dt.IsFloat() {
		f := v.Float64()
		if !FloatFits(dt, f) {
			return b, ErrRange
		}
		return AppendFloat(b, dt, f), nil
	}
	neg, mag := v.Neg, v.Mag
	if v.IsFloat {
		if v.F != math.Trunc(v.F) { // NaN too; ±Inf is out of range below
			return b, ErrNotInteger
		}
		if math.Abs(v.F) >= 1<<64 {
			return b, ErrRange
		}
		neg, mag = v.F < 0, uint64(math.Abs(v.F))
	}
	if dt == BOOL {
		if neg && mag != 0 || mag > 1 {
			return b, ErrRange
		}
		return append(b, byte(mag)), nil
	}
	if !IntFits(dt, neg, mag) {
		return b, ErrRange
	}
	return AppendInt(b, dt, neg, mag), nil
}

// IntFits reports whether the integer with sign neg and magnitude mag fits the integer datatype dt.
func IntFits(dt Datatype, neg bool, mag uint64) bool {
	bits := uint(dt.Size() * 8)
	if dt.IsUint() {
		return (!neg || mag == 0) && (bits == 64 || mag < 1<<bits)
	}
	if neg {
		return mag <= 1<<(bits-1)
	}
	return mag < 1<<(bits-1)
}

// AppendInt appends the integer with sign neg and magnitude mag in the integer (or BOOL) datatype dt,
// as two's complement truncated to its size: the caller checks the range with IntFits.
func AppendInt(b []byte, dt Datatype, neg bool, mag uint64) []byte {
	u := mag
	if neg {
		u = -mag
	}
	switch dt.Size() {
	case 1:
		return append(b, byte(u))
	case 2:
		return binary.LittleEndian.AppendUint16(b, uint16(u))
	case 4:
		return binary.LittleEndian.AppendUint32(b, uint32(u))
	}
	return binary.LittleEndian.AppendUint64(b, u)
}

// FloatFits reports whether f stays what it is in the float datatype dt: NaN, an infinity, or a finite
// value that rounds to a finite one.
func FloatFits(dt Datatype, f float64) bool {
	switch dt {
	case FP16:
		return HalfFromFloat64(f)&0x7c00 != 0x7c00 || math.IsInf(f, 0) || math.IsNaN(f)
	case FP32:
		return !math.IsInf(float64(float32(f)), 0) || math.IsInf(f, 0)
	}
	return true
}

// AppendFloat appends f in the float datatype dt, rounding to nearest even (check FloatFits first where
// an overflow to infinity is an error).
func AppendFloat(b []byte, dt Datatype, f float64) []byte {
	switch dt {
	case FP16:
		return binary.LittleEndian.AppendUint16(b, HalfFromFloat64(f))
	case FP32:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f)))
	}
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// HalfFromFloat64 converts f to IEEE 754 binary16 bits, rounding to nearest even. Values beyond the
// range become ±Inf, NaN becomes a quiet NaN.
func HalfFromFloat64(f float64) uint16 {
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

// HalfToFloat64 converts IEEE 754 binary16 bits to a float64 (exactly).
func HalfToFloat64(h uint16) float64 {
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

// BytesBuilder collects the elements of a BYTES tensor in one backing array, so that a column costs a
// few allocations instead of one per element. The zero value is an empty builder.
type BytesBuilder struct {
	arena []byte
	ends  []int
}

// NewBytesBuilder returns a builder with room for n elements of size bytes in all. It is a value, to be
// kept in a variable or field, which costs no allocation of its own.
func NewBytesBuilder(n, size int) BytesBuilder {
	return BytesBuilder{arena: make([]byte, 0, size), ends: make([]int, 0, n)}
}

// Add appends one element.
func (b *BytesBuilder) Add(s []byte) {
	b.arena = append(b.arena, s...)
	b.ends = append(b.ends, len(b.arena))
}

// AddString appends one element.
func (b *BytesBuilder) AddString(s string) {
	b.arena = append(b.arena, s...)
	b.ends = append(b.ends, len(b.arena))
}

// AddFunc appends one element written by add, which appends its bytes to dst and returns the result
// (for elements that need decoding on the way in, like escaped JSON strings).
func (b *BytesBuilder) AddFunc(add func(dst []byte) []byte) {
	b.arena = add(b.arena)
	b.ends = append(b.ends, len(b.arena))
}

// Strings returns the elements, for Tensor.Strings. They share the builder's backing array, capped so
// that appending to one cannot overwrite the next.
func (b *BytesBuilder) Strings() [][]byte {
	out := make([][]byte, len(b.ends))
	start := 0
	for i, end := range b.ends {
		out[i] = b.arena[start:end:end]
		start = end
	}
	return out
}

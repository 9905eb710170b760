package workerproto

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestDatatypeNames(t *testing.T) {
	sizes := map[string]int{
		"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8,
		"FP16": 2, "FP32": 4, "FP64": 8, "BYTES": 0,
	}
	if len(Datatypes()) != len(sizes) {
		t.Fatalf("Datatypes() = %v", Datatypes())
	}
	for _, name := range Datatypes() {
		dt := ParseDatatype(name)
		if dt == NoDatatype || dt.String() != name || dt.Size() != sizes[name] {
			t.Errorf("%s: ParseDatatype = %d (%q, size %d)", name, dt, dt, dt.Size())
		}
		if size, ok := ElemSize(name); !ok || size != sizes[name] {
			t.Errorf("ElemSize(%s) = %d, %v", name, size, ok)
		}
	}
	for _, name := range []string{"", "fp32", "FP8", "STRING"} {
		if dt := ParseDatatype(name); dt != NoDatatype {
			t.Errorf("ParseDatatype(%q) = %s", name, dt)
		}
		if _, ok := ElemSize(name); ok {
			t.Errorf("ElemSize(%q) is known", name)
		}
	}
	kinds := []struct {
		dt                                Datatype
		isInt, isUint, isFloat, isNumeric bool
	}{
		{BOOL, false, false, false, true},
		{UINT8, true, true, false, true}, {UINT64, true, true, false, true},
		{INT8, true, false, false, true}, {INT64, true, false, false, true},
		{FP16, false, false, true, true}, {FP64, false, false, true, true},
		{BYTES, false, false, false, false}, {NoDatatype, false, false, false, false},
	}
	for _, k := range kinds {
		if k.dt.IsInt() != k.isInt || k.dt.IsUint() != k.isUint || k.dt.IsFloat() != k.isFloat || k.dt.IsNumeric() != k.isNumeric {
			t.Errorf("%q: IsInt %v IsUint %v IsFloat %v IsNumeric %v", k.dt, k.dt.IsInt(), k.dt.IsUint(), k.dt.IsFloat(), k.dt.IsNumeric())
		}
	}
}

func TestElementRoundTrip(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		dt    Datatype
		v     Number
		bytes []byte
		f     float64
	}{
		{BOOL, IntNumber(1), []byte{1}, 1},
		{BOOL, IntNumber(0), []byte{0}, 0},
		{UINT8, IntNumber(255), []byte{255}, 255},
		{UINT16, IntNumber(65535), le.AppendUint16(nil, 65535), 65535},
		{UINT32, IntNumber(math.MaxUint32), le.AppendUint32(nil, math.MaxUint32), math.MaxUint32},
		{UINT64, Number{Mag: math.MaxUint64}, le.AppendUint64(nil, math.MaxUint64), math.MaxUint64},
		{INT8, IntNumber(-128), []byte{0x80}, -128},
		{INT16, IntNumber(-32768), le.AppendUint16(nil, 0x8000), -32768},
		{INT32, IntNumber(-7), le.AppendUint32(nil, math.MaxUint32-6), -7},
		{INT64, IntNumber(math.MinInt64), le.AppendUint64(nil, 1<<63), math.MinInt64},
		{FP16, Number{IsFloat: true, F: -2}, le.AppendUint16(nil, 0xc000), -2},
		{FP32, Number{IsFloat: true, F: 0.5}, le.AppendUint32(nil, math.Float32bits(0.5)), 0.5},
		{FP64, Number{IsFloat: true, F: 1e-300}, le.AppendUint64(nil, math.Float64bits(1e-300)), 1e-300},
	}
	for _, tt := range tests {
		b, err := AppendNumber([]byte{9}, tt.dt, tt.v)
		if err != nil || !reflect.DeepEqual(b[1:], tt.bytes) {
			t.Errorf("%s: AppendNumber(%v) = %x, %v; want %x", tt.dt, tt.v, b[1:], err, tt.bytes)
			continue
		}
		if got := ReadNumber(tt.dt, b[1:], 0); got != tt.v {
			t.Errorf("%s: ReadNumber = %+v, want %+v", tt.dt, got, tt.v)
		}
		if got := ReadFloat(tt.dt, b[1:], 0); got != tt.f {
			t.Errorf("%s: ReadFloat = %v, want %v", tt.dt, got, tt.f)
		}
		// Element i of a longer slice is read at offset i*size.
		two := append(append([]byte{}, tt.bytes...), tt.bytes...)
		if got := ReadFloat(tt.dt, two, 1); got != tt.f {
			t.Errorf("%s: ReadFloat(element 1) = %v, want %v", tt.dt, got, tt.f)
		}
	}
	if f := ReadFloat(BYTES, nil, 0); !math.IsNaN(f) {
		t.Errorf("ReadFloat(BYTES) = %v, want NaN", f)
	}
}

func TestAppendNumberErrors(t *testing.T) {
	tests := []struct {
		dt   Datatype
		v    Number
		want error
	}{
		{INT8, IntNumber(128), ErrRange},
		{INT8, IntNumber(-129), ErrRange},
		{UINT8, IntNumber(256), ErrRange},
		{UINT64, IntNumber(-1), ErrRange},
		{INT64, Number{Mag: 1 << 63}, ErrRange},
		{INT32, Number{IsFloat: true, F: 1.5}, ErrNotInteger},
		{INT32, Number{IsFloat: true, F: math.NaN()}, ErrNotInteger},
		{INT64, Number{IsFloat: true, F: math.Inf(1)}, ErrRange},
		{UINT64, Number{IsFloat: true, F: 1 << 64}, ErrRange},
		{BOOL, IntNumber(2), ErrRange},
		{BOOL, IntNumber(-1), ErrRange},
		{FP16, Number{IsFloat: true, F: 65520}, ErrRange},
		{FP32, Number{IsFloat: true, F: 1e39}, ErrRange},
	}
	for _, tt := range tests {
		if _, err := AppendNumber(nil, tt.dt, tt.v); !errors.Is(err, tt.want) {
			t.Errorf("%s: AppendNumber(%v) = %v, want %v", tt.dt, tt.v, err, tt.want)
		}
	}
	ok := []struct {
		dt Datatype
		v  Number
	}{
		{INT64, Number{IsFloat: true, F: -3}},
		{UINT8, Number{IsFloat: true, F: 255}},
		{BOOL, Number{IsFloat: true, F: 1}},
		{FP16, Number{IsFloat: true, F: 65519.99}}, // rounds to 65504
		{FP16, Number{IsFloat: true, F: math.Inf(-1)}},
		{FP32, Number{IsFloat: true, F: math.NaN()}},
		{FP64, Number{Mag: math.MaxUint64}},
	}
	for _, tt := range ok {
		if _, err := AppendNumber(nil, tt.dt, tt.v); err != nil {
			t.Errorf("%s: AppendNumber(%v) = %v", tt.dt, tt.v, err)
		}
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		v     Number
		s     string
		f     float64
		i     int64
		fitsI bool
	}{
		{IntNumber(-5), "-5", -5, -5, true},
		{IntNumber(math.MinInt64), "-9223372036854775808", math.MinInt64, math.MinInt64, true},
		{Number{Mag: math.MaxUint64}, "18446744073709551615", math.MaxUint64, 0, false},
		{Number{IsFloat: true, F: 2.5}, "2.5", 2.5, 0, false},
	}
	for _, tt := range tests {
		i, ok := tt.v.Int64()
		if tt.v.String() != tt.s || tt.v.Float64() != tt.f || i != tt.i || ok != tt.fitsI {
			t.Errorf("%+v: String %q Float64 %v Int64 %d %v", tt.v, tt.v.String(), tt.v.Float64(), i, ok)
		}
	}
}

func TestHalfFromFloat64(t *testing.T) {
	tests := []struct {
		in   float64
		want uint16
	}{
		{0, 0x0000}, {math.Copysign(0, -1), 0x8000}, {1, 0x3c00}, {-2, 0xc000}, {3, 0x4200},
		{float64(float32(0.1)), 0x2e66}, {0.1, 0x2e66}, {65504, 0x7bff}, {65519.99, 0x7bff},
		{65520, 0x7c00}, {1e6, 0x7c00}, {-1e6, 0xfc00}, // round up to infinity
		{math.Ldexp(1, -24), 0x0001},       // smallest subnormal
		{math.Ldexp(1, -25), 0x0000},       // tie: rounds to even (zero)
		{math.Ldexp(1.5, -25), 0x0001},     // above the tie
		{math.Ldexp(3, -25), 0x0002},       // 1.5 ulp: tie, rounds to even (2)
		{math.Ldexp(1, -30), 0x0000},       // underflows to zero
		{-math.Ldexp(1, -30), 0x8000},      // to negative zero
		{math.Ldexp(1, -14), 0x0400},       // smallest normal
		{math.Ldexp(1023, -24), 0x03ff},    // largest subnormal
		{math.Ldexp(1023.5, -24), 0x0400},  // rounds from the largest subnormal into the smallest normal
		{1 + math.Ldexp(1, -10), 0x3c01},   // 1 + ulp
		{1 + math.Ldexp(1, -11), 0x3c00},   // tie, even stays
		{1 + 3*math.Ldexp(1, -11), 0x3c02}, // tie, odd rounds up
		{2047.25, 0x67ff},                  // below the carry into the next binade
		{2047.5, 0x6800},                   // tie: rounds to even, carrying into the next binade
		{math.Inf(1), 0x7c00}, {math.Inf(-1), 0xfc00},
		{math.NaN(), 0x7e00}, {math.Copysign(math.NaN(), -1), 0xfe00},
	}
	for _, tt := range tests {
		if got := HalfFromFloat64(tt.in); got != tt.want {
			t.Errorf("HalfFromFloat64(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestHalfToFloat64(t *testing.T) {
	tests := []struct {
		in   uint16
		want float64
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504},
		{0x0001, math.Ldexp(1, -24)}, {0x03ff, math.Ldexp(1023, -24)}, {0x0400, math.Ldexp(1, -14)},
		{0x7c00, math.Inf(1)}, {0xfc00, math.Inf(-1)},
	}
	for _, tt := range tests {
		if got := HalfToFloat64(tt.in); got != tt.want {
			t.Errorf("HalfToFloat64(%#04x) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if f := HalfToFloat64(0x8000); f != 0 || !math.Signbit(f) {
		t.Errorf("HalfToFloat64(0x8000) = %v, want -0", f)
	}
	for _, h := range []uint16{0x7c01, 0x7e00, 0xffff} {
		if f := HalfToFloat64(h); !math.IsNaN(f) {
			t.Errorf("HalfToFloat64(%#04x) = %v, want NaN", h, f)
		}
	}
	// Every half that is not NaN survives half → float64 → half.
	for h := range 1 << 16 {
		f := HalfToFloat64(uint16(h))
		if math.IsNaN(f) {
			continue
		}
		if got := HalfFromFloat64(f); got != uint16(h) {
			t.Fatalf("%#04x → %v → %#04x", h, f, got)
		}
	}
}

func TestFloatFits(t *testing.T) {
	tests := []struct {
		dt   Datatype
		f    float64
		want bool
	}{
		{FP16, 65504, true}, {FP16, 65519.99, true}, {FP16, 65520, false}, {FP16, -70000, false},
		{FP16, math.Inf(1), true}, {FP16, math.NaN(), true}, {FP16, 1e-10, true},
		{FP32, math.MaxFloat32, true}, {FP32, 1e39, false}, {FP32, math.Inf(-1), true},
		{FP64, math.MaxFloat64, true},
	}
	for _, tt := range tests {
		if got := FloatFits(tt.dt, tt.f); got != tt.want {
			t.Errorf("FloatFits(%s, %v) = %v", tt.dt, tt.f, got)
		}
	}
}

func TestBytesBuilder(t *testing.T) {
	b := NewBytesBuilder(3, 0)
	b.Add([]byte("ab"))
	b.AddString("")
	b.AddFunc(func(dst []byte) []byte { return append(dst, "xyz"...) })
	got := b.Strings()
	if want := [][]byte{[]byte("ab"), {}, []byte("xyz")}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Strings = %q, want %q", got, want)
	}
	// Appending to one element must not overwrite the next.
	_ = append(got[0], '!')
	if string(got[2]) != "xyz" {
		t.Fatalf("append to element 0 changed element 2: %q", got[2])
	}
	tn := Tensor{Name: "s", Datatype: "BYTES", Shape: []int64{3}, Strings: got}
	if err := tn.Validate(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkParseDatatype resolves the names a 30-column frame of mixed columns carries.
func BenchmarkParseDatatype(b *testing.B) {
	names := []string{"FP64", "FP32", "INT64", "BYTES", "BOOL", "UINT8"}
	var sink Datatype
	for i := 0; b.Loop(); i++ {
		sink += ParseDatatype(names[i%len(names)])
	}
	_ = sink
}

package workerproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sample returns a tensor of the datatype with shape whose data bytes count up.
func sample(name, datatype string, shape []int64) Tensor {
	t := Tensor{Name: name, Datatype: datatype, Shape: shape}
	n := t.NumElements()
	if datatype == "BYTES" {
		t.Strings = make([][]byte, n)
		for i := range t.Strings {
			t.Strings[i] = bytes.Repeat([]byte{byte('a' + i%26)}, i%5)
		}
		return t
	}
	size, _ := ElemSize(datatype)
	t.Data = make([]byte, n*int64(size))
	for i := range t.Data {
		t.Data[i] = byte(i * 7)
	}
	if datatype == "BOOL" {
		for i := range t.Data {
			t.Data[i] = byte(i % 2)
		}
	}
	return t
}

var allDatatypes = []string{"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"}

func TestTensorRoundTripEveryDatatype(t *testing.T) {
	shapes := [][]int64{{3}, {2, 3}, {0, 4}, {}, {1, 1, 2}}
	for _, dt := range allDatatypes {
		for _, shape := range shapes {
			in := []Tensor{sample("x_"+strings.ToLower(dt), dt, shape), sample("ünïcode", dt, []int64{2})}
			t.Run(dt, func(t *testing.T) {
				enc := EncodeTensors(nil, in)
				if len(enc) != EncodedLen(in) {
					t.Fatalf("EncodedLen %d, encoded %d bytes", EncodedLen(in), len(enc))
				}
				out, err := DecodeTensors(enc)
				if err != nil {
					t.Fatal(err)
				}
				if !equalTensors(in, out) {
					t.Fatalf("round trip changed tensors:\n in  %+v\n out %+v", in, out)
				}
			})
		}
	}
}

func equalTensors(a, b []Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Datatype != y.Datatype || !reflect.DeepEqual(x.Shape, y.Shape) || !bytes.Equal(x.Data, y.Data) {
			return false
		}
		if len(x.Strings) != len(y.Strings) {
			return false
		}
		for j := range x.Strings {
			if !bytes.Equal(x.Strings[j], y.Strings[j]) {
				return false
			}
		}
	}
	return true
}

func TestEncodeTensorsWireFormat(t *testing.T) {
	got := EncodeTensors([]byte{0xff}, []Tensor{NewBytes("s", nil, []string{"hi"})})
	want := []byte{
		0xff,       // existing dst content is kept
		1, 0, 0, 0, // ncols
		1, 0, 's', // name
		5, 'B', 'Y', 'T', 'E', 'S', // datatype
		1, 1, 0, 0, 0, 0, 0, 0, 0, // ndim, dims
		6, 0, 0, 0, 0, 0, 0, 0, // data_len
		2, 0, 0, 0, 'h', 'i',
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
}

// column hand-encodes one column with arbitrary (possibly lying) fields.
func column(name, dt string, dims []int64, dataLen uint64, data []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(len(name)))
	b = append(b, name...)
	b = append(b, byte(len(dt)))
	b = append(b, dt...)
	b = append(b, byte(len(dims)))
	for _, d := range dims {
		b = binary.LittleEndian.AppendUint64(b, uint64(d))
	}
	b = binary.LittleEndian.AppendUint64(b, dataLen)
	return append(b, data...)
}

func frame(ncols uint32, cols ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, ncols)
	for _, c := range cols {
		b = append(b, c...)
	}
	return b
}

func TestDecodeTensorsHostile(t *testing.T) {
	str := func(s string) []byte { return append(binary.LittleEndian.AppendUint32(nil, uint32(len(s))), s...) }
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "truncated"},
		{"huge ncols", frame(math.MaxUint32), "columns cannot fit"},
		{"ncols lies", frame(2, column("a", "FP32", []int64{1}, 4, make([]byte, 4))), "column 1: truncated"},
		{"data_len lies", frame(1, column("a", "FP32", []int64{1}, 1<<62, make([]byte, 4))), "truncated"},
		{"data_len too short for shape", frame(1, column("a", "FP32", []int64{2}, 4, make([]byte, 4))), "needs 8 data bytes"},
		{"data_len too long for shape", frame(1, column("a", "INT8", []int64{2}, 3, make([]byte, 3))), "needs 2 data bytes"},
		{"dims overflow", frame(1, column("a", "FP64", []int64{1 << 32, 1 << 32, 1 << 32}, 8, make([]byte, 8))), "can hold"},
		{"dims overflow to small product", frame(1, column("a", "UINT8", []int64{1 << 62, 4}, 0, nil)), "can hold"},
		{"elem size overflow", frame(1, column("a", "FP64", []int64{1 << 61}, 8, make([]byte, 8))), "can hold"},
		{"negative dim", frame(1, column("a", "FP32", []int64{-1, 4}, 16, make([]byte, 16))), "negative"},
		{"unknown datatype", frame(1, column("a", "FP8", []int64{1}, 1, []byte{0})), "unknown datatype"},
		{"bool not 0/1", frame(1, column("a", "BOOL", []int64{2}, 2, []byte{1, 2})), "not 0 or 1"},
		{"trailing bytes", append(frame(1, column("a", "INT8", []int64{1}, 1, []byte{7})), 0), "trailing"},
		{"name not utf8", frame(1, column("\xff", "INT8", []int64{1}, 1, []byte{7})), "UTF-8"},
		{"too many BYTES elements", frame(1, column("s", "BYTES", []int64{1000}, 8, make([]byte, 8))), "can hold"},
		{"BYTES element length lies", frame(1, column("s", "BYTES", []int64{1}, 8, append(binary.LittleEndian.AppendUint32(nil, 99), "abcd"...))), "truncated"},
		{"BYTES too few elements", frame(1, column("s", "BYTES", []int64{1}, 12, append(str("ab"), str("cd")...))), "after the last BYTES"},
		{"BYTES huge count", frame(1, column("s", "BYTES", []int64{1 << 40}, 4, str(""))), "can hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeTensors(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeTensorsEveryTruncation(t *testing.T) {
	enc := EncodeTensors(nil, []Tensor{
		sample("a", "FP32", []int64{2, 2}), sample("b", "BYTES", []int64{3}), sample("c", "BOOL", []int64{2}),
	})
	for n := range len(enc) {
		if _, err := DecodeTensors(enc[:n]); err == nil {
			t.Fatalf("prefix of %d/%d bytes decoded without error", n, len(enc))
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		t       Tensor
		wantErr string
	}{
		{"ok", NewFloat32("x", []int64{1, 2}, []float32{1, 2}), ""},
		{"ok bytes", NewBytes("s", nil, []string{"a", ""}), ""},
		{"unknown datatype", Tensor{Name: "x", Datatype: "FP8"}, "unknown datatype"},
		{"data short", NewFloat32("x", []int64{3}, []float32{1, 2}), "needs 12 data bytes"},
		{"strings short", NewBytes("s", []int64{3}, []string{"a"}), "needs 3 BYTES elements"},
		{"negative dim", NewFloat32("x", []int64{-1}, nil), "negative"},
		{"too many dims", Tensor{Name: "x", Datatype: "INT8", Shape: make([]int64, 256)}, "256 dims"},
		{"long name", Tensor{Name: strings.Repeat("n", 70000), Datatype: "INT8", Shape: []int64{0}}, "65535"},
		{"overflow", Tensor{Name: "x", Datatype: "FP64", Shape: []int64{1 << 62, 4}}, "too many elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.t.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	f32 := NewFloat32("a", nil, []float32{1.5, -2, float32(math.Inf(1))})
	if got, err := f32.Float32s(); err != nil || !reflect.DeepEqual(got, []float32{1.5, -2, float32(math.Inf(1))}) {
		t.Fatalf("Float32s: %v %v", got, err)
	}
	f64 := NewFloat64("b", []int64{1, 2}, []float64{math.Pi, 1e-300})
	if got, err := f64.Float64s(); err != nil || !reflect.DeepEqual(got, []float64{math.Pi, 1e-300}) {
		t.Fatalf("Float64s: %v %v", got, err)
	}
	i64 := NewInt64("c", nil, []int64{math.MinInt64, 0, math.MaxInt64})
	if got, err := i64.Int64s(); err != nil || !reflect.DeepEqual(got, []int64{math.MinInt64, 0, math.MaxInt64}) {
		t.Fatalf("Int64s: %v %v", got, err)
	}
	if _, err := i64.Float32s(); err == nil || !strings.Contains(err.Error(), "is INT64, not FP32") {
		t.Fatalf("Float32s of INT64: %v", err)
	}
	if n := f64.NumElements(); n != 2 {
		t.Fatalf("NumElements = %d", n)
	}
	if n := (Tensor{}).NumElements(); n != 1 {
		t.Fatalf("scalar NumElements = %d", n)
	}
}

func TestElemSize(t *testing.T) {
	want := map[string]int{"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2,
		"INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BYTES": 0}
	for _, dt := range allDatatypes {
		if n, ok := ElemSize(dt); !ok || n != want[dt] {
			t.Errorf("ElemSize(%s) = %d, %v", dt, n, ok)
		}
	}
	if _, ok := ElemSize("fp32"); ok {
		t.Error("datatype names are case-sensitive")
	}
}

func FuzzDecodeTensors(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeTensors(nil, []Tensor{sample("a", "FP32", []int64{2, 2}), sample("b", "BYTES", []int64{3})}))
	f.Add(EncodeTensors(nil, []Tensor{sample("c", "BOOL", []int64{0, 5}), sample("d", "INT64", []int64{})}))
	f.Add(frame(1, column("a", "FP64", []int64{1 << 32, 1 << 32}, 8, make([]byte, 8))))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := DecodeTensors(b)
		if err != nil {
			return
		}
		for _, x := range ts {
			if err := x.Validate(); err != nil {
				t.Fatalf("decoded tensor does not validate: %v", err)
			}
		}
		if re := EncodeTensors(nil, ts); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in  % x\n out % x", b, re)
		}
	})
}

// TestDecodeTensorsShapesApart: the decoded tensors' shapes share one block (tensorRoom) but each is its own: an
// append to one leaves the others as they were, whether the shapes fit the room or not.
func TestDecodeTensorsShapesApart(t *testing.T) {
	for _, shapes := range [][][]int64{
		{{2}, {2, 1}, {1, 2, 1}}, // 6 dims: exactly the room of 3 tensors
		{{1, 2, 1}},              // beyond the room of one tensor
		{{3}},
		{{}, {2}},
	} {
		in := make([]Tensor, len(shapes))
		for i, s := range shapes {
			in[i] = sample(fmt.Sprintf("t%d", i), "INT64", s)
		}
		out, err := DecodeTensors(EncodeTensors(nil, in))
		if err != nil {
			t.Fatal(err)
		}
		for i := range out {
			out[i].Shape = append(out[i].Shape, 99, 99)
		}
		for i := range out {
			if got := out[i].Shape[:len(shapes[i])]; !slices.Equal(got, shapes[i]) {
				t.Errorf("shapes %v: tensor %d has shape %v after appends to the others", shapes, i, got)
			}
		}
	}
}

package inference

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

func le(vals ...any) []byte {
	var b []byte
	for _, v := range vals {
		b, _ = binary.Append(b, binary.LittleEndian, v)
	}
	return b
}

func TestDecodeRequest(t *testing.T) {
	one := []workerproto.Column{{Name: "features", Datatype: "FP32", Shape: []int64{-1, 2}}}
	many := []workerproto.Column{
		{Name: "a", Datatype: "INT16"}, {Name: "b", Datatype: "BOOL"}, {Name: "c", Datatype: "BYTES"},
		{Name: "d", Datatype: "UINT64"}, {Name: "e", Datatype: "FP64"}, {Name: "f", Datatype: "FP16"},
		{Name: "g", Datatype: "INT8"}, {Name: "h", Datatype: "UINT8"},
	}
	tests := []struct {
		name    string
		inputs  []workerproto.Column
		body    string
		want    []workerproto.Tensor
		wantErr string
	}{
		{"data", one, `{"data": [[1, 2.5], [3, -4]]}`,
			[]workerproto.Tensor{{Name: "features", Datatype: "FP32", Shape: []int64{2, 2}, Data: le(float32(1), float32(2.5), float32(3), float32(-4))}}, ""},
		{"single input any name", one, `{"inputs": {"x": [[1, 2]]}}`,
			[]workerproto.Tensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 2}, Data: le(float32(1), float32(2))}}, ""},
		{"every type, sorted by name", many, `{"inputs": {
			"h": [255], "g": [[-128], [127]], "f": [1, -2, 65504], "e": [1e-300], "d": [18446744073709551615, 2.0],
			"c": [["x", "héllo"]], "b": [true, false, 1, 0], "a": [-32768, 1.0]}}`,
			[]workerproto.Tensor{
				{Name: "a", Datatype: "INT16", Shape: []int64{2}, Data: le(int16(-32768), int16(1))},
				{Name: "b", Datatype: "BOOL", Shape: []int64{4}, Data: []byte{1, 0, 1, 0}},
				{Name: "c", Datatype: "BYTES", Shape: []int64{1, 2}, Strings: [][]byte{[]byte("x"), []byte("héllo")}},
				{Name: "d", Datatype: "UINT64", Shape: []int64{2}, Data: le(uint64(math.MaxUint64), uint64(2))},
				{Name: "e", Datatype: "FP64", Shape: []int64{1}, Data: le(1e-300)},
				{Name: "f", Datatype: "FP16", Shape: []int64{3}, Data: le(uint16(0x3c00), uint16(0xc000), uint16(0x7bff))},
				{Name: "g", Datatype: "INT8", Shape: []int64{2, 1}, Data: []byte{0x80, 0x7f}},
				{Name: "h", Datatype: "UINT8", Shape: []int64{1}, Data: []byte{255}},
			}, ""},
		{"empty list", one, `{"data": []}`, []workerproto.Tensor{{Name: "features", Datatype: "FP32", Shape: []int64{0}, Data: []byte{}}}, ""},
		{"both", one, `{"data": [1], "inputs": {"features": [1]}}`, nil, `either "inputs" or "data"`},
		{"neither", one, `{}`, nil, `no "inputs" and no "data"`},
		{"unknown key", one, `{"instances": [1]}`, nil, `unknown field "instances"`},
		{"data with many inputs", many, `{"data": [1]}`, nil, `"data" is for single-input models`},
		{"unknown input", many, `{"inputs": {"a": [1], "zz": [1]}}`, nil, `unknown input "zz" (model inputs: a, b, c`},
		{"ragged", one, `{"data": [[1, 2], [3]]}`, nil, "input features: ragged nested list"},
		{"ragged deeper", one, `{"data": [[1, 2], [3, [4]]]}`, nil, "ragged nested list"},
		{"string for FP32", one, `{"data": [["1", 2]]}`, nil, "input features: element 0: expected a number for FP32, got a string"},
		{"null", one, `{"data": [[null, 2]]}`, nil, "got null"},
		{"FP32 overflow", one, `{"data": [[1e39, 2]]}`, nil, "1e39 does not fit FP32"},
		{"fractional int", many, `{"inputs": {"a": [1.5]}}`, nil, "1.5 is not an INT16"},
		{"int overflow", many, `{"inputs": {"g": [128]}}`, nil, "128 is not an INT8"},
		{"negative uint", many, `{"inputs": {"d": [-1]}}`, nil, "-1 is not a UINT64"},
		{"uint overflow", many, `{"inputs": {"h": [256]}}`, nil, "256 is not a UINT8"},
		{"bool 2", many, `{"inputs": {"b": [2]}}`, nil, "expected true/false for BOOL, got a number"},
		{"number for BYTES", many, `{"inputs": {"c": [1]}}`, nil, "expected a string for BYTES, got a number"},
		{"FP16 overflow", many, `{"inputs": {"f": [70000]}}`, nil, "70000 does not fit FP16"},
		{"not json", one, `[1`, nil, "request must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeWorkerJSON([]byte(tt.body), tt.inputs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEncodeOutputs(t *testing.T) {
	tests := []struct {
		name string
		in   []workerproto.Tensor
		want string
	}{
		{"nested and ordered", []workerproto.Tensor{
			workerproto.NewFloat32("p", []int64{2, 2}, []float32{0.1, 0.9, 1e-7, 3}),
			workerproto.NewInt64("label", nil, []int64{1, -2}),
		}, `{"outputs":{"p":[[0.1,0.9],[1e-07,3]],"label":[1,-2]}}`},
		{"non-finite floats become null", []workerproto.Tensor{
			workerproto.NewFloat64("x", nil, []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0.5}),
		}, `{"outputs":{"x":[null,null,null,0.5]}}`},
		{"bytes bool and small ints", []workerproto.Tensor{
			workerproto.NewBytes("s", []int64{1, 2}, []string{`a"b`, "\xff"}),
			{Name: "b", Datatype: "BOOL", Shape: []int64{2}, Data: []byte{1, 0}},
			{Name: "i8", Datatype: "INT8", Shape: []int64{1}, Data: []byte{0xff}},
			{Name: "u16", Datatype: "UINT16", Shape: []int64{1}, Data: le(uint16(65535))},
			{Name: "i32", Datatype: "INT32", Shape: []int64{1}, Data: le(int32(-7))},
			{Name: "u64", Datatype: "UINT64", Shape: []int64{1}, Data: le(uint64(math.MaxUint64))},
		}, `{"outputs":{"s":[["a\"b","\ufffd"]],"b":[true,false],"i8":[-1],"u16":[65535],"i32":[-7],"u64":[18446744073709551615]}}`},
		{"zero-size and scalar", []workerproto.Tensor{
			workerproto.NewFloat32("empty", []int64{2, 0}, nil),
			workerproto.NewInt64("scalar", []int64{}, []int64{5}),
		}, `{"outputs":{"empty":[[],[]],"scalar":5}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeWorkerJSON(tt.in)
			if err != nil || string(got) != tt.want {
				t.Fatalf("got  %s (%v)\nwant %s", got, err, tt.want)
			}
		})
	}
}

func TestWorkerJSONEdges(t *testing.T) {
	one := []workerproto.Column{{Name: "x", Datatype: "FP32"}}
	errs := []struct{ body, want string }{
		{`{"data": [1, 2`, `request must be {"inputs": {name: nested list}} or {"data": nested list}: unexpected EOF`},
		{`{"data": [1, 2}`, `request must be {"inputs": {name: nested list}} or {"data": nested list}: invalid JSON at byte 14`},
		{`{"inputs": [1]}`, `request must be {"inputs": {name: nested list}} or {"data": nested list}: inputs: expected an object of nested lists, got a list`},
		{`{"data": [[1, 2], [3]]}`, "input x: ragged nested list at data[1]: expected 2 elements like data[0], got 1"},
		{`{"inputs": {"a b": [[1], 2]}}`, `input x: ragged nested list at inputs["a b"][1]: expected a list (the lists nest unevenly), got number 2`},
		{`{"data": [{"a": 1}]}`, "input x: element 0: expected a number for FP32, got an object"},
		{`{"data": ["NaN"]}`, "input x: element 0: expected a number for FP32, got a string"},
	}
	for _, e := range errs {
		if _, err := DecodeWorkerJSON([]byte(e.body), one); err == nil || !strings.HasPrefix(err.Error(), e.want) {
			t.Errorf("%s: got %v, want %q", e.body, err, e.want)
		}
	}
	ts, err := DecodeWorkerJSON([]byte(`{"inputs": {"x": 2.5}}`), one)
	if err != nil || len(ts) != 1 || len(ts[0].Shape) != 0 || ts[0].Shape == nil {
		t.Fatalf("scalar: got %+v, %v", ts, err)
	}
	out, err := EncodeWorkerJSON([]workerproto.Tensor{
		{Name: "h", Datatype: "FP16", Shape: []int64{2}, Data: le(uint16(0x2e66), uint16(0x7c00))},
		workerproto.NewFloat32("big", nil, []float32{123456789}),
	})
	if want := `{"outputs":{"h":[0.1,null],"big":[1.2345679e+08]}}`; err != nil || string(out) != want {
		t.Fatalf("got %s (%v), want %s", out, err, want)
	}
}

package inference

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"testing"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// binaryBody is a binary-extension request: the JSON part and the raw data after it.
func binaryBody(jsonPart string, raw ...[]byte) ([]byte, int) {
	return append([]byte(jsonPart), bytes.Join(raw, nil)...), len(jsonPart)
}

func f32s(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func bytesElems(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func TestDecodeV2BinaryRequest(t *testing.T) {
	body, n := binaryBody(`{"inputs": [
		{"name": "x", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
		{"name": "flag", "shape": [2], "datatype": "BOOL", "data": [true, false]},
		{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 14}}],
		"outputs": [{"name": "p", "parameters": {"binary_data": true}}, {"name": "q"}]}`,
		f32s(1, 2, 3.5, -4), bytesElems("abc", "défi"[:3]))
	// "défi"[:3] is "d\xc3\xa9": BYTES need not be UTF-8 (14 = 4+3 + 4+3)
	req, err := DecodeV2BinaryRequest(body, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Inputs[0]; !bytes.Equal(got.Data, f32s(1, 2, 3.5, -4)) || got.Datatype != "FP32" {
		t.Fatalf("binary FP32 input: %+v", got)
	}
	if got := req.Inputs[1]; !bytes.Equal(got.Data, []byte{1, 0}) {
		t.Fatalf("JSON BOOL input next to binary ones: %+v", got)
	}
	if got := req.Inputs[2].Strings; len(got) != 2 || string(got[0]) != "abc" || string(got[1]) != "d\xc3\xa9" {
		t.Fatalf("binary BYTES input: %q", got)
	}
	if !req.BinaryOutput("p") || req.BinaryOutput("q") {
		t.Fatalf("binary outputs: p %v q %v, want true false", req.BinaryOutput("p"), req.BinaryOutput("q"))
	}

	// The same tensor as JSON decodes to the same bytes.
	asJSON, err := DecodeV2Request([]byte(`{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3.5, -4]}]}`))
	if err != nil || !bytes.Equal(asJSON.Inputs[0].Data, req.Inputs[0].Data) {
		t.Fatalf("JSON and binary disagree: %v %v", asJSON, err)
	}
}

func TestDecodeV2BinaryRequestErrors(t *testing.T) {
	fp32 := func(size int) string {
		return `{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": ` + strconv.Itoa(size) + `}}]}`
	}
	tests := []struct {
		name   string
		json   string
		raw    []byte
		header int // -1: the JSON part's length
		want   string
	}{
		{"header past the body", fp32(8), f32s(1, 2), 1000, "Inference-Header-Content-Length: 1000 is not within the body's 108 bytes"},
		{"negative header", fp32(8), f32s(1, 2), -5, "Inference-Header-Content-Length: -5 is not within the body's 108 bytes"},
		{"size past the data", fp32(12), f32s(1, 2), -1, "inputs[0].parameters.binary_data_size: 12 bytes, but only 8 bytes of binary data are left in the body"},
		{"size against the shape", fp32(4), f32s(1, 2), -1, "inputs[0].parameters.binary_data_size: 4 bytes, but shape [2] of FP32 needs 8"},
		{"data left over", fp32(8), f32s(1, 2, 3), -1, "Inference-Header-Content-Length: 4 bytes of binary data follow the inputs' binary_data_size: check the sizes and the header"},
		{"data and size", `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}]}`, f32s(1), -1, "inputs[0].data: give data or parameters.binary_data_size, not both"},
		{"size not a count", `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": -4}}]}`, f32s(1), -1, "inputs[0].parameters.binary_data_size: expected a byte count, got number -4"},
		{"bool not 0 or 1", `{"inputs": [{"name": "b", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}]}`, []byte{1, 7}, -1, "inputs[0].parameters.binary_data_size: element 1 of a BOOL tensor is byte 7: want 0 or 1"},
		{"bytes prefix cut", `{"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 2}}]}`, []byte{1, 0}, -1, "inputs[0].parameters.binary_data_size: BYTES element 0: a length prefix needs 4 bytes, 2 are left"},
		{"bytes length past the data", `{"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}`, []byte{9, 0, 0, 0, 'a', 'b'}, -1, "inputs[0].parameters.binary_data_size: BYTES element 0: length 9, but 2 bytes are left"},
		{"bytes count against the shape", `{"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]}`, bytesElems("a"), -1, "inputs[0].parameters.binary_data_size: 1 BYTES elements, but shape [2] needs 2"},
		{"bad JSON part", `{"inputs": [`, nil, -1, "invalid JSON at byte 12 (line 1): unexpected end of input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, n := binaryBody(tt.json, tt.raw)
			if tt.header != -1 {
				n = tt.header
			}
			_, err := DecodeV2BinaryRequest(body, n)
			wantInvalid(t, err, tt.want)
		})
	}
}

func TestEncodeV2BinaryResponse(t *testing.T) {
	outputs := []workerproto.Tensor{
		{Name: "label", Datatype: "INT64", Shape: []int64{2}, Data: binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1), 0)},
		{Name: "p", Datatype: "FP32", Shape: []int64{2}, Data: f32s(0.75, float32(math.NaN()))}, // NaN: only binary can carry it
		{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Strings: [][]byte{[]byte("yes")}},
	}
	req, err := DecodeV2BinaryRequest(binaryBody(`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
		"parameters": {"binary_data_output": true}, "outputs": [{"name": "p"}, {"name": "s"}, {"name": "label", "parameters": {"binary_data": false}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, n, err := EncodeV2BinaryResponse("m", "1", "r1", outputs, req)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"model_name":"m","model_version":"1","id":"r1","outputs":[` +
		`{"name":"p","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},` +
		`{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":7}},` +
		`{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]}]}`
	if string(body[:n]) != wantJSON {
		t.Fatalf("JSON part\n got: %s\nwant: %s", body[:n], wantJSON)
	}
	if want := append(f32s(0.75, float32(math.NaN())), bytesElems("yes")...); !bytes.Equal(body[n:], want) {
		t.Fatalf("binary part % x, want % x", body[n:], want)
	}
	// Without binary outputs the answer is the plain JSON one.
	plain, err := DecodeV2Request([]byte(`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "outputs": [{"name": "label"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, n, err = EncodeV2BinaryResponse("m", "1", "r1", outputs, plain)
	if err != nil || n != len(body) {
		t.Fatalf("no binary output: %d of %d bytes are JSON, %v", n, len(body), err)
	}
}

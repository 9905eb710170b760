package inference

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

type grpcInput = inferencepb.ModelInferRequest_InferInputTensor

// grpcCase is one input given three ways: V2 JSON, typed gRPC contents, and raw gRPC contents; all three must
// decode to the same tensor.
type grpcCase struct {
	json     string
	contents *inferencepb.InferTensorContents
}

var grpcCases = map[string]grpcCase{
	"BOOL":   {`[true, false, true]`, &inferencepb.InferTensorContents{BoolContents: []bool{true, false, true}}},
	"INT8":   {`[-128, 0, 127]`, &inferencepb.InferTensorContents{IntContents: []int32{-128, 0, 127}}},
	"INT16":  {`[-32768, 1, 32767]`, &inferencepb.InferTensorContents{IntContents: []int32{-32768, 1, 32767}}},
	"INT32":  {`[-2147483648, 2, 2147483647]`, &inferencepb.InferTensorContents{IntContents: []int32{-2147483648, 2, 2147483647}}},
	"INT64":  {`[-9223372036854775808, 3, 9223372036854775807]`, &inferencepb.InferTensorContents{Int64Contents: []int64{-9223372036854775808, 3, 9223372036854775807}}},
	"UINT8":  {`[0, 1, 255]`, &inferencepb.InferTensorContents{UintContents: []uint32{0, 1, 255}}},
	"UINT16": {`[0, 1, 65535]`, &inferencepb.InferTensorContents{UintContents: []uint32{0, 1, 65535}}},
	"UINT32": {`[0, 1, 4294967295]`, &inferencepb.InferTensorContents{UintContents: []uint32{0, 1, 4294967295}}},
	"UINT64": {`[0, 1, 18446744073709551615]`, &inferencepb.InferTensorContents{Uint64Contents: []uint64{0, 1, 18446744073709551615}}},
	"FP32":   {`[1.5, -2.25, 3e38]`, &inferencepb.InferTensorContents{Fp32Contents: []float32{1.5, -2.25, 3e38}}},
	"FP64":   {`[1.5, -2.25, 1e300]`, &inferencepb.InferTensorContents{Fp64Contents: []float64{1.5, -2.25, 1e300}}},
	"BYTES":  {`["a", "", "héllo"]`, &inferencepb.InferTensorContents{BytesContents: [][]byte{[]byte("a"), {}, []byte("héllo")}}},
}

func TestDecodeGRPCRequestMatchesV2JSON(t *testing.T) {
	for dt, c := range grpcCases {
		want, err := DecodeV2Request([]byte(`{"inputs": [{"name": "x", "shape": [3], "datatype": "` + dt + `", "data": ` + c.json + `}]}`))
		if err != nil {
			t.Fatalf("%s JSON: %v", dt, err)
		}
		typed, err := DecodeGRPCRequest(&inferencepb.ModelInferRequest{Id: "r1",
			Inputs: []*grpcInput{{Name: "x", Datatype: dt, Shape: []int64{3}, Contents: c.contents}}})
		if err != nil {
			t.Fatalf("%s typed contents: %v", dt, err)
		}
		assertSameTensor(t, dt+" typed", typed.Inputs[0], want.Inputs[0])
		if typed.ID != "r1" {
			t.Fatalf("id %q, want r1", typed.ID)
		}
		// raw_input_contents is the binary extension's layout of the same tensor.
		raw := binaryTensorData(&want.Inputs[0], workerproto.ParseDatatype(dt))
		fromRaw, err := DecodeGRPCRequest(&inferencepb.ModelInferRequest{
			Inputs: []*grpcInput{{Name: "x", Datatype: dt, Shape: []int64{3}}}, RawInputContents: [][]byte{raw}})
		if err != nil {
			t.Fatalf("%s raw: %v", dt, err)
		}
		assertSameTensor(t, dt+" raw", fromRaw.Inputs[0], want.Inputs[0])
	}
}

func assertSameTensor(t *testing.T, what string, got, want workerproto.Tensor) {
	t.Helper()
	if got.Name != want.Name || got.Datatype != want.Datatype || !reflect.DeepEqual(got.Shape, want.Shape) ||
		!bytes.Equal(got.Data, want.Data) || len(got.Strings) != len(want.Strings) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
	for i := range got.Strings {
		if !bytes.Equal(got.Strings[i], want.Strings[i]) {
			t.Fatalf("%s: string %d is %q, want %q", what, i, got.Strings[i], want.Strings[i])
		}
	}
}

func TestDecodeGRPCRequestErrors(t *testing.T) {
	fp32 := func(vs ...float32) *inferencepb.InferTensorContents {
		return &inferencepb.InferTensorContents{Fp32Contents: vs}
	}
	in := func(name, dt string, shape []int64, c *inferencepb.InferTensorContents) *grpcInput {
		return &grpcInput{Name: name, Datatype: dt, Shape: shape, Contents: c}
	}
	for _, c := range []struct {
		name string
		req  *inferencepb.ModelInferRequest
		want string
	}{
		{"no inputs", &inferencepb.ModelInferRequest{}, "inputs: empty"},
		{"no name", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("", "FP32", []int64{1}, fp32(1))}}, "inputs[0].name: empty name"},
		{"twice", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP32", []int64{1}, fp32(1)), in("x", "FP32", []int64{1}, fp32(1))}}, `input "x" is given twice`},
		{"datatype", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FLOAT", []int64{1}, fp32(1))}}, `unknown datatype "FLOAT"`},
		{"negative dim", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP32", []int64{-1, 4}, fp32(1))}}, "dimension 0 is -1"},
		{"count", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP32", []int64{2, 4}, fp32(1, 2, 3))}}, "3 values in fp32_contents, but shape [2 4] needs 8"},
		{"wrong field", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP64", []int64{1}, fp32(1))}}, "1 values in fp32_contents, but datatype FP64 takes fp64_contents"},
		{"range", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "INT8", []int64{2}, &inferencepb.InferTensorContents{IntContents: []int32{1, 200}})}}, "int_contents[1] = 200 is out of range for INT8"},
		{"fp16 typed", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP16", []int64{1}, nil)}}, "FP16 has no typed contents field: send input \"x\" in raw_input_contents"},
		{"raw count", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP32", []int64{1}, nil), in("y", "FP32", []int64{1}, nil)},
			RawInputContents: [][]byte{f32s(1)}}, "raw_input_contents: 1 entries for 2 inputs"},
		{"raw and typed", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP32", []int64{1}, fp32(1))},
			RawInputContents: [][]byte{f32s(1)}}, "send every input's data one way"},
		{"raw size", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP32", []int64{2, 4}, nil)},
			RawInputContents: [][]byte{f32s(1, 2, 3)}}, `raw_input_contents[0] (input "x"): 12 bytes, but shape [2 4] of FP32 needs 32`},
		{"output name", &inferencepb.ModelInferRequest{Inputs: []*grpcInput{in("x", "FP32", []int64{1}, fp32(1))},
			Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: ""}}}, "outputs[0].name: empty name"},
	} {
		_, err := DecodeGRPCRequest(c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestEncodeGRPCResponse(t *testing.T) {
	outputs := []workerproto.Tensor{
		{Name: "p", Datatype: "FP32", Shape: []int64{2}, Data: f32s(0.25, 0.75)},
		{Name: "label", Datatype: "INT64", Shape: []int64{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Strings: [][]byte{[]byte("yes")}},
	}
	req := &V2Request{}
	typed, err := EncodeGRPCResponse("m", "3", "r", outputs, req, false)
	if err != nil {
		t.Fatal(err)
	}
	if typed.ModelName != "m" || typed.ModelVersion != "3" || typed.Id != "r" || len(typed.RawOutputContents) != 0 {
		t.Fatalf("typed answer: %v", typed)
	}
	if c := typed.Outputs[0].Contents; !reflect.DeepEqual(c.Fp32Contents, []float32{0.25, 0.75}) {
		t.Fatalf("FP32 contents %v", c)
	}
	if c := typed.Outputs[1].Contents; !reflect.DeepEqual(c.Int64Contents, []int64{1, -1}) {
		t.Fatalf("INT64 contents %v", c)
	}
	if c := typed.Outputs[2].Contents; len(c.BytesContents) != 1 || string(c.BytesContents[0]) != "yes" {
		t.Fatalf("BYTES contents %v", c)
	}

	raw, err := EncodeGRPCResponse("m", "3", "r", outputs, req, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.RawOutputContents) != 3 || !bytes.Equal(raw.RawOutputContents[0], outputs[0].Data) ||
		!bytes.Equal(raw.RawOutputContents[2], bytesElems("yes")) || raw.Outputs[0].Contents != nil {
		t.Fatalf("raw answer: %v", raw)
	}

	// FP16 has no typed field: the whole answer is raw, as the protocol allows one form per answer.
	half := append(outputs[:1:1], workerproto.Tensor{Name: "h", Datatype: "FP16", Shape: []int64{1}, Data: []byte{0, 0x3c}})
	mixed, err := EncodeGRPCResponse("m", "3", "", half, req, false)
	if err != nil || len(mixed.RawOutputContents) != 2 || mixed.Outputs[0].Contents != nil {
		t.Fatalf("FP16 answer: %v %v", mixed, err)
	}

	// Requested outputs: those only, in the request's order; an unknown one is named.
	sel, err := EncodeGRPCResponse("m", "3", "", outputs, &V2Request{Outputs: []string{"s", "p"}}, false)
	if err != nil || len(sel.Outputs) != 2 || sel.Outputs[0].Name != "s" || sel.Outputs[1].Name != "p" {
		t.Fatalf("requested outputs: %v %v", sel, err)
	}
	if _, err := EncodeGRPCResponse("m", "3", "", outputs, &V2Request{Outputs: []string{"nope"}}, false); err == nil ||
		!strings.Contains(err.Error(), `unknown output "nope": the model returns "p", "label", "s"`) {
		t.Fatalf("unknown output: %v", err)
	}
}

package inference

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// wantInvalid checks that err is an EINVALID *slipway.Error with exactly the message want.
func wantInvalid(t testing.TB, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if code := slipway.ErrorCode(err); code != slipway.EINVALID {
		t.Fatalf("code %s (%v), want invalid", code, err)
	}
	if got := slipway.ErrorMessage(err); got != want {
		t.Fatalf("message\n got: %s\nwant: %s", got, want)
	}
}

func v2Body(input string) string { return `{"inputs": [` + input + `]}` }

func TestDecodeV2RequestErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"not json", `{"inputs": [}`, "invalid JSON at byte 12 (line 1): unexpected character '}'"},
		{"trailing data", `{"inputs": []} x`, "invalid JSON at byte 15 (line 1): unexpected data after the top-level value"},
		{"truncated", `{"inputs": [{"name": "a"`, "invalid JSON at byte 24 (line 1): unexpected end of input"},
		{"bad escape", `{"id": "\x"}`, `invalid JSON at byte 8 (line 1): invalid escape "\\x" in string`},
		{"leading zero", `{"x": 01, "inputs": []}`, "invalid JSON at byte 7 (line 1): expected ',' or '}', found '1'"},
		{"control character", "{\"x\":\n \"a\tb\"}", `invalid JSON at byte 9 (line 2): control character '\t' in string`},
		{"not an object", `[1, 2]`, `expected a JSON object like {"inputs": [...]}, got a list`},
		{"no inputs", `{"id": "x"}`, `inputs: missing: send "inputs": [{"name", "shape", "datatype", "data"}, ...]`},
		{"empty inputs", `{"inputs": []}`, "inputs: empty: send at least one input tensor"},
		{"inputs not a list", `{"inputs": {"a": 1}}`, "inputs: expected a list of tensors, got an object"},
		{"input not an object", `{"inputs": [3]}`, `inputs[0]: expected a tensor object {"name", "shape", "datatype", "data"}, got number 3`},
		{"id not a string", `{"id": 5, "inputs": []}`, "id: expected a string, got number 5"},
		{"duplicate key", `{"inputs": [], "inputs": []}`, `duplicate key "inputs" in the request body`},
		{"parameters not an object", `{"parameters": [1], "inputs": []}`, "parameters: expected an object, got a list"},
		{"missing name", v2Body(`{"shape": [1], "datatype": "FP32", "data": [1]}`), "inputs[0].name: missing"},
		{"empty name", v2Body(`{"name": "", "shape": [1], "datatype": "FP32", "data": [1]}`), "inputs[0].name: empty name"},
		{"missing datatype", v2Body(`{"name": "a", "shape": [1], "data": [1]}`), "inputs[0].datatype: missing (use one of " + datatypeList + ")"},
		{"unknown datatype", v2Body(`{"name": "a", "shape": [1], "datatype": "FLOAT32", "data": [1]}`), `inputs[0].datatype: unknown datatype "FLOAT32" (use one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES)`},
		{"missing shape", v2Body(`{"name": "a", "datatype": "FP32", "data": [1]}`), "inputs[0].shape: missing"},
		{"negative dim", v2Body(`{"name": "a", "shape": [-1, 4], "datatype": "FP32", "data": [1]}`), "inputs[0].shape[0]: expected a non-negative integer, got number -1"},
		{"fractional dim", v2Body(`{"name": "a", "shape": [2.5], "datatype": "FP32", "data": [1]}`), "inputs[0].shape[0]: expected a non-negative integer, got number 2.5"},
		{"shape overflow", v2Body(`{"name": "a", "shape": [4294967296, 4294967296], "datatype": "FP32", "data": [1]}`), "inputs[0].shape: [4294967296 4294967296] has too many elements"},
		{"missing data", v2Body(`{"name": "a", "shape": [1], "datatype": "FP32"}`), "inputs[0].data: missing"},
		{"duplicate input", v2Body(`{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}, {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}`), `inputs[1].name: duplicate input "a" (also inputs[0])`},
		{"duplicate field", v2Body(`{"name": "a", "shape": [1], "shape": [2], "datatype": "FP32", "data": [1]}`), `inputs[0]: duplicate key "shape"`},
		{"binary data", v2Body(`{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}`), "inputs[0].parameters.binary_data_size: binary tensor data needs the header Inference-Header-Content-Length (the length of the JSON part of the body): send it, or send the data as JSON"},
		{"too few", v2Body(`{"name": "a", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7]}`), "inputs[0].data: expected 8 elements for shape [2 4], got 7"},
		{"too many", v2Body(`{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2, 3]}`), "inputs[0].data: expected 2 elements for shape [2], got 3"},
		{"scalar for many", v2Body(`{"name": "a", "shape": [2], "datatype": "FP32", "data": 1}`), "inputs[0].data: expected 2 elements for shape [2], got 1"},
		{"data object", v2Body(`{"name": "a", "shape": [1], "datatype": "FP32", "data": {"x": 1}}`), "inputs[0].data: expected a list of elements, got an object"},
		{"nested too short", v2Body(`{"name": "a", "shape": [2, 4], "datatype": "FP32", "data": [[1, 2, 3, 4], [5, 6, 7]]}`), "inputs[0].data[1]: expected 4 elements (dim 1 of shape [2 4]), got 3"},
		{"nested too many rows", v2Body(`{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}`), "inputs[0].data: expected 1 elements (dim 0 of shape [1 2]), got 2"},
		{"nested too deep", v2Body(`{"name": "a", "shape": [2], "datatype": "FP32", "data": [[1], [2]]}`), "inputs[0].data[0]: expected a value for FP32, got a list (the data is nested deeper than shape [2])"},
		{"nested deeper than shape", v2Body(`{"name": "a", "shape": [1, 1], "datatype": "FP32", "data": [[[1]]]}`), "inputs[0].data[0][0]: expected a value for FP32, got a list (the data is nested deeper than shape [1 1])"},
		{"nested value for a list", v2Body(`{"name": "a", "shape": [2, 1], "datatype": "FP32", "data": [[1], 2]}`), "inputs[0].data[1]: expected a list of 1 elements (dim 1 of shape [2 1]), got number 2"},
		{"flat then nested", v2Body(`{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, [2]]}`), "inputs[0].data[1]: expected a value for FP32, got a list (the data mixes lists and values)"},
		{"uint8 range", v2Body(`{"name": "a", "shape": [2], "datatype": "UINT8", "data": [255, 300]}`), "inputs[0].data[1]: 300 is out of range (UINT8)"},
		{"uint negative", v2Body(`{"name": "a", "shape": [1], "datatype": "UINT64", "data": [-1]}`), "inputs[0].data[0]: -1 is out of range (UINT64)"},
		{"int8 range", v2Body(`{"name": "a", "shape": [1], "datatype": "INT8", "data": [-129]}`), "inputs[0].data[0]: -129 is out of range (INT8)"},
		{"int64 overflow", v2Body(`{"name": "a", "shape": [1], "datatype": "INT64", "data": [9223372036854775808]}`), "inputs[0].data[0]: 9223372036854775808 is out of range (INT64)"},
		{"uint64 overflow", v2Body(`{"name": "a", "shape": [1], "datatype": "UINT64", "data": [18446744073709551616]}`), "inputs[0].data[0]: 18446744073709551616 is out of range (UINT64)"},
		{"int32 fraction", v2Body(`{"name": "a", "shape": [1], "datatype": "INT32", "data": [1.5]}`), "inputs[0].data[0]: 1.5 is not an integer (INT32)"},
		{"int exponent beyond 2^53", v2Body(`{"name": "a", "shape": [1], "datatype": "INT64", "data": [1e17]}`), "inputs[0].data[0]: 1e17: write integers beyond 2^53 without a fraction or exponent (INT64)"},
		{"int huge exponent", v2Body(`{"name": "a", "shape": [1], "datatype": "INT64", "data": [1e400]}`), "inputs[0].data[0]: 1e400 is out of range (INT64)"},
		{"int from string", v2Body(`{"name": "a", "shape": [1], "datatype": "INT64", "data": ["1"]}`), `inputs[0].data[0]: expected an integer for INT64, got string "1"`},
		{"int null", v2Body(`{"name": "a", "shape": [1], "datatype": "INT16", "data": [null]}`), "inputs[0].data[0]: expected an integer for INT16, got null"},
		{"fp32 overflow", v2Body(`{"name": "a", "shape": [1], "datatype": "FP32", "data": [1e39]}`), "inputs[0].data[0]: 1e39 is out of range (FP32)"},
		{"fp64 overflow", v2Body(`{"name": "a", "shape": [1], "datatype": "FP64", "data": [1e309]}`), "inputs[0].data[0]: 1e309 is out of range (FP64)"},
		{"fp16 overflow", v2Body(`{"name": "a", "shape": [1], "datatype": "FP16", "data": [65520]}`), "inputs[0].data[0]: 65520 is out of range (FP16)"},
		{"fp string", v2Body(`{"name": "a", "shape": [1], "datatype": "FP64", "data": ["1.5"]}`), `inputs[0].data[0]: expected a number for FP64, got string "1.5"`},
		{"fp bool", v2Body(`{"name": "a", "shape": [1], "datatype": "FP64", "data": [true]}`), "inputs[0].data[0]: expected a number for FP64, got true"},
		{"bool number", v2Body(`{"name": "a", "shape": [1], "datatype": "BOOL", "data": [1]}`), "inputs[0].data[0]: expected true or false for BOOL, got number 1"},
		{"bytes number", v2Body(`{"name": "a", "shape": [1], "datatype": "BYTES", "data": [1]}`), "inputs[0].data[0]: expected a string for BYTES, got number 1"},
		{"long string clipped", v2Body(`{"name": "a", "shape": [1], "datatype": "FP32", "data": ["` + strings.Repeat("é", 30) + `"]}`), `inputs[0].data[0]: expected a number for FP32, got string "` + strings.Repeat("é", 19) + `…"`},
		{"outputs not a list", `{"inputs": [], "outputs": {"name": "a"}}`, `outputs: expected a list of {"name": ...} objects, got an object`},
		{"output without name", `{"inputs": [], "outputs": [{"parameters": {}}]}`, "outputs[0].name: missing"},
		{"duplicate output", `{"inputs": [], "outputs": [{"name": "a"}, {"name": "a"}]}`, `outputs[1].name: output "a" is already requested by outputs[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeV2Request([]byte(tt.body))
			if err == nil {
				t.Fatalf("no error; decoded %+v", req)
			}
			wantInvalid(t, err, tt.want)
		})
	}
}

func TestDecodeV2RequestValues(t *testing.T) {
	tests := []struct {
		name, input string
		want        string // values as printed by values()
	}{
		{"nested order is row-major", `{"name": "a", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]}`, "1 2 3 4 5 6"},
		{"integral floats for ints", `{"name": "a", "shape": [3], "datatype": "INT64", "data": [1.0, -2e0, 9007199254740992.0]}`, "1 -2 9007199254740992"},
		{"fp32 rounds once from the text", `{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.00000005960464477539062500001]}`, "1.0000001"},
		{"fp16 rounds to nearest even", `{"name": "a", "shape": [4], "datatype": "FP16", "data": [2049, 2051, 65519.99, 1e-8]}`, "2048 2052 65504 0"},
		{"fp underflow is zero", `{"name": "a", "shape": [1], "datatype": "FP64", "data": [1e-400]}`, "0"},
		{"special floats any case", `{"name": "a", "shape": [3], "datatype": "FP64", "data": ["nan", "INF", "-Infinity"]}`, "NaN +Inf -Inf"},
		{"escaped strings", `{"name": "a", "shape": [3], "datatype": "BYTES", "data": ["\u0041\/\t", "\ud83d\ude00", "\ud800x"]}`, "\"A/\\t\" \"😀\" \"\uFFFDx\""},
		{"invalid utf-8 kept", "{\"name\": \"a\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": [\"\xff\xfe\"]}", `"\xff\xfe"`},
		{"empty dims", `{"name": "a", "shape": [3, 0], "datatype": "FP32", "data": [[], [], []]}`, ""},
		{"escaped key", `{"n\u0061me": "a", "shape": [1], "datatype": "BOOL", "d\u0061ta": [false]}`, "false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeV2Request([]byte(v2Body(tt.input)))
			if err != nil {
				t.Fatal(err)
			}
			in := req.Inputs[0]
			if err := in.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(values(in), " "); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDecodeV2RequestDoesNotAliasBody(t *testing.T) {
	body := []byte(v2Body(`{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["hello"]}`))
	req, err := DecodeV2Request(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if got := string(req.Inputs[0].Strings[0]); got != "hello" {
		t.Fatalf("string changed with the body: %q", got)
	}
}

func TestV2RoundTrip(t *testing.T) {
	// A response's outputs, sent back as a request, decode to the same tensors.
	outputs := []workerproto.Tensor{
		workerproto.NewFloat32("f32", []int64{2, 2}, []float32{0.1, -1e-30, 3.4028235e38, 1}),
		workerproto.NewFloat64("f64", nil, []float64{math.Pi, math.Copysign(0, -1), 1e-310, math.MaxFloat64}),
		workerproto.NewInt64("i64", nil, []int64{math.MinInt64, math.MaxInt64, 0}),
		workerproto.NewBytes("s", nil, []string{"a\"b\\c", "\x00\x1f", "é"}),
		{Name: "u64", Datatype: "UINT64", Shape: []int64{1}, Data: binary.LittleEndian.AppendUint64(nil, math.MaxUint64)},
		{Name: "h", Datatype: "FP16", Shape: []int64{3}, Data: []byte{0x01, 0x00, 0xff, 0x7b, 0x66, 0x2e}},
		{Name: "b", Datatype: "BOOL", Shape: []int64{2}, Data: []byte{1, 0}},
	}
	resp, err := EncodeV2Response("m", "", "", outputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Outputs []json.RawMessage `json:"outputs"`
	}
	if err := json.Unmarshal(resp, &doc); err != nil {
		t.Fatal(err)
	}
	body := `{"inputs": [` + string(joinRaw(doc.Outputs)) + `]}`
	req, err := DecodeV2Request([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dumpFrame(req.Inputs), dumpFrame(outputs); got != want {
		t.Fatalf("round trip\n got: %s\nwant: %s", got, want)
	}
}

func joinRaw(rs []json.RawMessage) []byte {
	var b []byte
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return b
}

func TestEncodeV2Response(t *testing.T) {
	outs := []workerproto.Tensor{
		workerproto.NewFloat32("probabilities", []int64{1, 2}, []float32{0.25, float32(math.NaN())}),
		workerproto.NewInt64("label", nil, []int64{1}),
	}
	tests := []struct {
		name      string
		requested []string
		want      string
	}{
		{"all outputs", nil, `{"model_name":"churn","model_version":"2","id":"r1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,2],"data":[0.25,null]},{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}`},
		{"requested order", []string{"label"}, `{"model_name":"churn","model_version":"2","id":"r1","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := EncodeV2Response("churn", "2", "r1", outs, tt.requested)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
	_, err := EncodeV2Response("churn", "2", "", outs, []string{"label", "score"})
	wantInvalid(t, err, `outputs[1]: unknown output "score": the model returns "probabilities", "label"`)
	_, err = EncodeV2Response("churn", "2", "", []workerproto.Tensor{{Name: "x", Datatype: "FP32", Shape: []int64{2}, Data: []byte{1}}}, nil)
	wantInvalid(t, err, `model output "x" is malformed: workerproto: tensor "x": shape [2] of FP32 needs 8 data bytes, have 1`)
	_, err = EncodeV2Response("churn", "2", "", []workerproto.Tensor{{Name: "x", Datatype: "STRING", Shape: []int64{}}}, nil)
	wantInvalid(t, err, `model output "x" has unknown datatype "STRING"`)
}

func TestV2ErrorAndMetadata(t *testing.T) {
	if got, want := string(V2Error("bad \"input\"\n")), `{"error":"bad \"input\"\n"}`; got != want {
		t.Errorf("V2Error = %s, want %s", got, want)
	}
	got := string(EncodeV2ModelMetadata("churn", []string{"1", "2"}, "onnxruntime_onnx",
		[]workerproto.Column{{Name: "features", Datatype: "FP32", Shape: []int64{-1, 4}}, {Name: "x", Datatype: "BYTES"}},
		nil))
	want := `{"name":"churn","versions":["1","2"],"platform":"onnxruntime_onnx","inputs":[{"name":"features","datatype":"FP32","shape":[-1,4]},{"name":"x","datatype":"BYTES","shape":[-1]}],"outputs":[]}`
	if got != want {
		t.Errorf("model metadata\n got %s\nwant %s", got, want)
	}
	if got, want := string(EncodeV2ServerMetadata("0.3.0", nil)), `{"name":"slipway","version":"0.3.0","extensions":[]}`; got != want {
		t.Errorf("server metadata = %s, want %s", got, want)
	}
	for _, b := range [][]byte{V2Error("\xff"), EncodeV2ServerMetadata("v", []string{"a"})} {
		if !json.Valid(b) {
			t.Errorf("invalid JSON %q", b)
		}
	}
}

func TestHalfConversion(t *testing.T) {
	// Every half survives half → float64 → half, and printing reads back to the same half.
	for h := range 1 << 16 {
		f := workerproto.HalfToFloat64(uint16(h))
		if math.IsNaN(f) {
			if uint16(h)&0x7c00 != 0x7c00 || uint16(h)&0x3ff == 0 {
				t.Fatalf("%#04x: NaN from a non-NaN", h)
			}
			continue
		}
		if got := workerproto.HalfFromFloat64(f); got != uint16(h) {
			t.Fatalf("%#04x → %v → %#04x", h, f, got)
		}
		s := appendHalf(nil, uint16(h))
		if math.IsInf(f, 0) {
			if string(s) != "null" {
				t.Fatalf("%#04x printed %s", h, s)
			}
			continue
		}
		var back float64
		if err := json.Unmarshal(s, &back); err != nil || workerproto.HalfFromFloat64(back) != uint16(h) {
			t.Fatalf("%#04x printed %s, which reads back as %v", h, s, back)
		}
	}
	tests := []struct {
		in   float64
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65519.99, 0x7bff},
		{65520, 0x7c00},                    // rounds up to infinity
		{math.Ldexp(1, -24), 0x0001},       // smallest subnormal
		{math.Ldexp(1, -25), 0x0000},       // ties to even: zero
		{math.Ldexp(1.5, -25), 0x0001},     // above the tie
		{math.Ldexp(3, -25), 0x0002},       // 1.5 ulp: ties to even (2)
		{math.Ldexp(1023.5, -24), 0x0400},  // rounds from the largest subnormal into the smallest normal
		{1 + math.Ldexp(1, -11), 0x3c00},   // tie, even stays
		{1 + 3*math.Ldexp(1, -11), 0x3c02}, // tie, odd rounds up
		{math.Copysign(0, -1), 0x8000},
		{math.Inf(-1), 0xfc00},
	}
	for _, tt := range tests {
		if got := workerproto.HalfFromFloat64(tt.in); got != tt.want {
			t.Errorf("workerproto.HalfFromFloat64(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestAppendFloatMatchesEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1.5, 1e-7, 1e-6, 123456789, 1e20, 1e21, 1.7976931348623157e308, 5e-324, 0.1, 1 / 3.0} {
		want, _ := json.Marshal(f)
		if got := appendFloat(nil, f, 64); string(got) != string(want) {
			t.Errorf("%v: got %s, want %s", f, got, want)
		}
		want32, err := json.Marshal(float32(f))
		if err != nil {
			continue // out of float32 range
		}
		if got := appendFloat(nil, float64(float32(f)), 32); string(got) != string(want32) {
			t.Errorf("float32 %v: got %s, want %s", f, got, want32)
		}
	}
}

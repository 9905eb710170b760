package e2e

import (
	"bytes"
	"context"
	byteorder "encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
)

var grpcAddrRE = regexp.MustCompile(`grpc_addr=(127\.0\.0\.1:\d+)`)

// grpcAddr is where s serves gRPC (started with --grpc-addr): the server logs it before it announces its URL.
func (s *server) grpcAddr() string {
	s.t.Helper()
	m := grpcAddrRE.FindStringSubmatch(s.Log())
	if m == nil {
		s.t.Fatalf("no gRPC listener in the log:\n%s", s.Log())
	}
	return m[1]
}

// v2Output is an output of an HTTP V2 JSON answer.
type v2Output struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int64   `json:"shape"`
	Data     []float64 `json:"data"`
}

// grpcOutputs reads a ModelInfer answer's outputs as the HTTP V2 JSON answer gives them (numbers as float64).
func grpcOutputs(t *testing.T, res *inferencepb.ModelInferResponse) []v2Output {
	t.Helper()
	out := make([]v2Output, len(res.Outputs))
	for i, o := range res.Outputs {
		out[i] = v2Output{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape}
		if len(res.RawOutputContents) > 0 {
			raw := res.RawOutputContents[i]
			switch o.Datatype {
			case "FP32":
				for j := 0; j+4 <= len(raw); j += 4 {
					out[i].Data = append(out[i].Data, float64(math.Float32frombits(byteorder.LittleEndian.Uint32(raw[j:]))))
				}
			case "INT64":
				for j := 0; j+8 <= len(raw); j += 8 {
					out[i].Data = append(out[i].Data, float64(int64(byteorder.LittleEndian.Uint64(raw[j:]))))
				}
			default:
				t.Fatalf("output %s: datatype %s not expected of the example", o.Name, o.Datatype)
			}
			continue
		}
		switch c := o.Contents; o.Datatype {
		case "FP32":
			for _, v := range c.Fp32Contents {
				out[i].Data = append(out[i].Data, float64(v))
			}
		case "INT64":
			for _, v := range c.Int64Contents {
				out[i].Data = append(out[i].Data, float64(v))
			}
		default:
			t.Fatalf("output %s: datatype %s not expected of the example", o.Name, o.Datatype)
		}
	}
	return out
}

// sameOutputs compares outputs with the HTTP V2 JSON answer's: the same names, datatypes, shapes and values
// (the JSON's decimals are the float32s' shortest forms, so float32 equality is exact equality).
func sameOutputs(t *testing.T, what string, got, want []v2Output) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d outputs, HTTP gave %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Datatype != w.Datatype || !slicesEqual(g.Shape, w.Shape) || len(g.Data) != len(w.Data) {
			t.Fatalf("%s output %d: %s %s %v (%d values), HTTP gave %s %s %v (%d values)", what, i, g.Name, g.Datatype, g.Shape, len(g.Data), w.Name, w.Datatype, w.Shape, len(w.Data))
		}
		for j := range w.Data {
			if float32(g.Data[j]) != float32(w.Data[j]) {
				t.Fatalf("%s output %s[%d] = %v, HTTP gave %v", what, g.Name, j, g.Data[j], w.Data[j])
			}
		}
	}
}

func slicesEqual(a, b []int64) bool {
	return len(a) == len(b) && string(mustJSON(a)) == string(mustJSON(b))
}

// TestGRPCInferMatchesHTTP serves the ONNX example over gRPC from the binary and checks ModelInfer, with
// typed contents and with raw_input_contents, against HTTP V2 JSON; then the errors a client can make, the
// metadata calls, and the monitor's count of gRPC requests.
func TestGRPCInferMatchesHTTP(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", "--grpc-addr", "127.0.0.1:0")
	if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx: %s %s", out, errOut)
	}
	deploy(t, s, "churn-onnx", "--model", "churn-onnx:1")
	features, n := onnxFeatures(t)

	req := map[string]any{"id": "http-1", "inputs": []map[string]any{{"name": "features", "shape": []int{n, 4}, "datatype": "FP32", "data": features}}}
	resp, body := s.do(t, "POST", "/v2/models/churn-onnx/infer", s.Token, bytes.NewReader(mustJSON(req)), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP v2: %d %s", resp.StatusCode, body)
	}
	var httpAnswer struct{ Outputs []v2Output }
	if err := json.Unmarshal(body, &httpAnswer); err != nil || len(httpAnswer.Outputs) == 0 {
		t.Fatalf("HTTP v2 answer %s: %v", body, err)
	}

	conn, err := grpc.NewClient(s.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := inferencepb.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.Token), time.Minute)
	defer cancel()

	f32 := make([]float32, len(features))
	var raw []byte
	for i, f := range features {
		f32[i] = float32(f)
		raw = byteorder.LittleEndian.AppendUint32(raw, math.Float32bits(f32[i]))
	}
	input := func() *inferencepb.ModelInferRequest_InferInputTensor {
		return &inferencepb.ModelInferRequest_InferInputTensor{Name: "features", Datatype: "FP32", Shape: []int64{int64(n), 4}}
	}
	typed := &inferencepb.ModelInferRequest{ModelName: "churn-onnx", Id: "grpc-1", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{input()}}
	typed.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: f32}
	var header metadata.MD
	res, err := c.ModelInfer(ctx, typed, grpc.Header(&header))
	if err != nil {
		t.Fatalf("ModelInfer with contents: %v", err)
	}
	if res.ModelName != "churn-onnx" || res.ModelVersion != "1" || res.Id != "grpc-1" || len(res.RawOutputContents) != 0 {
		t.Fatalf("ModelInfer answer: %s %s %s, %d raw outputs", res.ModelName, res.ModelVersion, res.Id, len(res.RawOutputContents))
	}
	if v := header.Get("x-slipway-model-version"); len(v) != 1 || v[0] != "1" {
		t.Fatalf("x-slipway-model-version header: %v", header)
	}
	sameOutputs(t, "gRPC contents", grpcOutputs(t, res), httpAnswer.Outputs)

	rawReq := &inferencepb.ModelInferRequest{ModelName: "churn-onnx", ModelVersion: "1", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{input()},
		RawInputContents: [][]byte{raw}}
	res, err = c.ModelInfer(ctx, rawReq)
	if err != nil {
		t.Fatalf("ModelInfer with raw_input_contents: %v", err)
	}
	if len(res.RawOutputContents) != len(res.Outputs) {
		t.Fatalf("a raw request gets raw outputs: %d raw for %d outputs", len(res.RawOutputContents), len(res.Outputs))
	}
	sameOutputs(t, "gRPC raw", grpcOutputs(t, res), httpAnswer.Outputs)
	res, err = c.ModelInfer(ctx, rawReq, grpc.UseCompressor(gzip.Name)) // as tritonclient's compression_algorithm="gzip"
	if err != nil {
		t.Fatalf("ModelInfer compressed: %v", err)
	}
	sameOutputs(t, "gRPC raw, gzip", grpcOutputs(t, res), httpAnswer.Outputs)

	// Requested outputs: only those.
	one := &inferencepb.ModelInferRequest{ModelName: "churn-onnx", Inputs: rawReq.Inputs, RawInputContents: rawReq.RawInputContents,
		Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: httpAnswer.Outputs[0].Name}}}
	if res, err := c.ModelInfer(ctx, one); err != nil || len(res.Outputs) != 1 || res.Outputs[0].Name != httpAnswer.Outputs[0].Name {
		t.Fatalf("one requested output: %v %v", res, err)
	}

	// The mistakes a client can make, each with its code and a message that says what to fix.
	expect := func(what string, err error, code codes.Code, msg string) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != code || !strings.Contains(st.Message(), msg) {
			t.Fatalf("%s: %v %q, want %v with %q", what, st.Code(), st.Message(), code, msg)
		}
	}
	bad := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer wrong")
	_, err = c.ModelInfer(bad, typed)
	expect("bad token", err, codes.Unauthenticated, "invalid token")
	_, err = c.ModelInfer(context.Background(), typed)
	expect("no token", err, codes.Unauthenticated, "missing bearer token")
	_, err = c.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "nope", Inputs: typed.Inputs})
	expect("unknown model", err, codes.NotFound, "nope")
	_, err = c.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "churn-onnx", ModelVersion: "7", Inputs: typed.Inputs})
	expect("unknown version", err, codes.NotFound, "model churn-onnx serves version 1, not 7")
	short := &inferencepb.ModelInferRequest{ModelName: "churn-onnx", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{input()}}
	short.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: f32[:len(f32)-1]}
	_, err = c.ModelInfer(ctx, short)
	expect("bad shape (contents)", err, codes.InvalidArgument, "fp32_contents, but shape ["+strconv.Itoa(n)+" 4] needs "+strconv.Itoa(4*n))
	_, err = c.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "churn-onnx", Inputs: rawReq.Inputs, RawInputContents: [][]byte{raw[:len(raw)-4]}})
	expect("bad shape (raw)", err, codes.InvalidArgument, `raw_input_contents[0] (input "features")`)
	wrongRank := &inferencepb.ModelInferRequest{ModelName: "churn-onnx", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		{Name: "features", Datatype: "FP32", Shape: []int64{int64(n) * 2, 2}}}, RawInputContents: [][]byte{raw}}
	_, err = c.ModelInfer(ctx, wrongRank)
	if code := status.Code(err); code != codes.InvalidArgument {
		t.Fatalf("a shape the model does not take ([%d 2] for [-1 4]): %v, want InvalidArgument", 2*n, err)
	}

	// Metadata and readiness, as over HTTP.
	if r, err := c.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "churn-onnx"}); err != nil || !r.Ready {
		t.Fatalf("ModelReady: %v %v", r, err)
	}
	md, err := c.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: "churn-onnx"})
	if err != nil || md.Platform != "onnxruntime_onnx" || len(md.Inputs) != 1 || md.Inputs[0].Name != "features" || strings.Join(md.Versions, ",") != "1" {
		t.Fatalf("ModelMetadata: %v %v", md, err)
	}
	if r, err := c.ServerLive(context.Background(), &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive: %v %v", r, err)
	}

	// The monitor counts gRPC requests with the HTTP ones, under protocol="grpc": 4 answered, 3 refused for
	// their shapes (400, as HTTP counts them); an unknown deployment or version, or a bad token, is nobody's.
	resp, body = s.do(t, "GET", "/metrics", s.Token, nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`slipway_predict_requests_total{code="200",deployment="churn-onnx",protocol="grpc",version="1"} 4`,
		`slipway_predict_requests_total{code="400",deployment="churn-onnx",protocol="grpc",version="1"} 3`,
		`slipway_predict_requests_total{code="200",deployment="churn-onnx",protocol="v2",version="1"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(body), "slipway_predict_requests_total"))
		}
	}

	t.Run("python", func(t *testing.T) { checkPythonGRPCClient(t, s, httpAnswer.Outputs) })
	t.Run("tritonclient.grpc", func(t *testing.T) { checkTritonGRPCClient(t, s, httpAnswer.Outputs) })
	t.Run("tritonclient.http", func(t *testing.T) { checkTritonHTTPClient(t, s, httpAnswer.Outputs) })
}

// tritonClientLib makes Triton's Python client importable and returns the folder for PYTHONPATH: its source,
// vendored in third_party/tritonclient (BSD-3, from triton-inference-server/client, src/python/library),
// copied into a temporary folder, with its gRPC stubs generated by grpc_tools.protoc (Debian's
// python3-grpc-tools) from the proto Slipway serves, laid out as Triton's build lays them out
// (tritonclient/grpc/service_pb2.py, service_pb2_grpc.py). Triton's service.proto is KServe's plus calls Slipway
// does not serve (repository, statistics, shared memory), which the client reaches only when they are called;
// its model_config.proto is only imported, so an empty one of the same package stands in for it. It needs
// python3-numpy, -grpcio, -protobuf, -packaging (grpc) and -gevent, -geventhttpclient, -rapidjson (http).
func tritonClientLib(t *testing.T) string {
	t.Helper()
	lib := t.TempDir()
	if err := os.CopyFS(lib, os.DirFS(filepath.Join(repoDir, "third_party", "tritonclient"))); err != nil {
		t.Fatal(err)
	}
	protos := filepath.Join(t.TempDir(), "tritonclient", "grpc")
	if err := os.MkdirAll(protos, 0o755); err != nil {
		t.Fatal(err)
	}
	kserve, err := os.ReadFile(filepath.Join(repoDir, "internal", "inference", "inferencepb", "grpc_predict_v2.proto"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(protos, "service.proto"), string(kserve))
	writeFile(t, filepath.Join(protos, "model_config.proto"), "syntax = \"proto3\";\npackage inference;\n")
	root := filepath.Dir(filepath.Dir(protos))
	gen := exec.Command("/usr/bin/python3", "-m", "grpc_tools.protoc", "-I", root, "--python_out="+lib, "--grpc_python_out="+lib,
		filepath.Join(protos, "service.proto"), filepath.Join(protos, "model_config.proto"))
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("generate tritonclient's stubs (python3-grpc-tools, scripts/install-deps.sh): %v\n%s", err, out)
	}
	return lib
}

// runTritonClient runs one of the testdata scripts that drive Triton's client against s (addr: its HTTP or gRPC
// address) on the ONNX example's rows, and decodes what it prints into out.
func runTritonClient(t *testing.T, s *server, script, addr string, out any) {
	t.Helper()
	features, n := onnxFeatures(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join(repoDir, "e2e", "testdata", script), addr, "churn-onnx", strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "PYTHONPATH="+tritonClientLib(t), "SLIPWAY_TOKEN="+s.Token)
	cmd.Stdin = bytes.NewReader(mustJSON(features))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("%s output %s: %v", script, stdout, err)
	}
}

// checkTritonHTTPClient runs Triton's HTTP client (testdata/tritonclient_http.py) in its default binary mode:
// binary input, binary outputs, and the answer equal to JSON V2's.
func checkTritonHTTPClient(t *testing.T, s *server, want []v2Output) {
	var got struct {
		Outputs  []v2Output
		Binary   []bool
		Live     bool
		Ready    bool
		Platform string
		BadToken int `json:"bad_token"`
	}
	runTritonClient(t, s, "tritonclient_http.py", strings.TrimPrefix(s.URL, "http://"), &got)
	sameOutputs(t, "tritonclient.http", got.Outputs, want)
	if len(got.Binary) != len(want) || slices.Contains(got.Binary, false) {
		t.Fatalf("tritonclient.http: outputs answered as binary data %v, want all", got.Binary)
	}
	if !got.Live || !got.Ready || got.Platform != "onnxruntime_onnx" || got.BadToken != 401 {
		t.Fatalf("tritonclient.http: live %v ready %v platform %q, bad token %d", got.Live, got.Ready, got.Platform, got.BadToken)
	}
}

// checkTritonGRPCClient runs Triton's gRPC client (testdata/tritonclient_grpc.py).
func checkTritonGRPCClient(t *testing.T, s *server, want []v2Output) {
	var got struct {
		Outputs  []v2Output
		Live     bool
		Ready    bool
		Platform string
		BadToken string `json:"bad_token"`
	}
	runTritonClient(t, s, "tritonclient_grpc.py", s.grpcAddr(), &got)
	sameOutputs(t, "tritonclient.grpc", got.Outputs, want)
	if !got.Live || !got.Ready || got.Platform != "onnxruntime_onnx" || got.BadToken != "StatusCode.UNAUTHENTICATED" {
		t.Fatalf("tritonclient.grpc: live %v ready %v platform %q, bad token %q", got.Live, got.Ready, got.Platform, got.BadToken)
	}
}

// onnxFeatures are the ONNX example's reference rows, flat (n rows of 4).
func onnxFeatures(t *testing.T) ([]float64, int) {
	t.Helper()
	raw, err := os.ReadFile(examplePath("onnx-churn", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedONNX
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	var flat []float64
	for _, r := range exp.Features {
		flat = append(flat, r...)
	}
	return flat, len(exp.Features)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// checkPythonGRPCClient runs testdata/grpc_client.py: Python stubs generated at test time from the same
// proto (grpc_tools.protoc, Debian's python3-grpc-tools), ModelInfer with raw_input_contents as Triton's and
// KServe's clients send it, and the answer printed as JSON, compared with HTTP's.
func checkPythonGRPCClient(t *testing.T, s *server, want []v2Output) {
	features, n := onnxFeatures(t)
	stubs := t.TempDir()
	proto := filepath.Join(repoDir, "internal", "inference", "inferencepb", "grpc_predict_v2.proto")
	gen := exec.Command("/usr/bin/python3", "-m", "grpc_tools.protoc", "-I", filepath.Dir(proto),
		"--python_out="+stubs, "--grpc_python_out="+stubs, proto)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("generate Python stubs (python3-grpc-tools, scripts/install-deps.sh): %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join(repoDir, "e2e", "testdata", "grpc_client.py"),
		s.grpcAddr(), "churn-onnx", strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "PYTHONPATH="+stubs, "SLIPWAY_TOKEN="+s.Token)
	cmd.Stdin = bytes.NewReader(mustJSON(features))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("grpc_client.py: %v\n%s", err, stderr.String())
	}
	var got struct {
		Outputs     []v2Output
		BadToken    string `json:"bad_token"`
		UnknownName string `json:"unknown_model"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("grpc_client.py output %s: %v", out, err)
	}
	sameOutputs(t, "Python gRPC client", got.Outputs, want)
	if got.BadToken != "UNAUTHENTICATED" || got.UnknownName != "NOT_FOUND" {
		t.Fatalf("Python client's errors: bad token %s, unknown model %s", got.BadToken, got.UnknownName)
	}
}

// checkClusterGRPC: over gRPC the host of deployment (host, id hostID) answers, and another server of
// the installation (other) forwards the call to the host: the same readiness and metadata, the caller's token
// checked (a wrong one is refused through either).
func checkClusterGRPC(t *testing.T, other, host *server, hostID, deployment string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+host.Token), time.Minute)
	defer cancel()
	var metas []*inferencepb.ModelMetadataResponse
	for _, s := range []*server{host, other} {
		conn, err := grpc.NewClient(s.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := inferencepb.NewGRPCInferenceServiceClient(conn)
		if r, err := c.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: deployment}); err != nil || !r.Ready {
			t.Fatalf("gRPC ModelReady through %s (host %s): %v %v", s.URL, hostID, r, err)
		}
		m, err := c.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: deployment})
		if err != nil {
			t.Fatalf("gRPC ModelMetadata through %s: %v", s.URL, err)
		}
		metas = append(metas, m)
		bad := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer wrong")
		if _, err := c.ModelReady(bad, &inferencepb.ModelReadyRequest{Name: deployment}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("gRPC ModelReady with a wrong token through %s: %v, want Unauthenticated", s.URL, err)
		}
	}
	if !proto.Equal(metas[0], metas[1]) {
		t.Fatalf("ModelMetadata through the other server %v, from the host %v", metas[1], metas[0])
	}
}

package onnx_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-ml/slipway/internal/modelruntime/onnx"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx/onnxtest"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

var rows = [][]float32{{1, 2, 3, 4}, {-1, 0.5, 0, 2}, {0.25, -3, 1.5, -0.75}}

func flat(rows [][]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// loadModel builds a model with script (argv[1] is the output path) and loads it.
func loadModel(t *testing.T, script string) *onnx.Model {
	t.Helper()
	onnxtest.Init(t)
	path := filepath.Join(t.TempDir(), "model.onnx")
	onnxtest.RunPython(t, script, path)
	m, err := onnx.Load(path, onnx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func loadClassifier(t testing.TB) *onnx.Model {
	t.Helper()
	onnxtest.Init(t)
	m, err := onnx.Load(onnxtest.BuildClassifier(t, t.TempDir()), onnx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestClassifierMatchesNumpy(t *testing.T) {
	m := loadClassifier(t)
	wantIn := []workerproto.Column{{Name: "features", Datatype: "FP32", Shape: []int64{-1, 4}}}
	wantOut := []workerproto.Column{
		{Name: "probabilities", Datatype: "FP32", Shape: []int64{-1, 2}},
		{Name: "label", Datatype: "INT64", Shape: []int64{-1}},
	}
	if got := m.Inputs(); !reflect.DeepEqual(got, wantIn) {
		t.Fatalf("Inputs = %+v", got)
	}
	if got := m.Outputs(); !reflect.DeepEqual(got, wantOut) {
		t.Fatalf("Outputs = %+v", got)
	}
	if w := m.Warnings(); len(w) != 0 {
		t.Fatalf("Warnings = %v", w)
	}

	out, err := m.Predict([]workerproto.Tensor{workerproto.NewFloat32("features", []int64{3, 4}, flat(rows))})
	if err != nil {
		t.Fatal(err)
	}
	want := onnxtest.NumpyClassifier(t, rows)
	if len(out) != 2 || out[0].Name != "probabilities" || out[1].Name != "label" {
		t.Fatalf("outputs %+v", out)
	}
	if !reflect.DeepEqual(out[0].Shape, []int64{3, 2}) || !reflect.DeepEqual(out[1].Shape, []int64{3}) {
		t.Fatalf("shapes %v %v", out[0].Shape, out[1].Shape)
	}
	probs, err := out[0].Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for i, row := range want.Probabilities {
		for j, p := range row {
			if got := float64(probs[2*i+j]); math.Abs(got-p) > 1e-5 {
				t.Errorf("probabilities[%d][%d] = %v, numpy %v", i, j, got, p)
			}
		}
	}
	labels, err := out[1].Int64s()
	if err != nil || !reflect.DeepEqual(labels, want.Label) {
		t.Fatalf("labels = %v (%v), numpy %v", labels, err, want.Label)
	}
}

func TestPredictSingleInputIgnoresName(t *testing.T) {
	m := loadClassifier(t)
	if _, err := m.Predict([]workerproto.Tensor{workerproto.NewFloat32("", []int64{1, 4}, rows[0])}); err != nil {
		t.Fatal(err)
	}
}

func TestPredictInputErrors(t *testing.T) {
	m := loadClassifier(t)
	tests := []struct {
		name string
		in   []workerproto.Tensor
		want string
	}{
		{"datatype", []workerproto.Tensor{workerproto.NewFloat64("features", []int64{2, 3}, make([]float64, 6))},
			"onnx: input features: expected FP32 [-1 4], got FP64 [2 3]"},
		{"width", []workerproto.Tensor{workerproto.NewFloat32("features", []int64{2, 3}, make([]float32, 6))},
			"onnx: input features: expected FP32 [-1 4], got FP32 [2 3]"},
		{"rank", []workerproto.Tensor{workerproto.NewFloat32("features", []int64{4}, make([]float32, 4))},
			"onnx: input features: expected FP32 [-1 4], got FP32 [4]"},
		{"empty batch", []workerproto.Tensor{workerproto.NewFloat32("features", []int64{0, 4}, nil)},
			"onnx: input features: empty tensor [0 4]"},
		{"short data", []workerproto.Tensor{workerproto.NewFloat32("features", []int64{2, 4}, make([]float32, 4))},
			"needs 32 data bytes, have 16"},
		{"two tensors for one input", []workerproto.Tensor{
			workerproto.NewFloat32("features", []int64{1, 4}, rows[0]), workerproto.NewFloat32("extra", []int64{1, 4}, rows[0])},
			`onnx: unknown input "extra" (model inputs: features)`},
		{"none", nil, "onnx: missing input features"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Predict(tt.in)
			var ie *onnx.InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want InputError containing %q", err, tt.want)
			}
		})
	}
}

const multiInputScript = `
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto as T
g = helper.make_graph(
    [helper.make_node("ReduceSum", ["a", "axes"], ["a_sum"], keepdims=0),
     helper.make_node("Add", ["b", "one"], ["b_plus"])],
    "multi",
    [helper.make_tensor_value_info("a", T.DOUBLE, ["n", 3]), helper.make_tensor_value_info("b", T.INT64, ["n"])],
    [helper.make_tensor_value_info("a_sum", T.DOUBLE, ["n"]), helper.make_tensor_value_info("b_plus", T.INT64, ["n"])],
    initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
                 numpy_helper.from_array(np.array(1, dtype=np.int64), "one")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
onnx.save(m, sys.argv[1])
`

func TestMultipleInputs(t *testing.T) {
	m := loadModel(t, multiInputScript)
	a := workerproto.NewFloat64("a", []int64{2, 3}, []float64{1, 2, 3, 10, 20, 30})
	b := workerproto.NewInt64("b", []int64{2}, []int64{41, -1})
	out, err := m.Predict([]workerproto.Tensor{b, a}) // any order
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := out[0].Float64s()
	plus, _ := out[1].Int64s()
	if fmt.Sprint(sums, plus) != "[6 60] [42 0]" {
		t.Fatalf("got %v %v", sums, plus)
	}
	tests := []struct {
		name string
		in   []workerproto.Tensor
		want string
	}{
		{"missing", []workerproto.Tensor{a}, "onnx: missing input b (model inputs: a, b)"},
		{"unknown", []workerproto.Tensor{a, b, workerproto.NewInt64("c", nil, []int64{1})}, `onnx: unknown input "c" (model inputs: a, b)`},
		{"twice", []workerproto.Tensor{a, a}, "onnx: input a given twice"},
		{"misnamed", []workerproto.Tensor{a, workerproto.NewInt64("B", nil, []int64{1, 2})}, `unknown input "B"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Predict(tt.in); err == nil || err.Error() != tt.want && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

const identityScript = `
import sys, onnx
from onnx import helper, TensorProto as T
dts = {"BOOL": T.BOOL, "UINT8": T.UINT8, "UINT16": T.UINT16, "UINT32": T.UINT32, "UINT64": T.UINT64,
       "INT8": T.INT8, "INT16": T.INT16, "INT32": T.INT32, "INT64": T.INT64,
       "FP16": T.FLOAT16, "FP32": T.FLOAT, "FP64": T.DOUBLE, "BYTES": T.STRING}
g = helper.make_graph(
    [helper.make_node("Identity", ["x_" + k], ["y_" + k]) for k in dts],
    "identity",
    [helper.make_tensor_value_info("x_" + k, v, ["n", 2]) for k, v in dts.items()],
    [helper.make_tensor_value_info("y_" + k, v, ["n", 2]) for k, v in dts.items()])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
onnx.save(m, sys.argv[1])
`

var datatypes = []string{"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"}

func TestEveryDatatype(t *testing.T) {
	m := loadModel(t, identityScript)
	in := make([]workerproto.Tensor, 0, len(datatypes))
	for _, dt := range datatypes {
		x := workerproto.Tensor{Name: "x_" + dt, Datatype: dt, Shape: []int64{3, 2}}
		size, _ := workerproto.ElemSize(dt)
		switch dt {
		case "BYTES":
			x = workerproto.NewBytes(x.Name, x.Shape, []string{"", "a", "héllo", "\xff\x01", strings.Repeat("z", 300), "end"})
		case "BOOL":
			x.Data = []byte{1, 0, 0, 1, 1, 1}
		default:
			x.Data = make([]byte, 6*size)
			for i := range x.Data {
				x.Data[i] = byte(31*i + 7)
			}
		}
		in = append(in, x)
	}
	out, err := m.Predict(in)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]workerproto.Tensor{}
	for _, o := range out {
		got[o.Name] = o
	}
	for _, x := range in {
		dt := x.Datatype
		y, ok := got["y_"+dt]
		if dt == "FP16" {
			if ok {
				t.Error("FP16 output should have been left out")
			}
			continue
		}
		if !ok || y.Datatype != dt || !reflect.DeepEqual(y.Shape, x.Shape) || !bytes.Equal(y.Data, x.Data) || !reflect.DeepEqual(y.Strings, x.Strings) {
			t.Errorf("%s: sent %+v, got %+v", dt, x, y)
		}
	}
	if w := m.Warnings(); len(w) != 1 || !strings.Contains(w[0], "output y_FP16 left out: FP16 outputs are not supported") {
		t.Fatalf("Warnings = %q", w)
	}
}

func TestBytesWithNUL(t *testing.T) {
	m := loadModel(t, identityScript)
	in := []workerproto.Tensor{}
	for _, c := range m.Inputs() {
		size, _ := workerproto.ElemSize(c.Datatype)
		x := workerproto.Tensor{Name: c.Name, Datatype: c.Datatype, Shape: []int64{1, 2}, Data: make([]byte, 2*size)}
		if c.Datatype == "BYTES" {
			x = workerproto.NewBytes(c.Name, x.Shape, []string{"a\x00b", ""})
		}
		in = append(in, x)
	}
	if _, err := m.Predict(in); err == nil || !strings.Contains(err.Error(), "NUL byte") {
		t.Fatalf("got %v", err)
	}
}

func TestUnsupportedOutputsLeftOut(t *testing.T) {
	m := loadModel(t, `
import sys, onnx
from onnx import helper, TensorProto as T
g = helper.make_graph(
    [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("SequenceConstruct", ["x"], ["seq"])],
    "seq",
    [helper.make_tensor_value_info("x", T.FLOAT, ["n"])],
    [helper.make_tensor_value_info("y", T.FLOAT, ["n"]), helper.make_tensor_sequence_value_info("seq", T.FLOAT, ["n"])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
onnx.save(m, sys.argv[1])
`)
	if got := m.Outputs(); len(got) != 1 || got[0].Name != "y" {
		t.Fatalf("Outputs = %+v", got)
	}
	if w := m.Warnings(); len(w) != 1 || !strings.Contains(w[0], "output seq left out") || !strings.Contains(w[0], "zipmap") {
		t.Fatalf("Warnings = %q", w)
	}
	out, err := m.Predict([]workerproto.Tensor{workerproto.NewFloat32("x", nil, []float32{1, 2})})
	if err != nil || len(out) != 1 {
		t.Fatalf("Predict = %+v, %v", out, err)
	}
}

func TestScalarOutputFailsCleanly(t *testing.T) {
	m := loadModel(t, `
import sys, onnx
from onnx import helper, TensorProto as T
g = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)], "sum",
    [helper.make_tensor_value_info("x", T.FLOAT, ["n"])], [helper.make_tensor_value_info("total", T.FLOAT, [])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
onnx.save(m, sys.argv[1])
`)
	_, err := m.Predict([]workerproto.Tensor{workerproto.NewFloat32("x", nil, []float32{1, 2})})
	if err == nil || !strings.Contains(err.Error(), "onnx: run model.onnx") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	onnxtest.Init(t)
	dir := t.TempDir()
	classifier, err := os.ReadFile(onnxtest.BuildClassifier(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing", filepath.Join(dir, "nope.onnx"), "no such file"},
		{"directory", dir, "not a non-empty regular file"},
		{"empty", write("empty.onnx", nil), "not a non-empty regular file"},
		{"garbage", write("garbage.onnx", []byte("this is not a model, just some text\n")), "not a valid ONNX model"},
		{"truncated", write("truncated.onnx", classifier[:len(classifier)/2]), "not a valid ONNX model"},
		{"zeros", write("zeros.onnx", make([]byte, 64)), "not a valid ONNX model: corrupt protobuf: field number 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := onnx.Load(tt.path, onnx.Options{})
			if err == nil {
				m.Close()
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "onnx: load "+tt.path+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %q, want onnx: load %s: …%s", err, tt.path, tt.want)
			}
		})
	}
}

// externalScript writes a model y = x + W whose W lives in external data at
// argv[2] (as written in the model) and argv[3] (where the bytes go).
const externalScript = `
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto as T
path, location, data_path, where = sys.argv[1:5]
W = np.array([1, 2, 3, 4], dtype=np.float32)
open(data_path, "wb").write(W.tobytes())
w = numpy_helper.from_array(W, "W")
w.ClearField("raw_data")
w.data_location = T.EXTERNAL
e = w.external_data.add(); e.key = "location"; e.value = location
if where == "initializer":
    nodes, inits = [helper.make_node("Add", ["x", "W"], ["y"])], [w]
else:  # a Constant node's attribute
    nodes, inits = [helper.make_node("Constant", [], ["W"], value=w), helper.make_node("Add", ["x", "W"], ["y"])], []
g = helper.make_graph(nodes, "ext", [helper.make_tensor_value_info("x", T.FLOAT, ["n", 4])],
    [helper.make_tensor_value_info("y", T.FLOAT, ["n", 4])], initializer=inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
open(path, "wb").write(m.SerializeToString())
`

func TestExternalData(t *testing.T) {
	onnxtest.Init(t)
	root := t.TempDir()
	modelDir := filepath.Join(root, "model")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{modelDir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "link-target.bin"), filepath.Join(modelDir, "link.bin")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		location string
		dataPath string
		where    string
		wantErr  string
	}{
		{"inside", "weights.bin", filepath.Join(modelDir, "weights.bin"), "initializer", ""},
		{"inside subfolder", "data/weights.bin", filepath.Join(modelDir, "data", "weights.bin"), "initializer", ""},
		{"parent", "../outside/secret.bin", filepath.Join(outside, "secret.bin"), "initializer", `external data "../outside/secret.bin": refusing external data outside the model's folder`},
		{"absolute", filepath.Join(outside, "abs.bin"), filepath.Join(outside, "abs.bin"), "initializer", "refusing external data outside"},
		{"symlink out", "link.bin", filepath.Join(outside, "link-target.bin"), "initializer", "refusing external data outside"},
		{"constant node", "../outside/const.bin", filepath.Join(outside, "const.bin"), "constant", "refusing external data outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Dir(tt.dataPath), 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(modelDir, strings.ReplaceAll(tt.name, " ", "_")+".onnx")
			onnxtest.RunPython(t, externalScript, path, tt.location, tt.dataPath, tt.where)
			m, err := onnx.Load(path, onnx.Options{})
			if tt.wantErr != "" {
				if err == nil {
					m.Close()
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			out, err := m.Predict([]workerproto.Tensor{workerproto.NewFloat32("x", []int64{1, 4}, []float32{10, 20, 30, 40})})
			if err != nil {
				t.Fatal(err)
			}
			if y, _ := out[0].Float32s(); fmt.Sprint(y) != "[11 22 33 44]" {
				t.Fatalf("y = %v", y)
			}
		})
	}
}

func TestConcurrentPredictAndClose(t *testing.T) {
	m := loadClassifier(t)
	in := []workerproto.Tensor{workerproto.NewFloat32("features", []int64{3, 4}, flat(rows))}
	want, err := m.Predict(in)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				out, err := m.Predict(in)
				if err == nil && !bytes.Equal(out[0].Data, want[0].Data) {
					err = errors.New("concurrent predictions differ")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.Predict(in); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Predict after Close: %v", err)
	}
}

func TestInitOtherLibrary(t *testing.T) {
	onnxtest.Init(t)
	if err := onnx.Init("/some/other/libonnxruntime.so.1"); err == nil || !strings.Contains(err.Error(), "already initialized") {
		t.Fatalf("got %v", err)
	}
}

func BenchmarkONNXPredict(b *testing.B) {
	m := loadClassifier(b)
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			x := make([]float32, 4*batch)
			for i := range x {
				x[i] = float32(i%7) - 3
			}
			in := []workerproto.Tensor{workerproto.NewFloat32("features", []int64{int64(batch), 4}, x)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Predict(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

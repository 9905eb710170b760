// Package onnxtest builds small ONNX models for tests with /usr/bin/python3 and the
// onnx package, and initializes ONNX Runtime for tests. Tests skip (with the reason)
// when python3 lacks onnx/numpy or the runtime library is not installed.
package onnxtest

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/slipway-ml/slipway/internal/modelruntime/onnx"
)

// PythonPath is the interpreter used to build models.
const PythonPath = "/usr/bin/python3"

// Init initializes ONNX Runtime from onnx.LibraryPath, or skips the test when the
// library is not installed.
func Init(tb testing.TB) {
	tb.Helper()
	lib, err := onnx.LibraryPath()
	if err != nil {
		tb.Skipf("skipping: %v", err)
	}
	if err := onnx.Init(lib); errors.Is(err, onnx.ErrNoCgo) {
		tb.Skipf("skipping: %v", err)
	} else if err != nil {
		tb.Fatal(err)
	}
}

// RunPython runs script with args under PythonPath and returns its stdout. It skips
// the test when python3, onnx or numpy is missing and fails it when the script fails.
func RunPython(tb testing.TB, script string, args ...string) []byte {
	tb.Helper()
	if out, err := exec.Command(PythonPath, "-c", "import onnx, numpy").CombinedOutput(); err != nil {
		tb.Skipf("skipping: %s cannot import onnx and numpy (apt-get install python3-onnx python3-numpy): %v\n%s", PythonPath, err, out)
	}
	cmd := exec.Command(PythonPath, append([]string{"-c", script}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("python model builder: %v", err)
	}
	return out
}

// Classifier weights: logits = features·W + B.
var (
	W = [4][2]float32{{0.5, -0.25}, {-1.5, 0.75}, {0.125, 1.0}, {2.0, -0.5}}
	B = [2]float32{0.1, -0.2}
)

const classifierScript = `
import sys, json, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto as T
W = np.array(json.loads(sys.argv[2]), dtype=np.float32)
B = np.array(json.loads(sys.argv[3]), dtype=np.float32)
graph = helper.make_graph(
    [helper.make_node("MatMul", ["features", "W"], ["mm"]),
     helper.make_node("Add", ["mm", "B"], ["logits"]),
     helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
     helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)],
    "classifier",
    [helper.make_tensor_value_info("features", T.FLOAT, ["batch", 4])],
    [helper.make_tensor_value_info("probabilities", T.FLOAT, ["batch", 2]),
     helper.make_tensor_value_info("label", T.INT64, ["batch"])],
    initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
`

// BuildClassifier writes dir/classifier.onnx: input "features" FP32 [batch, 4];
// outputs "probabilities" FP32 [batch, 2] (softmax of features·W + B) and "label"
// INT64 [batch] (argmax).
func BuildClassifier(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, "classifier.onnx")
	w, _ := json.Marshal(W)
	b, _ := json.Marshal(B)
	RunPython(tb, classifierScript, path, string(w), string(b))
	return path
}

const numpyScript = `
import sys, json, numpy as np
X = np.array(json.loads(sys.argv[1]), dtype=np.float32)
W = np.array(json.loads(sys.argv[2]), dtype=np.float32)
B = np.array(json.loads(sys.argv[3]), dtype=np.float32)
z = X @ W + B
e = np.exp(z - z.max(axis=1, keepdims=True))
p = e / e.sum(axis=1, keepdims=True)
json.dump({"probabilities": p.astype(float).tolist(), "label": p.argmax(axis=1).tolist()}, sys.stdout)
`

// Expected is the classifier's output computed by numpy.
type Expected struct {
	Probabilities [][]float64 `json:"probabilities"`
	Label         []int64     `json:"label"`
}

// NumpyClassifier computes the classifier's outputs for rows with numpy.
func NumpyClassifier(tb testing.TB, rows [][]float32) Expected {
	tb.Helper()
	x, _ := json.Marshal(rows)
	w, _ := json.Marshal(W)
	b, _ := json.Marshal(B)
	var e Expected
	if err := json.Unmarshal(RunPython(tb, numpyScript, string(x), string(w), string(b)), &e); err != nil {
		tb.Fatalf("numpy output: %v", err)
	}
	return e
}

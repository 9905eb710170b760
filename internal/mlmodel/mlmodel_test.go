package mlmodel

import (
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// sklearnMLmodel is an MLmodel file as mlflow.sklearn.save_model (MLflow 2.14) writes it.
const sklearnMLmodel = `flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict_proba
    python_version: 3.11.2
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.2.1
mlflow_version: 2.14.1
run_id: 0a1b2c
saved_input_example_info:
  artifact_path: input_example.json
  pandas_orient: split
  type: dataframe
signature:
  inputs: '[{"type": "double", "name": "age", "required": true}, {"type": "string",
    "name": "plan", "required": true}, {"type": "tensor", "name": "emb", "tensor-spec": {"dtype": "float32", "shape": [-1, 8]}}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
`

func TestParse(t *testing.T) {
	pyfunc := func(conf string) string {
		return "flavors:\n  python_function:\n" + conf
	}
	cases := []struct {
		name, body string
		check      func(t *testing.T, m *Model)
		wantErr    string // substring of the error; "" = no error
	}{
		{name: "sklearn", body: sklearnMLmodel, check: func(t *testing.T, m *Model) {
			if m.Kind != KindSklearn || m.ModelPath != "model.pkl" || m.Serialization != "cloudpickle" || m.PredictFn != "predict_proba" ||
				m.PythonVersion != "3.11.2" || m.SklearnVer != "1.2.1" || m.RunID != "0a1b2c" || m.InputExample != "input_example.json" {
				t.Errorf("parsed %+v", m)
			}
			in, err := m.InputSchema()
			if err != nil || len(in.Columns) != 3 || in.Columns[0].Name != "age" || in.Columns[0].Dtype != "float64" ||
				in.Columns[1].Dtype != "string" || in.Columns[2].Dtype != "float32" || len(in.Columns[2].Shape) != 2 {
				t.Errorf("input schema %+v, %v", in, err)
			}
			out, err := m.OutputSchema()
			if err != nil || len(out.Columns) != 1 || out.Columns[0].Name != "predictions" || out.Columns[0].Dtype != "int64" {
				t.Errorf("output schema %+v, %v", out, err)
			}
		}},
		{name: "sklearn without serialization_format is pickle", body: "flavors:\n  sklearn:\n    pickled_model: m.pkl\n", check: func(t *testing.T, m *Model) {
			if m.Serialization != "pickle" || m.PredictFn != "predict" || m.InputExample != "" || m.Inputs != nil {
				t.Errorf("parsed %+v", m)
			}
		}},
		{name: "sklearn with code_paths", body: "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    code: code\n", check: func(t *testing.T, m *Model) {
			if m.CodePath != "code" {
				t.Errorf("parsed %+v", m)
			}
		}},
		{name: "sklearn code escapes", body: "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    code: ../code\n", wantErr: "leaves the model directory"},
		{name: "pyfunc with loader_module", body: pyfunc("    loader_module: churn_loader\n    code: code\n    model_path: ./data/model.pkl\n"), check: func(t *testing.T, m *Model) {
			if m.Kind != KindPyfunc || m.LoaderModule != "churn_loader" || m.CodePath != "code" || m.ModelPath != "data/model.pkl" {
				t.Errorf("parsed %+v", m)
			}
		}},
		{name: "pyfunc MLflow 1 data key", body: pyfunc("    loader_module: pkg.loader\n    data: weights\n"), check: func(t *testing.T, m *Model) {
			if m.ModelPath != "weights" || m.LoaderModule != "pkg.loader" {
				t.Errorf("parsed %+v", m)
			}
		}},
		{name: "not YAML", body: "flavors: [unclosed", wantErr: "not valid YAML"},
		{name: "missing flavors", body: "mlflow_version: 2.14.1\nrun_id: x\n", wantErr: "names no flavors"},
		{name: "empty flavors", body: "flavors: {}\n", wantErr: "names no flavors"},
		{name: "tensorflow refused by name", body: "flavors:\n  python_function:\n    loader_module: mlflow.tensorflow\n  tensorflow:\n    saved_model_dir: tfmodel\n", wantErr: `flavor "tensorflow" is not supported`},
		{name: "flavor without pyfunc refused by name", body: "flavors:\n  mleap:\n    mleap_version: 0.1\n", wantErr: `flavor "mleap" is not supported`},
		{name: "PythonModel needs MLflow", body: pyfunc("    loader_module: mlflow.pyfunc.model\n    cloudpickle_version: 2.2.0\n"), wantErr: "mlflow.pyfunc.PythonModel"},
		{name: "bad loader module", body: pyfunc("    loader_module: os;rm\n"), wantErr: "not a Python module name"},
		{name: "skops refused", body: "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n", wantErr: `serialization_format "skops"`},
		{name: "sklearn without pickle", body: "flavors:\n  sklearn:\n    sklearn_version: 1.2.1\n", wantErr: "no pickled_model"},
		{name: "predict_fn not a name", body: "flavors:\n  python_function:\n    predict_fn: __import__('os')\n  sklearn:\n    pickled_model: m.pkl\n", wantErr: "not a method name"},
		{name: "pickled_model escapes", body: "flavors:\n  sklearn:\n    pickled_model: ../x\n", wantErr: "leaves the model directory"},
		{name: "pickled_model escapes after cleaning", body: "flavors:\n  sklearn:\n    pickled_model: a/../../x\n", wantErr: "leaves the model directory"},
		{name: "pickled_model absolute", body: "flavors:\n  sklearn:\n    pickled_model: /etc/passwd\n", wantErr: "absolute path"},
		{name: "data escapes", body: pyfunc("    loader_module: l\n    data: ../x\n"), wantErr: "leaves the model directory"},
		{name: "model_path escapes", body: pyfunc("    loader_module: l\n    model_path: ../../x\n"), wantErr: "leaves the model directory"},
		{name: "code escapes", body: pyfunc("    loader_module: l\n    code: ..\n"), wantErr: "leaves the model directory"},
		{name: "input example escapes", body: "flavors:\n  sklearn:\n    pickled_model: m.pkl\nsaved_input_example_info:\n  artifact_path: ../ex.json\n", wantErr: "leaves the model directory"},
		{name: "backslash", body: "flavors:\n  sklearn:\n    pickled_model: 'a\\..\\x'\n", wantErr: "backslash"},
		{name: "signature not JSON", body: "flavors:\n  sklearn:\n    pickled_model: m.pkl\nsignature:\n  inputs: 'not json'\n", wantErr: "signature.inputs is not a JSON list"},
		{name: "too large", body: "flavors:\n" + strings.Repeat("#", MaxFileBytes), wantErr: "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if slipway.ErrorCode(err) != slipway.EINVALID {
					t.Errorf("code %q, want %q", slipway.ErrorCode(err), slipway.EINVALID)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, m)
		})
	}
}

func TestSchemas(t *testing.T) {
	cases := []struct {
		name, inputs, outputs string
		wantIn, wantOut       string // column names:dtypes, "" = nil schema
		wantErr               string
	}{
		{name: "named columns", inputs: `[{"name":"a","type":"integer"},{"name":"b","type":"boolean"},{"name":"c","type":"binary"},{"name":"d","type":"datetime"},{"name":"e","type":"float"}]`,
			outputs: `[{"name":"p","type":"double"},{"name":"q","type":"string"}]`, wantIn: "a:int32 b:bool c:bytes d:datetime e:float32", wantOut: "p:float64 q:string"},
		{name: "unnamed inputs match by position: no schema", inputs: `[{"type":"double"},{"type":"double"}]`, outputs: `[{"type":"long"}]`, wantOut: "predictions:int64"},
		{name: "several unnamed outputs: no schema", inputs: `[{"name":"a","type":"double"}]`, outputs: `[{"type":"long"},{"type":"long"}]`, wantIn: "a:float64"},
		{name: "array type not expressible", inputs: `[{"name":"a","type":"array","items":{"type":"double"}}]`, wantErr: `type "array"`},
		{name: "tensor without spec", inputs: `[{"name":"a","type":"tensor"}]`, wantErr: "tensor-spec"},
	}
	names := func(s *slipway.Schema) string {
		if s == nil {
			return ""
		}
		var parts []string
		for _, c := range s.Columns {
			parts = append(parts, c.Name+":"+c.Dtype)
		}
		return strings.Join(parts, " ")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := "flavors:\n  sklearn:\n    pickled_model: m.pkl\nsignature:\n  inputs: '" + tc.inputs + "'\n  outputs: '" + tc.outputs + "'\n"
			m, err := Parse([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			in, inErr := m.InputSchema()
			out, outErr := m.OutputSchema()
			if tc.wantErr != "" {
				if inErr == nil || !strings.Contains(inErr.Error(), tc.wantErr) {
					t.Fatalf("input schema error %v, want %q", inErr, tc.wantErr)
				}
				return
			}
			if inErr != nil || outErr != nil {
				t.Fatal(inErr, outErr)
			}
			if names(in) != tc.wantIn || names(out) != tc.wantOut {
				t.Errorf("schemas %q / %q, want %q / %q", names(in), names(out), tc.wantIn, tc.wantOut)
			}
		})
	}
}

func TestCheckFilesAndIsMLflow(t *testing.T) {
	m, err := Parse([]byte(sklearnMLmodel))
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{"model.pkl": true, "input_example.json": true}
	has := func(p string) bool { return present[p] }
	none := func(string) bool { return false }
	if err := m.CheckFiles(has, none); err != nil {
		t.Fatal(err)
	}
	delete(present, "model.pkl")
	if err := m.CheckFiles(has, none); err == nil || !strings.Contains(err.Error(), "model.pkl") {
		t.Fatalf("missing pickle: %v", err)
	}
	pf, err := Parse([]byte("flavors:\n  python_function:\n    loader_module: l\n    code: code\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.CheckFiles(none, none); err == nil || !strings.Contains(err.Error(), "code folder") {
		t.Fatalf("missing code folder: %v", err)
	}

	files := func(paths ...string) []slipway.File {
		var out []slipway.File
		for _, p := range paths {
			out = append(out, slipway.File{Path: p})
		}
		return out
	}
	for _, tc := range []struct {
		files []slipway.File
		want  bool
	}{
		{files("MLmodel", "model.pkl"), true},
		{files("MLmodel", "model.pkl", "score.py"), false}, // score.py is what runs
		{files("sub/MLmodel", "model.pkl"), false},
		{files("model.onnx"), false},
	} {
		if got := IsMLflow(tc.files); got != tc.want {
			t.Errorf("IsMLflow(%v) = %v", tc.files, got)
		}
	}
}

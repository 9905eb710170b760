// Package mlmodel reads MLflow model directories: the MLmodel file (YAML) that names a model's flavors, its
// signature and its input example. Slipway serves two kinds of them through its Python harness without the
// MLflow library: the sklearn flavor (a pickle or cloudpickle file) and python_function models whose
// loader_module is the user's own module. Everything else is refused here, at registration, with the flavor
// named. The harness (internal/modelruntime/python/harness.py) applies the same choice when it loads the model.
package mlmodel

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/slipway-ml/slipway"
)

// FileName is the name of the file that makes a directory an MLflow model.
const FileName = "MLmodel"

// MaxFileBytes bounds the MLmodel file and the input example read at registration: both are small metadata.
const MaxFileBytes = 1 << 20

// Serving kinds: how the harness loads the model.
const (
	KindSklearn = "sklearn"         // the sklearn flavor's pickle, called through its predict_fn
	KindPyfunc  = "python_function" // loader_module._load_pyfunc(data path), the user's own code
)

// Model is the part of an MLmodel file that Slipway uses.
type Model struct {
	Kind          string   // KindSklearn or KindPyfunc
	Flavors       []string // every flavor the file names, sorted
	ModelPath     string   // sklearn: the pickled model; pyfunc: the data path ("" = the model directory)
	Serialization string   // sklearn: "pickle" or "cloudpickle"
	SklearnVer    string   // sklearn: sklearn_version at save time
	LoaderModule  string   // pyfunc
	CodePath      string   // folder put first on sys.path before loading ("" = none)
	PredictFn     string   // sklearn: the method called (predict, predict_proba...)
	PythonVersion string   // python_function.python_version
	RunID         string
	MLflowVersion string
	InputExample  string // path of the saved input example, "" when none
	Inputs        []ColSpec
	Outputs       []ColSpec
}

// ColSpec is one entry of an MLflow signature: a named (or unnamed) column, or a tensor.
type ColSpec struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	TensorSpec *struct {
		Dtype string  `json:"dtype"`
		Shape []int64 `json:"shape"`
	} `json:"tensor-spec"`
}

type mlmodelFile struct {
	Flavors   map[string]map[string]any `yaml:"flavors"`
	RunID     string                    `yaml:"run_id"`
	MLflowVer string                    `yaml:"mlflow_version"`
	Signature *struct {
		Inputs  string `yaml:"inputs"`
		Outputs string `yaml:"outputs"`
	} `yaml:"signature"`
	InputExample *struct {
		ArtifactPath string `yaml:"artifact_path"`
	} `yaml:"saved_input_example_info"`
}

// IsMLflow reports whether a version's files are an MLflow model directory served as such: an MLmodel at the
// top and no score.py (a score.py, when present, is what runs).
func IsMLflow(files []slipway.File) bool {
	hasMLmodel := false
	for _, f := range files {
		switch f.Path {
		case "score.py":
			return false
		case FileName:
			hasMLmodel = true
		}
	}
	return hasMLmodel
}

// Parse reads an MLmodel file, chooses how it is served and checks every path it names stays inside the model
// directory. Errors are slipway.EINVALID with a message a person can act on.
func Parse(body []byte) (*Model, error) {
	if len(body) > MaxFileBytes {
		return nil, invalid("the MLmodel file is %d bytes, over the %d-byte limit for this metadata file", len(body), MaxFileBytes)
	}
	var f mlmodelFile
	if err := yaml.Unmarshal(body, &f); err != nil {
		return nil, invalid("the MLmodel file is not valid YAML: %v", err)
	}
	if len(f.Flavors) == 0 {
		return nil, invalid("the MLmodel file names no flavors: an MLflow model needs a \"flavors\" section (python_function, sklearn...)")
	}
	m := &Model{RunID: f.RunID, MLflowVersion: f.MLflowVer}
	for name := range f.Flavors {
		m.Flavors = append(m.Flavors, name)
	}
	sort.Strings(m.Flavors)
	pyfunc := f.Flavors["python_function"]
	m.PythonVersion = str(pyfunc, "python_version")
	var err error
	if sk, ok := f.Flavors["sklearn"]; ok {
		err = m.sklearn(sk, pyfunc)
	} else {
		err = m.pythonFunction(pyfunc)
	}
	if err != nil {
		return nil, err
	}
	if f.InputExample != nil && f.InputExample.ArtifactPath != "" {
		if m.InputExample, err = relPath("saved_input_example_info.artifact_path", f.InputExample.ArtifactPath); err != nil {
			return nil, err
		}
	}
	if f.Signature != nil {
		if m.Inputs, err = colSpecs("signature.inputs", f.Signature.Inputs); err != nil {
			return nil, err
		}
		if m.Outputs, err = colSpecs("signature.outputs", f.Signature.Outputs); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Model) sklearn(sk, pyfunc map[string]any) error {
	m.Kind = KindSklearn
	p := str(sk, "pickled_model")
	if p == "" {
		return invalid("the sklearn flavor of the MLmodel file has no pickled_model: name the pickle file (model.pkl)")
	}
	var err error
	if m.ModelPath, err = relPath("flavors.sklearn.pickled_model", p); err != nil {
		return err
	}
	m.Serialization = str(sk, "serialization_format")
	if m.Serialization == "" {
		m.Serialization = "pickle" // what MLflow assumes for files written before the field existed
	}
	if m.Serialization != "pickle" && m.Serialization != "cloudpickle" {
		return invalid("sklearn serialization_format %q is not supported: save the model with serialization_format \"pickle\" or \"cloudpickle\"", m.Serialization)
	}
	m.SklearnVer = str(sk, "sklearn_version")
	// code_paths (custom transformers the pickle refers to) are copied into a folder put on sys.path first.
	if code := str(sk, "code"); code != "" {
		if m.CodePath, err = relPath("flavors.sklearn.code", code); err != nil {
			return err
		}
	}
	m.PredictFn = str(pyfunc, "predict_fn")
	if m.PredictFn == "" {
		m.PredictFn = "predict"
	}
	if !isIdentifier(m.PredictFn) {
		return invalid("python_function predict_fn %q is not a method name", m.PredictFn)
	}
	return nil
}

func (m *Model) pythonFunction(pyfunc map[string]any) error {
	loader := str(pyfunc, "loader_module")
	others := slices.DeleteFunc(slices.Clone(m.Flavors), func(s string) bool { return s == "python_function" })
	switch {
	case pyfunc == nil || loader == "":
		return unsupported(others, "it has no python_function flavor with a loader_module")
	case loader == "mlflow.pyfunc.model":
		return invalid("this python_function model was saved from an mlflow.pyfunc.PythonModel (loader_module mlflow.pyfunc.model), which only the MLflow library can load: " +
			"save it with your own loader_module (mlflow.pyfunc.save_model(path, loader_module=\"my_loader\", data_path=..., code_paths=[\"my_loader.py\"])), or wrap it in score.py")
	case loader == "mlflow" || strings.HasPrefix(loader, "mlflow."):
		return unsupported(others, fmt.Sprintf("its python_function loader_module %s is part of the MLflow library", loader))
	}
	for _, part := range strings.Split(loader, ".") {
		if !isIdentifier(part) {
			return invalid("python_function loader_module %q is not a Python module name", loader)
		}
	}
	m.Kind, m.LoaderModule = KindPyfunc, loader
	var err error
	data := str(pyfunc, "model_path") // MLflow 2 names it model_path; MLflow 1 named it data
	field := "model_path"
	if data == "" {
		data, field = str(pyfunc, "data"), "data"
	}
	if data != "" {
		if m.ModelPath, err = relPath("flavors.python_function."+field, data); err != nil {
			return err
		}
	}
	if code := str(pyfunc, "code"); code != "" {
		if m.CodePath, err = relPath("flavors.python_function.code", code); err != nil {
			return err
		}
	}
	return nil
}

// unsupported names the flavors Slipway cannot serve and what it can.
func unsupported(flavors []string, why string) error {
	what := "this MLflow model"
	if len(flavors) > 0 {
		what = fmt.Sprintf("MLflow flavor %s", quoted(flavors))
	}
	return invalid("%s is not supported (%s): Slipway serves MLflow models of the sklearn flavor and python_function models with their own loader_module, without MLflow installed. "+
		"Export the model to ONNX, or wrap it in a score.py that loads it", what, why)
}

// CheckFiles verifies that the paths the MLmodel file names exist in the artifact (has reports a file; dirs a
// folder holding files).
func (m *Model) CheckFiles(has, hasDir func(string) bool) error {
	if m.Kind == KindSklearn && !has(m.ModelPath) {
		return invalid("the MLmodel file names %s (flavors.sklearn.pickled_model) but the artifact has no such file", m.ModelPath)
	}
	if m.Kind == KindPyfunc && m.ModelPath != "" && !has(m.ModelPath) && !hasDir(m.ModelPath) {
		return invalid("the MLmodel file names %s as the python_function data but the artifact has no such file or folder", m.ModelPath)
	}
	if m.CodePath != "" && !hasDir(m.CodePath) {
		return invalid("the MLmodel file names %s as the python_function code folder but the artifact has no such folder", m.CodePath)
	}
	if m.InputExample != "" && !has(m.InputExample) {
		return invalid("the MLmodel file names %s as the input example but the artifact has no such file", m.InputExample)
	}
	return nil
}

// InputSchema is the signature's inputs as a catalog schema, nil without a signature.
func (m *Model) InputSchema() (*slipway.Schema, error) { return schemaOf("inputs", m.Inputs, "") }

// OutputSchema is the signature's outputs as a catalog schema; an unnamed single output is "predictions",
// the name the harness gives it.
func (m *Model) OutputSchema() (*slipway.Schema, error) {
	return schemaOf("outputs", m.Outputs, "predictions")
}

func schemaOf(what string, cols []ColSpec, unnamed string) (*slipway.Schema, error) {
	if len(cols) == 0 {
		return nil, nil
	}
	s := &slipway.Schema{}
	for i, c := range cols {
		spec := slipway.ColumnSpec{Name: c.Name}
		if spec.Name == "" {
			if unnamed == "" || len(cols) > 1 {
				// Unnamed inputs are matched by position in MLflow; Slipway's schemas match by name.
				return nil, nil
			}
			spec.Name = unnamed
		}
		if c.Type == "tensor" {
			if c.TensorSpec == nil || c.TensorSpec.Dtype == "" {
				return nil, invalid("signature %s column %d is a tensor without a tensor-spec dtype", what, i)
			}
			spec.Dtype, spec.Shape = c.TensorSpec.Dtype, c.TensorSpec.Shape
		} else {
			dt, ok := dtypes[c.Type]
			if !ok {
				return nil, invalid("signature %s column %q has type %q, which Slipway schemas cannot express: give input_schema/output_schema in the metadata to replace the signature", what, spec.Name, c.Type)
			}
			spec.Dtype = dt
		}
		s.Columns = append(s.Columns, spec)
	}
	return s, nil
}

// dtypes maps MLflow's column types to the numpy-style dtypes of catalog schemas.
var dtypes = map[string]string{
	"boolean": "bool", "integer": "int32", "long": "int64", "float": "float32", "double": "float64",
	"string": "string", "binary": "bytes", "datetime": "datetime",
}

func colSpecs(field, text string) ([]ColSpec, error) {
	text = strings.TrimSpace(text)
	if text == "" || text == "null" {
		return nil, nil
	}
	var cols []ColSpec
	if err := json.Unmarshal([]byte(text), &cols); err != nil {
		return nil, invalid("the MLmodel %s is not a JSON list of column specs: %v", field, err)
	}
	return cols, nil
}

// relPath accepts a relative, slash-separated path that stays inside the model directory.
func relPath(field, p string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(p, "./"))
	switch {
	case strings.ContainsAny(p, "\\\x00"):
		return "", invalid("the MLmodel %s %q has a backslash or NUL", field, p)
	case path.IsAbs(p):
		return "", invalid("the MLmodel %s %q is an absolute path: paths in MLmodel are relative to the model directory", field, p)
	case clean == ".." || strings.HasPrefix(clean, "../"):
		return "", invalid("the MLmodel %s %q leaves the model directory (\"..\"): paths in MLmodel stay inside the model directory", field, p)
	case clean == ".":
		return "", nil
	}
	return clean, nil
}

func str(m map[string]any, key string) string {
	v, ok := m[key]
	if !ok || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		digit := i > 0 && r >= '0' && r <= '9'
		if !letter && !digit {
			return false
		}
	}
	return true
}

func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func invalid(format string, args ...any) error {
	return slipway.Errorf(slipway.EINVALID, format, args...)
}

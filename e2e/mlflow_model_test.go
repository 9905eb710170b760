package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// makeMLflowModel writes an MLflow model directory with the example generator (no MLflow installed).
func makeMLflowModel(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	cmd := exec.Command("/usr/bin/python3", append([]string{examplePath("mlflow-sklearn", "make_mlflow_model.py"), "--out", dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make MLflow model %v: %v\n%s", args, err, out)
	}
	return dir
}

// mlflowReference loads the model directory's pickle in Python, as the user's own code would, and predicts
// the rows: the ground truth (method is predict, or predict_proba for the probability of churn).
func mlflowReference(t *testing.T, dir, loader, method string, cols []string, rows [][]any) []float64 {
	t.Helper()
	script := fmt.Sprintf(`
import json, sys, %[1]s, pandas as pd
m = %[1]s.load(open(%[2]q, "rb"))
df = pd.DataFrame(json.loads(sys.argv[1]), columns=json.loads(sys.argv[2]))
out = m.%[3]s(df)
print(json.dumps((out[:, 1] if out.ndim == 2 else out).tolist()))
`, loader, filepath.Join(dir, "model.pkl"), method)
	out, err := exec.Command("/usr/bin/python3", "-c", script, string(mustJSON(rows)), string(mustJSON(cols))).Output()
	if err != nil {
		t.Fatalf("python reference: %v", err)
	}
	var ref []float64
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

func invocations(t *testing.T, s *server, deployment string, body any) (int, []byte) {
	t.Helper()
	resp, out := s.do(t, "POST", "/deployments/"+deployment+"/invocations", s.Token, bytes.NewReader(mustJSON(body)), "application/json")
	return resp.StatusCode, out
}

func predictionsOf(t *testing.T, body []byte) []float64 {
	t.Helper()
	var got struct {
		Predictions []float64 `json:"predictions"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return got.Predictions
}

func sameFloats(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d predictions, want %d (%v vs %v)", what, len(got), len(want), got, want)
	}
	for i := range want {
		if !closeTo(got[i], want[i]) {
			t.Fatalf("%s: prediction %d is %v, the model itself says %v", what, i, got[i], want[i])
		}
	}
}

// An MLflow sklearn model directory, as mlflow.sklearn.save_model writes it, registers READY through
// `slipway models push DIR`: its signature is the schema, its input example the sample input, its
// requirements the environment; it serves through /invocations with the model's own predictions, and
// pull --format mlflow gives the directory back.
func TestMLflowSklearnDirectory(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	ctx := context.Background()
	dirs := map[string]string{}
	for _, serialization := range []string{"cloudpickle", "pickle"} {
		model := "churn-mlflow-" + serialization
		args := []string{"--serialization", serialization}
		if serialization == "pickle" {
			// A transformer of the user's own module (code_paths, in code/): the pickle loads only with it.
			args = append(args, "--with-code")
		}
		dir := makeMLflowModel(t, args...)
		dirs[serialization] = dir
		out, errOut, code := s.cli("models", "push", dir, "--model", model, "--alias", "champion")
		if code != 0 {
			t.Fatalf("push %s: exit %d\n%s\n%s", serialization, code, out, errOut)
		}
		for _, want := range []string{"READY", "mlflow.mlmodel", "model.sample_prediction", "python.environment"} {
			if !strings.Contains(out, want) {
				t.Errorf("push output lacks %q:\n%s", want, out)
			}
		}
		v, err := c.GetVersion(ctx, model, "@champion")
		if err != nil {
			t.Fatal(err)
		}
		assertReady(t, v)
		wantIn := "age:float64 tenure_months:float64 monthly_charges:float64 plan:string support_calls:float64"
		if got := schemaText(v.InputSchema); got != wantIn {
			t.Errorf("input schema %q, want the signature's %q", got, wantIn)
		}
		if got := schemaText(v.OutputSchema); got != "predictions:int64" {
			t.Errorf("output schema %q", got)
		}
		example, err := os.ReadFile(filepath.Join(dir, "input_example.json"))
		if err != nil {
			t.Fatal(err)
		}
		var gotCompact, wantCompact bytes.Buffer
		if json.Compact(&gotCompact, v.SampleInput) != nil || json.Compact(&wantCompact, example) != nil || gotCompact.String() != wantCompact.String() {
			t.Errorf("sample input %s, want input_example.json %s", v.SampleInput, example)
		}
		if v.Environment == nil || v.Environment.Packages["scikit-learn"] == "" || v.Environment.Python == "" {
			t.Errorf("environment %+v: want requirements.txt's pins and python_env.yaml's python", v.Environment)
		} else if _, has := v.Environment.Packages["mlflow"]; has {
			t.Errorf("environment %+v keeps mlflow, which serving never imports", v.Environment)
		}
		if v.Taxonomy == nil || v.Taxonomy.Framework != "scikit-learn" {
			t.Errorf("taxonomy %+v", v.Taxonomy)
		}
	}

	deploy(t, s, "churn-mlflow", "--model", "churn-mlflow-cloudpickle@champion")
	cols, rows := churnRows(t, 25)
	want := mlflowReference(t, dirs["cloudpickle"], "cloudpickle", "predict", cols, rows)
	code, body := invocations(t, s, "churn-mlflow", map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})
	if code != http.StatusOK {
		t.Fatalf("invocations: %d %s", code, body)
	}
	sameFloats(t, "dataframe_split", predictionsOf(t, body), want)
	records := make([]map[string]any, len(rows))
	for i, r := range rows {
		records[i] = map[string]any{}
		for j, c := range cols {
			records[i][c] = r[j]
		}
	}
	code, body = invocations(t, s, "churn-mlflow", map[string]any{"dataframe_records": records})
	if code != http.StatusOK {
		t.Fatalf("invocations records: %d %s", code, body)
	}
	sameFloats(t, "dataframe_records", predictionsOf(t, body), want)
	// params for a model whose predict() takes none: refused before the model runs, saying why.
	code, body = invocations(t, s, "churn-mlflow", map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows},
		"params": map[string]any{"threshold": 0.5}})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "takes no params") {
		t.Errorf("params to a model without params: %d %s", code, body)
	}
	// The signature is enforced: a column it does not have is the client's mistake, named.
	code, body = invocations(t, s, "churn-mlflow", map[string]any{"dataframe_split": map[string]any{"columns": []string{"age"}, "data": [][]any{{1.0}}}})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "tenure_months") {
		t.Errorf("missing columns: %d %s", code, body)
	}

	// pull --format mlflow: the directory as pushed, every file verified.
	dest := filepath.Join(t.TempDir(), "pulled")
	if out, errOut, code := s.cli("models", "pull", "churn-mlflow-cloudpickle@champion", dest, "--format", "mlflow"); code != 0 {
		t.Fatalf("pull --format mlflow: %s %s", out, errOut)
	}
	v, err := c.GetVersion(ctx, "churn-mlflow-cloudpickle", "@champion")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range v.Files {
		names = append(names, f.Path)
		if got := sha256File(t, filepath.Join(dest, filepath.FromSlash(f.Path))); got != f.SHA256 {
			t.Errorf("%s: pulled %s, catalog %s", f.Path, got, f.SHA256)
		}
	}
	wantFiles := "MLmodel conda.yaml input_example.json model.pkl python_env.yaml requirements.txt serving_input_example.json"
	if strings.Join(names, " ") != wantFiles {
		t.Errorf("pulled files %v, want %s", names, wantFiles)
	}
	// The pulled directory is still an MLflow model: the reference loads it.
	sameFloats(t, "pulled model", mlflowReference(t, dest, "cloudpickle", "predict", cols, rows), want)

	// A version that is not an MLflow model is refused before anything is written.
	pushExamples(t, s)
	other := filepath.Join(t.TempDir(), "not-mlflow")
	_, errOut, code := s.cli("models", "pull", "churn@champion", other, "--format", "mlflow")
	if code == 0 || !strings.Contains(errOut, "not registered from an MLflow model directory") {
		t.Errorf("pull --format mlflow of a score.py model: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("refused pull left %s behind: %v", other, err)
	}
}

// A python_function model with the user's own loader_module (code/ on sys.path, data model.pkl) serves
// through the harness without MLflow.
func TestMLflowPythonFunctionLoaderModule(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	dir := makeMLflowModel(t, "--kind", "pyfunc")
	if out, errOut, code := s.cli("models", "push", dir, "--model", "churn-pyfunc"); code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", code, out, errOut)
	}
	v, err := s.Client().GetVersion(context.Background(), "churn-pyfunc", "1")
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, v)
	if got := schemaText(v.OutputSchema); got != "predictions:float64" {
		t.Errorf("output schema %q", got)
	}
	deploy(t, s, "churn-pyfunc", "--model", "churn-pyfunc:1")
	cols, rows := churnRows(t, 15)
	want := mlflowReference(t, dir, "pickle", "predict_proba", cols, rows)
	code, body := invocations(t, s, "churn-pyfunc", map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})
	if code != http.StatusOK {
		t.Fatalf("invocations: %d %s", code, body)
	}
	sameFloats(t, "loader_module predict", predictionsOf(t, body), want)

	// MLflow params reach predict(data, params=...): the loader's model answers 0/1 at the threshold given.
	const threshold = 0.2
	code, body = invocations(t, s, "churn-pyfunc", map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows},
		"params": map[string]any{"threshold": threshold}})
	if code != http.StatusOK {
		t.Fatalf("invocations with params: %d %s", code, body)
	}
	wantLabels := make([]float64, len(want))
	ones := 0
	for i, p := range want {
		if p >= threshold {
			wantLabels[i], ones = 1, ones+1
		}
	}
	if ones == 0 || ones == len(want) {
		t.Fatalf("threshold %v separates nothing in %v: pick rows that test it", threshold, want)
	}
	sameFloats(t, "params threshold", predictionsOf(t, body), wantLabels)
}

// Flavors Slipway cannot serve without MLflow, and MLmodel files whose paths leave the directory, are refused
// at registration with a problem naming the flavor or the path; nothing is registered.
func TestMLflowDirectoriesRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	cases := []struct {
		name    string
		files   map[string]string
		wantMsg string
	}{
		{"tensorflow", map[string]string{
			"MLmodel":                "flavors:\n  python_function:\n    loader_module: mlflow.tensorflow\n    data: tfmodel\n  tensorflow:\n    saved_model_dir: tfmodel\n",
			"tfmodel/saved_model.pb": "x", "requirements.txt": "tensorflow==2.15.0\n"}, `flavor "tensorflow" is not supported`},
		{"escape", map[string]string{
			"MLmodel":   "flavors:\n  sklearn:\n    pickled_model: ../../etc/passwd\n    serialization_format: pickle\n",
			"model.pkl": "x"}, "leaves the model directory"},
		{"missing-pickle", map[string]string{
			"MLmodel": "flavors:\n  sklearn:\n    pickled_model: model.pkl\n"}, "no such file"},
		{"no-flavors", map[string]string{"MLmodel": "run_id: abc\n"}, "names no flavors"},
	}
	for _, tc := range cases {
		_, err := push(t, c, "refused-"+tc.name, tarGz(t, tc.files), "model.tar.gz", nil)
		var ce *client.Error
		if !asClientError(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Problem.Detail, tc.wantMsg) {
			t.Errorf("%s: got %v, want a 400 problem containing %q", tc.name, err, tc.wantMsg)
		}
		if _, err := c.GetVersion(context.Background(), "refused-"+tc.name, "1"); !isNotFound(err) {
			t.Errorf("%s: a refused upload left a version: %v", tc.name, err)
		}
	}
	// Through the CLI the person reads the same message.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "MLmodel"), []byte("flavors:\n  pytorch:\n    model_data: data\n  python_function:\n    loader_module: mlflow.pytorch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := s.cli("models", "push", dir, "--model", "torch")
	if code == 0 || !strings.Contains(errOut, `flavor "pytorch" is not supported`) {
		t.Errorf("push pytorch: exit %d, %s", code, errOut)
	}
}

func isNotFound(err error) bool {
	var ce *client.Error
	return asClientError(err, &ce) && ce.Status == http.StatusNotFound
}

func schemaText(s *slipway.Schema) string {
	if s == nil {
		return ""
	}
	var parts []string
	for _, c := range s.Columns {
		parts = append(parts, c.Name+":"+c.Dtype)
	}
	return strings.Join(parts, " ")
}

package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const testMLmodel = "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n    python_version: 3.11.1\n" +
	"  sklearn:\n    pickled_model: model.pkl\n    serialization_format: pickle\n    sklearn_version: 1.2.1\n" +
	"run_id: r42\nsaved_input_example_info:\n  artifact_path: input_example.json\n" +
	"signature:\n  inputs: '[{\"name\": \"a\", \"type\": \"double\"}]'\n  outputs: '[{\"type\": \"long\"}]'\n"

// The environment comes from requirements.txt, else python_env.yaml, else conda.yaml; mlflow is left out.
func TestMLflowEnvironmentSources(t *testing.T) {
	condaYAML := "name: mlflow-env\ndependencies:\n- python=3.11.0\n- pip<=23.0\n- pip:\n  - mlflow==2.14.1\n  - scikit-learn==1.2.0\n"
	pyEnvYAML := "python: 3.11.2\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n- numpy==1.24.2\n"
	cases := []struct {
		name       string
		files      map[string]string
		wantPython string
		wantPkgs   string // sorted name=version
		wantSource string
	}{
		{"all three: requirements.txt and python_env.yaml win", map[string]string{"requirements.txt": "mlflow==2.14.1\ncloudpickle==2.2.0\nscikit-learn==1.2.1\n",
			"python_env.yaml": pyEnvYAML, "conda.yaml": condaYAML}, "3.11.2", "cloudpickle=2.2.0 scikit-learn=1.2.1", "requirements.txt, python_env.yaml, conda.yaml"},
		{"python_env.yaml dependencies", map[string]string{"python_env.yaml": pyEnvYAML}, "3.11.2", "numpy=1.24.2", "python_env.yaml"},
		{"conda.yaml only", map[string]string{"conda.yaml": condaYAML}, "3.11.0", "scikit-learn=1.2.0", "conda.yaml"},
		{"none: the MLmodel's python_version", map[string]string{}, "3.11.1", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.files["MLmodel"], tc.files["model.pkl"], tc.files["input_example.json"] = testMLmodel, "x", `{"columns": ["a"], "data": [[1.5]]}`
			dir := writeDir(t, tc.files)
			m, err := readMLmodel(dir)
			if err != nil {
				t.Fatal(err)
			}
			env, sources, err := mlflowEnvironment(dir, m)
			if err != nil {
				t.Fatal(err)
			}
			var pkgs []string
			for _, k := range sortedKeys(env.Packages) {
				pkgs = append(pkgs, k+"="+env.Packages[k])
			}
			if env.Python != tc.wantPython || strings.Join(pkgs, " ") != tc.wantPkgs || strings.Join(sources, ", ") != tc.wantSource {
				t.Errorf("python %q packages %q sources %q; want %q %q %q", env.Python, pkgs, sources, tc.wantPython, tc.wantPkgs, tc.wantSource)
			}
		})
	}
}

func TestApplyMLflow(t *testing.T) {
	base := map[string]string{"MLmodel": testMLmodel, "model.pkl": "x", "input_example.json": `{"columns": ["a"], "data": [[1.5]]}`,
		"requirements.txt": "mlflow==2.14.1\nscikit-learn==1.2.1\n"}
	with := func(changes map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range changes {
			if v == "" {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}

	var meta slipway.VersionMetadata
	if err := applyMLflow(writeDir(t, base), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Runtime != "python" || meta.InputSchema == nil || meta.InputSchema.Columns[0].Dtype != "float64" ||
		meta.OutputSchema.Columns[0].Name != "predictions" || string(meta.SampleInput) != base["input_example.json"] ||
		meta.Environment.Packages["scikit-learn"] != "1.2.1" || meta.Environment.Packages["mlflow"] != "" ||
		meta.Taxonomy.FrameworkVersion != "1.2.1" || meta.Provenance.TrainingRun != "r42" {
		t.Errorf("metadata %+v", meta)
	}

	// The client's metadata wins over the directory's.
	mine := slipway.VersionMetadata{InputSchema: &slipway.Schema{Columns: []slipway.ColumnSpec{{Name: "z", Dtype: "int64"}}},
		SampleInput: []byte(`[[1]]`), Environment: &slipway.Environment{Python: "3.11"}}
	if err := applyMLflow(writeDir(t, base), &mine); err != nil {
		t.Fatal(err)
	}
	if mine.InputSchema.Columns[0].Name != "z" || string(mine.SampleInput) != `[[1]]` || len(mine.Environment.Packages) != 0 {
		t.Errorf("metadata overridden: %+v", mine)
	}

	for _, tc := range []struct {
		name    string
		files   map[string]string
		meta    slipway.VersionMetadata
		wantErr string
	}{
		{"onnx runtime", base, slipway.VersionMetadata{Runtime: "onnx"}, `served by the "python" runtime`},
		{"example not JSON", with(map[string]string{"input_example.json": "{nope"}), slipway.VersionMetadata{}, "is not JSON"},
		{"example missing", with(map[string]string{"input_example.json": ""}), slipway.VersionMetadata{}, "input_example.json as the input example"},
		{"pickle missing", with(map[string]string{"model.pkl": ""}), slipway.VersionMetadata{}, "no such file"},
		{"conda.yaml not YAML", with(map[string]string{"requirements.txt": "", "conda.yaml": "dependencies: [unclosed"}), slipway.VersionMetadata{}, "conda.yaml is not a valid environment file"},
		{"escape", with(map[string]string{"MLmodel": strings.Replace(testMLmodel, "pickled_model: model.pkl", "pickled_model: ../model.pkl", 1)}), slipway.VersionMetadata{}, "leaves the model directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := tc.meta
			err := applyMLflow(writeDir(t, tc.files), &meta)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || slipway.ErrorCode(err) != slipway.EINVALID {
				t.Fatalf("err = %v, want an invalid error containing %q", err, tc.wantErr)
			}
		})
	}
}

package catalog

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/mlmodel"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/workerproto"
	"time"

	"go.yaml.in/yaml/v3"
)

// Check ids: stable, documented in docs/catalog.md.
const (
	CheckFiles       = "artifact.files"
	CheckRuntimeYAML = "python.runtime_yaml"
	CheckScorePy     = "python.score_py"
	CheckEnvironment = "python.environment"
	CheckLoad        = "model.load"
	CheckSample      = "model.sample_prediction"
)

func pass(id, format string, args ...any) slipway.Check {
	return slipway.Check{ID: id, Passed: true, Message: fmt.Sprintf(format, args...)}
}

func fail(id, format string, args ...any) slipway.Check {
	return slipway.Check{ID: id, Passed: false, Message: fmt.Sprintf(format, args...)}
}

// runChecks introspects the unpacked artifact in dir. It may enrich v's metadata (schemas read from an ONNX
// model). The last checks load the model in its real runtime and run it on the sample input.
func (s *Service) runChecks(ctx context.Context, dir string, v *slipway.ModelVersion) []slipway.Check {
	var checks []slipway.Check
	if v.Runtime == slipway.RuntimePython {
		staticChecks := s.pythonStaticChecks
		if mlmodel.IsMLflow(v.Files) {
			staticChecks = s.mlflowStaticChecks
		}
		static, ok := staticChecks(ctx, dir, v)
		checks = append(checks, static...)
		if !ok {
			return append(checks, fail(CheckLoad, "not run: fix the checks above first"))
		}
	} else {
		if _, err := modelruntime.ONNXFile(v.Files); err != nil {
			return append(checks, fail(CheckFiles, "%s", slipway.ErrorMessage(err)), fail(CheckLoad, "not run: no model file"))
		}
		checks = append(checks, pass(CheckFiles, "model file present"))
	}
	return append(checks, s.runtimeChecks(ctx, dir, v)...)
}

func (s *Service) pythonStaticChecks(ctx context.Context, dir string, v *slipway.ModelVersion) ([]slipway.Check, bool) {
	has := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	var checks []slipway.Check
	switch {
	case !has("score.py"):
		checks = append(checks, fail(CheckFiles, "score.py is missing at the top of the artifact: a python model needs score.py defining load_model() and predict(data, model=...)"))
	case !has("runtime.yaml") && !has("requirements.txt"):
		checks = append(checks, fail(CheckFiles, "neither runtime.yaml nor requirements.txt is present: add one so the serving environment can be checked"))
	default:
		checks = append(checks, pass(CheckFiles, "score.py and %s present", strings.Join(presentOf(has, "runtime.yaml", "requirements.txt"), " and ")))
	}
	declared, yamlCheck := readRuntimeYAML(dir, has("runtime.yaml"))
	checks = append(checks, yamlCheck)
	reqs, err := readRequirements(filepath.Join(dir, "requirements.txt"))
	if err != nil {
		checks = append(checks, fail(CheckRuntimeYAML, "requirements.txt: %v", err))
	}
	env := mergeEnvironment(v.Environment, declared, reqs)
	insp, err := s.runtimes.InspectPython(ctx, dir, sortedKeys(env.Packages))
	if err != nil {
		checks = append(checks, fail(CheckScorePy, "could not inspect the artifact with %s: %v", s.runtimes.Python(), err))
		return checks, false
	}
	checks = append(checks, scorePyCheck(insp), environmentCheck(env, insp, v.AllowEnvironmentMismatch))
	for _, c := range checks {
		if !c.Passed {
			return checks, false
		}
	}
	return checks, true
}

func presentOf(has func(string) bool, names ...string) []string {
	var out []string
	for _, n := range names {
		if has(n) {
			out = append(out, n)
		}
	}
	return out
}

// runtimeYAML is the part of an OCI Data Science runtime.yaml that Slipway reads.
type runtimeYAML struct {
	ArtifactVersion any `yaml:"MODEL_ARTIFACT_VERSION"`
	Deployment      struct {
		PythonVersion any `yaml:"INFERENCE_PYTHON_VERSION"`
	} `yaml:"MODEL_DEPLOYMENT"`
	Provenance map[string]any `yaml:"MODEL_PROVENANCE"`
}

func readRuntimeYAML(dir string, present bool) (string, slipway.Check) {
	if !present {
		return "", pass(CheckRuntimeYAML, "no runtime.yaml (optional when requirements.txt is present)")
	}
	body, err := os.ReadFile(filepath.Join(dir, "runtime.yaml"))
	if err != nil {
		return "", fail(CheckRuntimeYAML, "runtime.yaml unreadable: %v", err)
	}
	var rt runtimeYAML
	if err := yaml.Unmarshal(body, &rt); err != nil {
		return "", fail(CheckRuntimeYAML, "runtime.yaml is not valid YAML: %v", err)
	}
	if rt.ArtifactVersion == nil {
		return "", fail(CheckRuntimeYAML, "runtime.yaml has no MODEL_ARTIFACT_VERSION: add MODEL_ARTIFACT_VERSION: '3.0' (OCI Data Science artifact format)")
	}
	py := ""
	if rt.Deployment.PythonVersion != nil {
		py = fmt.Sprint(rt.Deployment.PythonVersion)
	}
	return py, pass(CheckRuntimeYAML, "runtime.yaml valid (MODEL_ARTIFACT_VERSION %v)", rt.ArtifactVersion)
}

// readRequirements reads exact pins (name==version); other lines are package names without a version. A
// missing file is nil, not an error.
func readRequirements(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return requirementPins(lines), nil
}

// requirementPins reads requirement lines (requirements.txt, conda's pip list): name==version is a pin, a name
// with another specifier is the name with any version; options (-r, -e, --hash) and comments are skipped.
func requirementPins(lines []string) map[string]string {
	out := map[string]string{}
	for _, raw := range lines {
		line := strings.TrimSpace(strings.SplitN(raw, "#", 2)[0])
		if line == "" || strings.HasPrefix(line, "-") {
			continue
		}
		line = strings.SplitN(line, ";", 2)[0]
		name, version, pinned := strings.Cut(line, "==")
		if !pinned {
			fields := strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune("<>=!~[ ", r) })
			if len(fields) == 0 {
				continue
			}
			name = fields[0]
		}
		out[normalizePackage(name)] = strings.TrimSpace(version)
	}
	return out
}

// normalizePackage applies PEP 503 normalisation so that scikit_learn and Scikit-Learn compare equal.
func normalizePackage(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	return strings.NewReplacer("_", "-", ".", "-").Replace(name)
}

// mergeEnvironment combines metadata.environment, runtime.yaml and requirements.txt; metadata wins.
func mergeEnvironment(meta *slipway.Environment, yamlPython string, reqs map[string]string) slipway.Environment {
	env := slipway.Environment{Python: yamlPython, Packages: map[string]string{}}
	for k, v := range reqs {
		env.Packages[k] = v
	}
	if meta != nil {
		if meta.Python != "" {
			env.Python = meta.Python
		}
		for k, v := range meta.Packages {
			env.Packages[normalizePackage(k)] = v
		}
	}
	return env
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func scorePyCheck(insp *modelruntime.PythonInspection) slipway.Check {
	sp := insp.ScorePy
	switch {
	case !sp.Exists:
		return fail(CheckScorePy, "score.py is missing")
	case !sp.Parses:
		return fail(CheckScorePy, "score.py does not parse: %s", sp.Error)
	}
	var missing []string
	for _, fn := range []string{"load_model", "predict"} {
		if !slices.Contains(sp.Functions, fn) {
			missing = append(missing, fn+"()")
		}
	}
	if len(missing) > 0 {
		return fail(CheckScorePy, "score.py does not define %s at top level: the python runtime calls load_model() once and predict(data, model=...) per request", strings.Join(missing, " and "))
	}
	return pass(CheckScorePy, "score.py parses and defines load_model() and predict()")
}

// environmentCheck compares the declared training environment with the serving interpreter. Python versions
// compare on major.minor (patch releases keep the ABI and pickles); package versions compare exactly.
func environmentCheck(env slipway.Environment, insp *modelruntime.PythonInspection, allow bool) slipway.Check {
	var diffs []string
	if env.Python != "" && !samePythonMinor(env.Python, insp.Python) {
		diffs = append(diffs, fmt.Sprintf("python %s declared, server has %s", env.Python, insp.Python))
	}
	for _, name := range sortedKeys(env.Packages) {
		want := env.Packages[name]
		got := insp.Packages[name]
		switch {
		case got == nil:
			diffs = append(diffs, fmt.Sprintf("%s %s declared, not installed on the server", name, orAny(want)))
		case want != "" && *got != want:
			diffs = append(diffs, fmt.Sprintf("%s %s declared, server has %s", name, want, *got))
		}
	}
	if len(diffs) == 0 {
		return pass(CheckEnvironment, "serving environment matches the training environment (python %s, %d packages)", insp.Python, len(env.Packages))
	}
	if allow {
		return pass(CheckEnvironment, "environment mismatch allowed by the request (allow_environment_mismatch): %s", strings.Join(diffs, "; "))
	}
	return fail(CheckEnvironment, "the serving environment differs from the training environment: %s. Train with the server's versions, or register with \"allow_environment_mismatch\": true to accept the risk", strings.Join(diffs, "; "))
}

func orAny(v string) string {
	if v == "" {
		return "(any version)"
	}
	return v
}

func samePythonMinor(declared, actual string) bool {
	d := strings.Split(strings.TrimPrefix(declared, "python"), ".")
	a := strings.Split(actual, ".")
	if len(d) < 2 || len(a) < 2 {
		return strings.HasPrefix(actual, declared)
	}
	return d[0] == a[0] && d[1] == a[1]
}

// runtimeChecks starts the model in its real runtime, as a replica would, and predicts the sample input.
func (s *Service) runtimeChecks(ctx context.Context, dir string, v *slipway.ModelVersion) []slipway.Check {
	v.PredictInput = "" // the server's finding (from the replica's hello below), never the client's
	spec, err := s.runtimes.ReplicaSpec(v.Runtime, dir, v.Files, nil)
	if err != nil {
		return []slipway.Check{fail(CheckLoad, "%s", slipway.ErrorMessage(err))}
	}
	ctx, cancel := context.WithTimeout(ctx, s.LoadTimeout)
	defer cancel()
	rep, err := s.runtimes.Start(ctx, spec, s.LoadTimeout, func(line string) {
		s.log.DebugContext(ctx, "registration check output", "model", v.Model, "version", v.Version, "line", line)
	})
	if err != nil {
		return []slipway.Check{fail(CheckLoad, "%v", err), fail(CheckSample, "not run: the model did not load")}
	}
	defer rep.Stop(5 * time.Second)
	hello := rep.Hello()
	fillSchemaFromModel(v, hello)
	v.PredictInput = hello.PredictInput // what the harness will hand predict(): shown with the version
	checks := []slipway.Check{pass(CheckLoad, "model loaded by the %s runtime (pid %d)", v.Runtime, hello.PID)}
	if len(v.SampleInput) == 0 || string(v.SampleInput) == "null" {
		return append(checks, pass(CheckSample, "skipped: no sample_input in the metadata; add one to have every version run once before it is READY"))
	}
	out, err := rep.PredictJSON(ctx, v.SampleInput)
	if err != nil {
		return append(checks, fail(CheckSample, "predict() on sample_input failed: %v", err))
	}
	if err := matchOutput(v.OutputSchema, unwrapONNXOutput(v.Runtime, out)); err != nil {
		return append(checks, fail(CheckSample, "the output of predict() on sample_input does not match output_schema: %v", err))
	}
	return append(checks, pass(CheckSample, "predict() on sample_input answered %s", abbreviate(out, 200)))
}

// fillSchemaFromModel takes input and output schemas from the model itself when the metadata has none.
func fillSchemaFromModel(v *slipway.ModelVersion, h workerproto.Hello) {
	toSchema := func(cols []workerproto.Column) *slipway.Schema {
		if len(cols) == 0 {
			return nil
		}
		s := &slipway.Schema{}
		for _, c := range cols {
			s.Columns = append(s.Columns, slipway.ColumnSpec{Name: c.Name, Dtype: DtypeOf(c.Datatype), Shape: c.Shape})
		}
		return s
	}
	if v.InputSchema == nil {
		v.InputSchema = toSchema(h.Inputs)
	}
	if v.OutputSchema == nil {
		v.OutputSchema = toSchema(h.Outputs)
	}
}

// DtypeOf maps an Open Inference Protocol datatype to the numpy-style dtype used in schemas.
func DtypeOf(datatype string) string {
	switch datatype {
	case "BYTES":
		return "string"
	case "FP16", "FP32", "FP64":
		return "float" + datatype[2:]
	case "BOOL":
		return "bool"
	}
	return strings.ToLower(datatype)
}

func unwrapONNXOutput(runtime string, out []byte) []byte {
	if runtime != slipway.RuntimeONNX {
		return out
	}
	var wrapped struct {
		Outputs json.RawMessage `json:"outputs"`
	}
	if json.Unmarshal(out, &wrapped) == nil && len(wrapped.Outputs) > 0 {
		return wrapped.Outputs
	}
	return out
}

func abbreviate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

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
	env := mergeEnvironment(v.Environment, declared.Python, reqs)
	if err := s.choosePythonEnv(&env, declared.EnvSlug); err != nil {
		return append(checks, fail(CheckEnvironment, "%s", slipway.ErrorMessage(err))), false
	}
	insp, err := s.runtimes.InspectPython(ctx, env.Name, dir, sortedKeys(env.Packages))
	if err != nil {
		checks = append(checks, fail(CheckScorePy, "could not inspect the artifact with %s: %v", s.interpreter(env.Name), err))
		return checks, false
	}
	checks = append(checks, scorePyCheck(insp), environmentCheck(env, insp, v.AllowEnvironmentMismatch))
	v.Environment = &env // what was declared, in one place: the deploy-time check compares it again
	for _, c := range checks {
		if !c.Passed {
			return checks, false
		}
	}
	return checks, true
}

// choosePythonEnv names in env the Python environment the version runs in: metadata.environment.name, or
// runtime.yaml's INFERENCE_ENV_SLUG (they must agree when both are given), or the default one. The name
// must be one of the server's environments.
func (s *Service) choosePythonEnv(env *slipway.Environment, yamlSlug string) error {
	switch {
	case env.Name != "" && yamlSlug != "" && env.Name != yamlSlug:
		return slipway.Errorf(slipway.EINVALID, "metadata.environment.name %q and runtime.yaml INFERENCE_ENV_SLUG %q name different python environments: give one, or the same in both", env.Name, yamlSlug)
	case env.Name == "":
		env.Name = yamlSlug
	}
	if env.Name == "" || env.Name == slipway.DefaultPythonEnv {
		env.Name = ""
		return nil
	}
	_, err := s.runtimes.Interpreter(env.Name)
	return err
}

// interpreter names the interpreter of a Python environment for messages.
func (s *Service) interpreter(env string) string {
	python, err := s.runtimes.Interpreter(env)
	if err != nil {
		return env
	}
	return python
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
		PythonVersion any    `yaml:"INFERENCE_PYTHON_VERSION"`
		EnvSlug       string `yaml:"INFERENCE_ENV_SLUG"`
	} `yaml:"MODEL_DEPLOYMENT"`
	Provenance map[string]any `yaml:"MODEL_PROVENANCE"`
}

// declaredRuntime is what runtime.yaml says about the serving environment.
type declaredRuntime struct {
	Python  string // INFERENCE_PYTHON_VERSION
	EnvSlug string // INFERENCE_ENV_SLUG: the server's Python environment to serve in
}

func readRuntimeYAML(dir string, present bool) (declaredRuntime, slipway.Check) {
	if !present {
		return declaredRuntime{}, pass(CheckRuntimeYAML, "no runtime.yaml (optional when requirements.txt is present)")
	}
	body, err := os.ReadFile(filepath.Join(dir, "runtime.yaml"))
	if err != nil {
		return declaredRuntime{}, fail(CheckRuntimeYAML, "runtime.yaml unreadable: %v", err)
	}
	var rt runtimeYAML
	if err := yaml.Unmarshal(body, &rt); err != nil {
		return declaredRuntime{}, fail(CheckRuntimeYAML, "runtime.yaml is not valid YAML: %v", err)
	}
	if rt.ArtifactVersion == nil {
		return declaredRuntime{}, fail(CheckRuntimeYAML, "runtime.yaml has no MODEL_ARTIFACT_VERSION: add MODEL_ARTIFACT_VERSION: '3.0' (OCI Data Science artifact format)")
	}
	declared := declaredRuntime{EnvSlug: strings.TrimSpace(rt.Deployment.EnvSlug)}
	if rt.Deployment.PythonVersion != nil {
		declared.Python = fmt.Sprint(rt.Deployment.PythonVersion)
	}
	return declared, pass(CheckRuntimeYAML, "runtime.yaml valid (MODEL_ARTIFACT_VERSION %v)", rt.ArtifactVersion)
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
		env.Name = meta.Name
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

// environmentCheck compares the declared training environment with the serving environment's interpreter.
func environmentCheck(env slipway.Environment, insp *modelruntime.PythonInspection, allow bool) slipway.Check {
	diffs := modelruntime.EnvironmentDiffs(env, insp)
	if len(diffs) == 0 {
		return pass(CheckEnvironment, "python environment %s matches the training environment (python %s, %d packages)", insp.Env, insp.Python, len(env.Packages))
	}
	if allow {
		return pass(CheckEnvironment, "environment mismatch allowed by the request (allow_environment_mismatch): %s", strings.Join(diffs, "; "))
	}
	return fail(CheckEnvironment, "the serving environment differs from the training environment: %s. Train with the server's versions, or register with \"allow_environment_mismatch\": true to accept the risk", strings.Join(diffs, "; "))
}

// runtimeChecks starts the model in its real runtime, as a replica would, and predicts the sample input.
func (s *Service) runtimeChecks(ctx context.Context, dir string, v *slipway.ModelVersion) []slipway.Check {
	v.PredictInput = "" // the server's finding (from the replica's hello below), never the client's
	spec, err := s.runtimes.VersionSpec(v, dir, nil)
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

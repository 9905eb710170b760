package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/archive"
	"github.com/slipway-ml/slipway/internal/mlmodel"
)

// CheckMLmodel is the check of an MLflow model directory's MLmodel file (docs/catalog.md).
const CheckMLmodel = "mlflow.mlmodel"

// mlflowOnlyPackages are pinned in every requirements.txt MLflow writes, but Slipway serves the model without
// them: checking them against the server would refuse every MLflow model for a library it never imports.
var mlflowOnlyPackages = []string{"mlflow", "mlflow-skinny"}

func isMLflowUpload(entries []archive.Entry) bool {
	files := make([]slipway.File, len(entries))
	for i, e := range entries {
		files[i] = slipway.File{Path: e.Path}
	}
	return mlmodel.IsMLflow(files)
}

// readMLmodel parses dir/MLmodel and checks that the files it names are in dir.
func readMLmodel(dir string) (*mlmodel.Model, error) {
	body, err := readSmallFile(filepath.Join(dir, mlmodel.FileName), mlmodel.MaxFileBytes)
	if err != nil {
		return nil, slipway.Wrap(slipway.EINVALID, err, "the MLmodel file could not be read: %v", err)
	}
	m, err := mlmodel.Parse(body)
	if err != nil {
		return nil, err
	}
	isFile := func(p string) bool {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
		return err == nil && fi.Mode().IsRegular()
	}
	isDir := func(p string) bool {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
		return err == nil && fi.IsDir()
	}
	if err := m.CheckFiles(isFile, isDir); err != nil {
		return nil, err
	}
	return m, nil
}

// applyMLflow fills the metadata the client left out from an MLflow model directory: the runtime, the
// signature as schemas, the input example as sample input, the environment files, the framework and the run.
// What the client's metadata says wins.
func applyMLflow(dir string, meta *slipway.VersionMetadata) error {
	if meta.Runtime != "" && meta.Runtime != slipway.RuntimePython {
		return slipway.Errorf(slipway.EINVALID, "an MLflow model directory is served by the %q runtime, not %q: drop \"runtime\" from the metadata", slipway.RuntimePython, meta.Runtime)
	}
	m, err := readMLmodel(dir)
	if err != nil {
		return err
	}
	meta.Runtime = slipway.RuntimePython
	if meta.InputSchema == nil {
		if meta.InputSchema, err = m.InputSchema(); err != nil {
			return err
		}
	}
	if meta.OutputSchema == nil {
		if meta.OutputSchema, err = m.OutputSchema(); err != nil {
			return err
		}
	}
	if len(meta.SampleInput) == 0 && m.InputExample != "" {
		body, err := readSmallFile(filepath.Join(dir, filepath.FromSlash(m.InputExample)), mlmodel.MaxFileBytes)
		if err != nil {
			return slipway.Wrap(slipway.EINVALID, err, "the input example %s could not be read: %v", m.InputExample, err)
		}
		if !json.Valid(body) {
			return slipway.Errorf(slipway.EINVALID, "the input example %s is not JSON", m.InputExample)
		}
		meta.SampleInput = body
	}
	if meta.Environment == nil {
		env, _, err := mlflowEnvironment(dir, m)
		if err != nil {
			return err
		}
		if env.Python != "" || len(env.Packages) > 0 {
			meta.Environment = &env
		}
	}
	if meta.Taxonomy == nil && m.Kind == mlmodel.KindSklearn {
		meta.Taxonomy = &slipway.Taxonomy{Framework: "scikit-learn", FrameworkVersion: m.SklearnVer}
	}
	if meta.Provenance == nil && m.RunID != "" {
		meta.Provenance = &slipway.Provenance{TrainingRun: m.RunID}
	}
	return nil
}

// mlflowEnvironment reads the training environment MLflow saved with the model: packages from
// requirements.txt, else python_env.yaml's dependencies, else conda.yaml's pip list; Python from
// python_env.yaml, else conda.yaml, else the MLmodel's python_version. It also says which files it read.
func mlflowEnvironment(dir string, m *mlmodel.Model) (slipway.Environment, []string, error) {
	env := slipway.Environment{Packages: map[string]string{}}
	var sources []string
	reqs, err := readRequirements(filepath.Join(dir, "requirements.txt"))
	if err != nil {
		return env, nil, slipway.Wrap(slipway.EINVALID, err, "requirements.txt: %v", err)
	}
	if reqs != nil {
		sources = append(sources, "requirements.txt")
	}
	var pyEnv struct {
		Python       string   `yaml:"python"`
		Dependencies []string `yaml:"dependencies"`
	}
	if ok, err := readYAML(dir, "python_env.yaml", &pyEnv); err != nil {
		return env, nil, err
	} else if ok {
		sources = append(sources, "python_env.yaml")
		env.Python = pyEnv.Python
		if reqs == nil {
			reqs = requirementPins(pyEnv.Dependencies)
		}
	}
	var conda struct {
		Dependencies []any `yaml:"dependencies"`
	}
	if ok, err := readYAML(dir, "conda.yaml", &conda); err != nil {
		return env, nil, err
	} else if ok {
		sources = append(sources, "conda.yaml")
		py, pip := condaDependencies(conda.Dependencies)
		if env.Python == "" {
			env.Python = py
		}
		if reqs == nil {
			reqs = requirementPins(pip)
		}
	}
	if env.Python == "" {
		env.Python = m.PythonVersion
	}
	for name, version := range reqs {
		env.Packages[name] = version
	}
	for _, name := range mlflowOnlyPackages {
		delete(env.Packages, name)
	}
	return env, sources, nil
}

// condaDependencies returns the python version ("python=3.11.2") and the pip requirement lines of a conda
// environment's dependencies.
func condaDependencies(deps []any) (string, []string) {
	var python string
	var pip []string
	for _, d := range deps {
		switch d := d.(type) {
		case string:
			if v, ok := strings.CutPrefix(strings.ReplaceAll(d, " ", ""), "python="); ok {
				python = strings.TrimPrefix(v, "=")
			}
		case map[string]any:
			if list, ok := d["pip"].([]any); ok {
				for _, line := range list {
					if s, ok := line.(string); ok {
						pip = append(pip, s)
					}
				}
			}
		}
	}
	return python, pip
}

// readYAML decodes dir/name into v; false when the file does not exist.
func readYAML(dir, name string, v any) (bool, error) {
	body, err := readSmallFile(filepath.Join(dir, name), mlmodel.MaxFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, slipway.Wrap(slipway.EINVALID, err, "%s could not be read: %v", name, err)
	}
	if err := yaml.Unmarshal(body, v); err != nil {
		return false, slipway.Errorf(slipway.EINVALID, "%s is not a valid environment file: %v", name, err)
	}
	return true, nil
}

// readSmallFile reads a metadata file of the upload, refusing one larger than limit.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", filepath.Base(path), limit)
	}
	return body, nil
}

// mlflowStaticChecks are the checks of an MLflow model directory before it is loaded: its MLmodel, its files
// and its environment against the serving interpreter (the same environment check as score.py models).
func (s *Service) mlflowStaticChecks(ctx context.Context, dir string, v *slipway.ModelVersion) ([]slipway.Check, bool) {
	m, err := readMLmodel(dir)
	if err != nil {
		return []slipway.Check{fail(CheckFiles, "%s", slipway.ErrorMessage(err))}, false
	}
	files := []string{mlmodel.FileName}
	if m.ModelPath != "" {
		files = append(files, m.ModelPath)
	}
	checks := []slipway.Check{pass(CheckFiles, "%s present", strings.Join(files, " and "))}
	fileEnv, sources, err := mlflowEnvironment(dir, m)
	if err != nil {
		return append(checks, fail(CheckMLmodel, "%s", slipway.ErrorMessage(err))), false
	}
	env := mergeEnvironment(v.Environment, fileEnv.Python, fileEnv.Packages)
	if err := s.choosePythonEnv(&env, ""); err != nil {
		return append(checks, fail(CheckEnvironment, "%s", slipway.ErrorMessage(err))), false
	}
	inspectFor := sortedKeys(env.Packages)
	if m.Serialization == "cloudpickle" {
		inspectFor = append(inspectFor, "cloudpickle")
	}
	insp, err := s.runtimes.InspectPython(ctx, env.Name, dir, inspectFor)
	if err != nil {
		return append(checks, fail(CheckMLmodel, "could not inspect the artifact with %s: %v", s.interpreter(env.Name), err)), false
	}
	if m.Serialization == "cloudpickle" && insp.Packages["cloudpickle"] == nil {
		return append(checks, fail(CheckMLmodel, "the model is saved with cloudpickle (serialization_format), which is not installed for %s: install it (Debian: python3-cloudpickle), or save the model with serialization_format \"pickle\"", s.interpreter(env.Name))), false
	}
	v.Environment = &env
	checks = append(checks, pass(CheckMLmodel, "%s", describeMLmodel(m, sources)), environmentCheck(env, insp, v.AllowEnvironmentMismatch))
	for _, c := range checks {
		if !c.Passed {
			return checks, false
		}
	}
	return checks, true
}

func describeMLmodel(m *mlmodel.Model, sources []string) string {
	var b strings.Builder
	switch m.Kind {
	case mlmodel.KindSklearn:
		fmt.Fprintf(&b, "MLflow model served through its sklearn flavor: %s (%s), %s()", m.ModelPath, m.Serialization, m.PredictFn)
	default:
		fmt.Fprintf(&b, "MLflow python_function model served through %s._load_pyfunc(%s)", m.LoaderModule, orDot(m.ModelPath))
	}
	if m.CodePath != "" {
		fmt.Fprintf(&b, " with %s on sys.path", m.CodePath)
	}
	fmt.Fprintf(&b, "; flavors %s", strings.Join(m.Flavors, ", "))
	if len(m.Inputs) > 0 {
		fmt.Fprintf(&b, "; signature of %d inputs", len(m.Inputs))
	}
	if len(sources) > 0 {
		fmt.Fprintf(&b, "; environment from %s", strings.Join(sources, ", "))
	}
	b.WriteString("; MLflow itself is not needed to serve it (not checked)")
	return b.String()
}

func orDot(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// hoistMLflowFolder accepts an archive holding one MLflow model directory one level down (model/MLmodel, as
// `tar czf model.tar.gz model/` or a zip of the folder makes it): when nothing is at the top but that folder,
// its contents move up to dir, so the version is the model directory itself. Anything else is left as is, but
// several such folders, or files beside the folder, are ambiguous: an error names them.
func hoistMLflowFolder(dir string, entries []archive.Entry) ([]archive.Entry, error) {
	var folders, outside []string
	for _, e := range entries {
		top, rest, nested := strings.Cut(e.Path, "/")
		switch {
		case !nested && (e.Path == mlmodel.FileName || e.Path == "score.py"):
			return entries, nil // a model at the top: nothing to hoist
		case nested && rest == mlmodel.FileName:
			folders = append(folders, top)
		}
	}
	if len(folders) == 0 {
		return entries, nil
	}
	if len(folders) > 1 {
		return nil, slipway.Errorf(slipway.EINVALID, "the archive holds several MLflow models (%s): upload one model directory per version",
			strings.Join(prefixEach(folders, "/"+mlmodel.FileName), ", "))
	}
	folder := folders[0]
	for _, e := range entries {
		if !strings.HasPrefix(e.Path, folder+"/") {
			outside = append(outside, e.Path)
		}
	}
	if len(outside) > 0 {
		if len(outside) > 5 {
			outside = append(outside[:5], "…")
		}
		return nil, slipway.Errorf(slipway.EINVALID, "the archive holds an MLflow model in %s/ and also files outside it (%s): upload the model directory alone, or with MLmodel at the top",
			folder, strings.Join(outside, ", "))
	}
	// Move the folder aside first: it may hold an entry of its own name (model/model/...).
	aside, err := os.MkdirTemp(dir, ".hoist-")
	if err != nil {
		return nil, fmt.Errorf("catalog: hoist %s: %w", folder, err)
	}
	moved := filepath.Join(aside, "model")
	if err := os.Rename(filepath.Join(dir, folder), moved); err != nil {
		return nil, fmt.Errorf("catalog: hoist %s: %w", folder, err)
	}
	children, err := os.ReadDir(moved)
	if err != nil {
		return nil, fmt.Errorf("catalog: hoist %s: %w", folder, err)
	}
	for _, c := range children {
		if err := os.Rename(filepath.Join(moved, c.Name()), filepath.Join(dir, c.Name())); err != nil {
			return nil, fmt.Errorf("catalog: hoist %s: %w", folder, err)
		}
	}
	if err := os.RemoveAll(aside); err != nil {
		return nil, fmt.Errorf("catalog: hoist %s: %w", folder, err)
	}
	out := make([]archive.Entry, len(entries))
	for i, e := range entries {
		e.Path = strings.TrimPrefix(e.Path, folder+"/")
		out[i] = e
	}
	return out, nil
}

func prefixEach(names []string, suffix string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + suffix
	}
	return out
}

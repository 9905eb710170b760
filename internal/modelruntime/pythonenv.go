package modelruntime

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/slipway-ml/slipway"
)

// Interpreter is the interpreter of the named Python environment ("" or "default": Config.Python).
func (rt *Runtimes) Interpreter(env string) (string, error) {
	if env == "" || env == slipway.DefaultPythonEnv {
		return rt.cfg.Python, nil
	}
	if path, ok := rt.cfg.PythonEnvs[env]; ok {
		return path, nil
	}
	return "", slipway.Errorf(slipway.EINVALID, "unknown python environment %q: this server has %s (an administrator adds one with --python-env NAME=/path/to/python)",
		env, strings.Join(rt.PythonEnvNames(), ", "))
}

// PythonEnvNames lists the environments, the default one first and the others by name.
func (rt *Runtimes) PythonEnvNames() []string {
	return append([]string{slipway.DefaultPythonEnv}, slices.Sorted(maps.Keys(rt.cfg.PythonEnvs))...)
}

// PythonEnvironments asks each environment's interpreter (all at once) for its version and installed
// distributions. An interpreter that cannot answer is listed with its error rather than failing the list.
func (rt *Runtimes) PythonEnvironments(ctx context.Context) []slipway.PythonEnvironment {
	names := rt.PythonEnvNames()
	out := make([]slipway.PythonEnvironment, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		python, _ := rt.Interpreter(name)
		out[i] = slipway.PythonEnvironment{Name: name, Interpreter: python, Default: name == slipway.DefaultPythonEnv}
		wg.Go(func() {
			if err := rt.describeEnv(ctx, &out[i]); err != nil {
				out[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return out
}

func (rt *Runtimes) describeEnv(ctx context.Context, e *slipway.PythonEnvironment) error {
	stdout, err := rt.runHarness(ctx, e.Interpreter, "environment")
	if err != nil {
		return err
	}
	var desc struct {
		Python     string            `json:"python"`
		Executable string            `json:"executable"`
		Packages   map[string]string `json:"packages"`
	}
	if err := json.Unmarshal(stdout, &desc); err != nil {
		return fmt.Errorf("decode what %s printed: %w", e.Interpreter, err)
	}
	e.PythonVersion, e.Executable, e.Packages = desc.Python, desc.Executable, desc.Packages
	return nil
}

// EnvironmentDiffs compares a declared training environment with what an inspection found in a Python
// environment: one sentence per difference, each naming the package, both versions and the environment.
// Python versions compare on major.minor (patch releases keep the ABI and pickles); packages compare exactly.
func EnvironmentDiffs(declared slipway.Environment, insp *PythonInspection) []string {
	where := "python environment " + insp.Env
	var diffs []string
	if declared.Python != "" && !samePythonMinor(declared.Python, insp.Python) {
		diffs = append(diffs, fmt.Sprintf("python %s declared, server has %s in %s", declared.Python, insp.Python, where))
	}
	for _, name := range slices.Sorted(maps.Keys(declared.Packages)) {
		want := declared.Packages[name]
		got := insp.Packages[name]
		switch {
		case got == nil:
			diffs = append(diffs, fmt.Sprintf("%s %s declared, not installed in %s", name, orAny(want), where))
		case want != "" && *got != want:
			diffs = append(diffs, fmt.Sprintf("%s %s declared, server has %s in %s", name, want, *got, where))
		}
	}
	return diffs
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

package slipway

import (
	"fmt"
	"regexp"
)

// DefaultPythonEnv names the server's default Python environment: the interpreter of --python.
const DefaultPythonEnv = "default"

// PythonEnvironment is one of the server's named Python interpreters (--python-env NAME=/path/to/python), as
// `slipway envs list` and GET /api/v1/environments show it: where it is, its Python version and the versions of
// the distributions it has installed, read from the interpreter itself at the time of the call.
type PythonEnvironment struct {
	Name        string `json:"name"`
	Interpreter string `json:"interpreter"`
	Default     bool   `json:"default"`
	// Executable is sys.executable as the interpreter reports it (a venv's python, not the one it links to).
	Executable    string            `json:"executable,omitempty"`
	PythonVersion string            `json:"python_version,omitempty"`
	Packages      map[string]string `json:"packages,omitempty"`
	// Error says why the interpreter could not be inspected (missing, not a Python, timed out).
	Error string `json:"error,omitempty"`
}

var pythonEnvName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidatePythonEnvName checks the name of a Python environment: a letter or digit, then letters, digits, '.', '_'
// or '-', at most 63 characters (conda's environment slugs fit).
func ValidatePythonEnvName(name string) error {
	if !pythonEnvName.MatchString(name) {
		return Errorf(EINVALID, "python environment name %q: use letters, digits, '.', '_' and '-' (at most 63, starting with a letter or digit)", name)
	}
	return nil
}

// PythonEnvOf is the name of the Python environment a version runs in.
func PythonEnvOf(v *ModelVersion) string {
	if v.Environment == nil || v.Environment.Name == "" {
		return DefaultPythonEnv
	}
	return v.Environment.Name
}

// String names the environment for messages.
func (e PythonEnvironment) String() string { return fmt.Sprintf("%s (%s)", e.Name, e.Interpreter) }

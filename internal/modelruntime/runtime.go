// Package modelruntime knows how to run a model version: what serves it (the Python harness for `python`,
// `slipway worker onnx` for `onnx`) as a ProcessSpec, where that runs (an Engine: a local child process by
// default) and how to speak docs/worker-protocol.md to it (Replica).
package modelruntime

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime/python"
)

// Config says where the runtimes' executables are.
type Config struct {
	// Python is the interpreter for `python` models: Debian's /usr/bin/python3 by default.
	Python string
	// PythonEnvs are the other named interpreters (name → path); "default" is Python.
	PythonEnvs map[string]string
	// WorkerCommand starts the Go worker (`slipway worker`); "onnx --model FILE" is appended.
	WorkerCommand []string
	// ORTLibrary is the ONNX Runtime shared library passed to workers (SLIPWAY_ORT_LIB).
	ORTLibrary string
	// ScratchDir holds the extracted harness.
	ScratchDir string
	// Scheduling is the class each runtime's replicas are put in once loaded (empty: the one they inherit from
	// the server).
	Scheduling ReplicaScheduling
	// Engine runs the replicas: LocalEngine (child processes of the server) when nil.
	Engine Engine
	// InProcess runs the replicas of in-process deployments (ProcessSpec.Isolation): an InProcessEngine on
	// ORTLibrary when nil.
	InProcess Engine
}

// Runtimes starts replicas and inspects artifacts for each runtime.
type Runtimes struct {
	cfg     Config
	harness string
}

// New writes the embedded Python harness into cfg.ScratchDir and returns the runtimes.
func New(cfg Config) (*Runtimes, error) {
	if cfg.Python == "" {
		cfg.Python = "/usr/bin/python3"
	}
	if cfg.Engine == nil {
		cfg.Engine = LocalEngine{}
	}
	if cfg.InProcess == nil {
		cfg.InProcess = &InProcessEngine{Library: cfg.ORTLibrary}
	}
	if len(cfg.WorkerCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("modelruntime: find own executable for workers: %w", err)
		}
		cfg.WorkerCommand = []string{exe, "worker"}
	}
	for name, path := range cfg.PythonEnvs {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("modelruntime: python environment %s: %w", name, err)
		}
	}
	if err := os.MkdirAll(cfg.ScratchDir, 0o755); err != nil {
		return nil, fmt.Errorf("modelruntime: %w", err)
	}
	harness := filepath.Join(cfg.ScratchDir, "slipway_harness.py")
	if err := writeFileAtomic(harness, python.Harness); err != nil {
		return nil, fmt.Errorf("modelruntime: write python harness: %w", err)
	}
	return &Runtimes{cfg: cfg, harness: harness}, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Python returns the configured interpreter.
func (rt *Runtimes) Python() string { return rt.cfg.Python }

// ReplicaSpec says how to start a replica of a model whose files are in dir (python models in the default
// environment).
func (rt *Runtimes) ReplicaSpec(runtime, dir string, files []slipway.File, extraEnv map[string]string) (ProcessSpec, error) {
	return rt.replicaSpec(slipway.DefaultPythonEnv, runtime, dir, files, extraEnv)
}

// VersionSpec says how to start a replica of v, whose files are in dir: a python version runs in the Python
// environment it names (an unknown name is an EINVALID error naming the ones there are).
func (rt *Runtimes) VersionSpec(v *slipway.ModelVersion, dir string, extraEnv map[string]string) (ProcessSpec, error) {
	return rt.replicaSpec(slipway.PythonEnvOf(v), v.Runtime, dir, v.Files, extraEnv)
}

func (rt *Runtimes) replicaSpec(pythonEnv, runtime, dir string, files []slipway.File, extraEnv map[string]string) (ProcessSpec, error) {
	spec := ProcessSpec{Runtime: runtime, Env: baseEnv(extraEnv), Dir: dir, Files: files, Scheduling: rt.cfg.Scheduling.For(runtime)}
	switch runtime {
	case slipway.RuntimePython:
		python, err := rt.Interpreter(pythonEnv)
		if err != nil {
			return ProcessSpec{}, err
		}
		spec.Path, spec.Args = python, []string{"-u", rt.harness, "serve", "--model-dir", dir}
		spec.Env = append(spec.Env, "PYTHONDONTWRITEBYTECODE=1")
		return spec, nil
	case slipway.RuntimeONNX:
		model, err := ONNXFile(files)
		if err != nil {
			return ProcessSpec{}, err
		}
		spec.Path = rt.cfg.WorkerCommand[0]
		spec.Args = append(append([]string{}, rt.cfg.WorkerCommand[1:]...), "onnx", "--model", filepath.Join(dir, model))
		if rt.cfg.ORTLibrary != "" {
			spec.Env = append(spec.Env, "SLIPWAY_ORT_LIB="+rt.cfg.ORTLibrary)
		}
		return spec, nil
	}
	return ProcessSpec{}, slipway.Errorf(slipway.EINVALID, "unknown runtime %q: use %q or %q", runtime, slipway.RuntimePython, slipway.RuntimeONNX)
}

// Start runs spec on the configured Engine and waits (up to readyTimeout) for the model to say hello. log, if
// not nil, receives each line the replica writes to stderr. On failure the error carries the replica's own last
// words (its hello error or the tail of its stderr).
//
// A spec whose Isolation is slipway.IsolationInProcess runs on the in-process engine (Config.InProcess).
func (rt *Runtimes) Start(ctx context.Context, spec ProcessSpec, readyTimeout time.Duration, log LogFunc) (*Replica, error) {
	if spec.Isolation == slipway.IsolationInProcess {
		return startReplica(ctx, rt.cfg.InProcess, spec, readyTimeout, log)
	}
	return startReplica(ctx, rt.cfg.Engine, spec, readyTimeout, log)
}

// ThreadEnv caps the thread pools of numeric libraries (OpenBLAS, OpenMP as used by scikit-learn, MKL) in each
// of `replicas` replica processes to their share of the CPUs, under env (which wins: a deployment's own
// OMP_NUM_THREADS stays). The processes already use the cores by being several; each one's pools default to
// every core and their idle threads spin: with 2 replicas on 2 cores that burned ~40% more replica CPU per row
// than the work itself (measured, bench/batch), CPU taken from the other replica and from the server. Batch
// runs and deployments use the same rule, so a model computes the same way in both. Matrix products and
// per-row loops are split by output rows, so each prediction is computed the same way whatever the thread
// count; only a predict() that splits one long sum across threads (a BLAS dot product of two long vectors)
// could differ in the last bit between replicas with different caps.
func ThreadEnv(replicas int, env map[string]string) map[string]string {
	n := strconv.Itoa(max(1, goruntime.NumCPU()/max(1, replicas)))
	out := map[string]string{"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}
	maps.Copy(out, env)
	return out
}

// baseEnv is the child's environment: the server's PATH/HOME/LANG and the worker's own variables only, so
// that server secrets (tokens) never reach user code.
func baseEnv(extra map[string]string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SLIPWAY_ORT_LIB", "SLIPWAY_TEST_WORKER", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// ONNXFile picks the model file of an onnx artifact: the only .onnx file, or model.onnx among several.
func ONNXFile(files []slipway.File) (string, error) {
	var found []string
	for _, f := range files {
		if strings.HasSuffix(strings.ToLower(f.Path), ".onnx") {
			found = append(found, f.Path)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) == 0:
		return "", slipway.Errorf(slipway.EINVALID, "no .onnx file in the artifact: an onnx model needs exactly one .onnx file (or one named model.onnx)")
	}
	for _, p := range found {
		if filepath.Base(p) == "model.onnx" {
			return p, nil
		}
	}
	return "", slipway.Errorf(slipway.EINVALID, "several .onnx files (%s): name the one to serve model.onnx", strings.Join(found, ", "))
}

// PythonInspection is what the harness reports about a python artifact without importing it.
type PythonInspection struct {
	Python  string `json:"python"`
	ScorePy struct {
		Exists    bool     `json:"exists"`
		Parses    bool     `json:"parses"`
		Error     string   `json:"error"`
		Functions []string `json:"functions"`
	} `json:"score_py"`
	Packages map[string]*string `json:"packages"`
	// Env is the name of the Python environment inspected.
	Env string `json:"-"`
}

// InspectPython runs the harness's inspect mode on dir in the Python environment pythonEnv, asking for the
// versions of packages.
func (rt *Runtimes) InspectPython(ctx context.Context, pythonEnv, dir string, packages []string) (*PythonInspection, error) {
	python, err := rt.Interpreter(pythonEnv)
	if err != nil {
		return nil, err
	}
	stdout, err := rt.runHarness(ctx, python, "inspect", "--model-dir", dir, "--packages", strings.Join(packages, ","))
	if err != nil {
		return nil, fmt.Errorf("python inspect: %w", err)
	}
	var res PythonInspection
	if err := json.Unmarshal(stdout, &res); err != nil {
		return nil, fmt.Errorf("python inspect: decode %q: %w", stdout, err)
	}
	res.Env = cmp.Or(pythonEnv, slipway.DefaultPythonEnv)
	return &res, nil
}

// runHarness runs the harness in one of its one-shot modes with python and returns what it printed.
func (rt *Runtimes) runHarness(ctx context.Context, python string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{rt.harness}, args...)...)
	cmd.Env = baseEnv(nil)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", python, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

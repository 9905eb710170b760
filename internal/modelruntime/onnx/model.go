package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// ErrNoCgo is returned by Init and Load in binaries built with CGO_ENABLED=0.
var ErrNoCgo = errors.New("onnx: this slipway binary was built without cgo (CGO_ENABLED=0); rebuild with CGO_ENABLED=1 to use the onnx runtime")

// Options configure Load.
type Options struct {
	// IntraOpThreads is ONNX Runtime's intra-op thread count; 0 means 1 (small models
	// and many replicas: parallelism comes from replicas, not from threads).
	IntraOpThreads int
}

// Model is a loaded ONNX model. Predict is safe for concurrent use; Close waits for
// in-flight predictions.
type Model struct {
	path string
	mu   sync.RWMutex // read-held by Predict, write-held by Close
	sess *session     // nil once closed
	// cancelTarget is sess for Cancel, which must not wait for the lock a running prediction holds.
	cancelTarget atomic.Pointer[session]
	inputs       []workerproto.Column
	outputs      []workerproto.Column
	warnings     []string
}

// InputError is a request that does not fit the model's inputs (wrong name, datatype,
// shape or data). The model itself is fine.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return "onnx: " + e.Msg }

func inputErr(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// Load opens the ONNX model at path after refusing external data that resolves outside
// the model's folder. Init must have succeeded first. Outputs that cannot be served as
// tensors (sequences, maps, FP16) are left out; Warnings says which.
func Load(path string, opts Options) (*Model, error) {
	m, err := load(path, opts)
	if err != nil {
		return nil, fmt.Errorf("onnx: load %s: %w", path, err)
	}
	return m, nil
}

func load(path string, opts Options) (*Model, error) {
	if !initialized() {
		return nil, errors.New("ONNX Runtime is not initialized (call onnx.Init first)")
	}
	if opts.IntraOpThreads <= 0 {
		opts.IntraOpThreads = 1
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, errors.New("not a non-empty regular file")
	}
	if err := checkExternalData(abs); err != nil {
		return nil, err
	}
	sess, warnings, err := openSession(abs, opts)
	if err != nil {
		return nil, err
	}
	m := &Model{path: abs, sess: sess, inputs: sess.inputs, outputs: sess.outputs, warnings: warnings}
	m.cancelTarget.Store(sess)
	return m, nil
}

// Inputs describes the model's inputs: names, OIP datatypes, shapes (-1 = dynamic).
func (m *Model) Inputs() []workerproto.Column { return cloneColumns(m.inputs) }

// Outputs describes the outputs Predict returns, in order.
func (m *Model) Outputs() []workerproto.Column { return cloneColumns(m.outputs) }

// Warnings lists outputs Load left out and why.
func (m *Model) Warnings() []string { return slices.Clone(m.warnings) }

func cloneColumns(cols []workerproto.Column) []workerproto.Column {
	out := slices.Clone(cols)
	for i := range out {
		out[i].Shape = slices.Clone(out[i].Shape)
	}
	return out
}

// Predict runs the model. Inputs are matched by name; a model with a single input takes
// a single tensor whatever its name. Datatypes must match exactly and shapes must match
// the model's fixed dimensions. Errors about the request are *InputError.
func (m *Model) Predict(in []workerproto.Tensor) ([]workerproto.Tensor, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.sess == nil {
		return nil, errors.New("onnx: predict: model is closed")
	}
	ordered, err := m.arrange(in)
	if err != nil {
		return nil, err
	}
	out, err := m.sess.run(ordered)
	if err != nil {
		return nil, fmt.Errorf("onnx: run %s: %w", filepath.Base(m.path), err)
	}
	return out, nil
}

// arrange orders the request's tensors like the model's inputs and checks them.
func (m *Model) arrange(in []workerproto.Tensor) ([]workerproto.Tensor, error) {
	if len(m.inputs) == 1 && len(in) == 1 {
		t := in[0]
		t.Name = m.inputs[0].Name
		return []workerproto.Tensor{t}, checkInput(m.inputs[0], t)
	}
	ordered := make([]workerproto.Tensor, len(m.inputs))
	found := make([]bool, len(m.inputs))
	for _, t := range in {
		i := slices.IndexFunc(m.inputs, func(c workerproto.Column) bool { return c.Name == t.Name })
		switch {
		case i < 0:
			return nil, inputErr("unknown input %q (model inputs: %s)", t.Name, strings.Join(columnNames(m.inputs), ", "))
		case found[i]:
			return nil, inputErr("input %s given twice", t.Name)
		}
		if err := checkInput(m.inputs[i], t); err != nil {
			return nil, err
		}
		ordered[i], found[i] = t, true
	}
	for i, ok := range found {
		if !ok {
			return nil, inputErr("missing input %s (model inputs: %s)", m.inputs[i].Name, strings.Join(columnNames(m.inputs), ", "))
		}
	}
	return ordered, nil
}

// checkInput compares a request tensor with the model's input column.
func checkInput(col workerproto.Column, t workerproto.Tensor) error {
	if t.Datatype != col.Datatype || !shapeFits(col.Shape, t.Shape) {
		return inputErr("input %s: expected %s %v, got %s %v", col.Name, col.Datatype, col.Shape, t.Datatype, t.Shape)
	}
	if len(t.Shape) == 0 {
		return inputErr("input %s: scalar (rank 0) inputs are not supported", col.Name)
	}
	if t.NumElements() == 0 {
		return inputErr("input %s: empty tensor %v (ONNX Runtime values need at least one element)", col.Name, t.Shape)
	}
	if err := t.Validate(); err != nil {
		return inputErr("input %s: %v", col.Name, err)
	}
	return nil
}

func shapeFits(model, got []int64) bool {
	if len(model) != len(got) {
		return false
	}
	for i, d := range model {
		if d >= 0 && d != got[i] {
			return false
		}
	}
	return true
}

// Cancel makes the prediction in progress fail as soon as ONNX Runtime checks (between the graph's nodes), and
// every later one: it is how a call past its deadline ends in a model that runs inside the server, where there is
// no process to kill. The model is then only good for Close.
func (m *Model) Cancel() {
	// No lock: Close holds it while a prediction runs, and Cancel must reach that prediction. sess is set once
	// at load and only cleared by Close, under the write lock, which waits for Predict; a Cancel racing a Close
	// finds either the session (terminate is safe until it is destroyed, which Close does after in-flight
	// predictions) or nil.
	if s := m.cancelTarget.Load(); s != nil {
		s.terminate()
	}
}

// Close releases the session after in-flight predictions finish. It is idempotent.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == nil {
		return nil
	}
	m.cancelTarget.Store(nil)
	err := m.sess.close()
	m.sess = nil
	if err != nil {
		return fmt.Errorf("onnx: close %s: %w", filepath.Base(m.path), err)
	}
	return nil
}

func columnNames(cols []workerproto.Column) []string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return names
}

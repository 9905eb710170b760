package modelruntime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// InProcessEngine runs ONNX replicas inside the server: each replica is an ONNX Runtime session of its own,
// called on the request's goroutine, with no process, pipe or frame between the pool and the model. It is the
// engine of the deployments with "isolation": "in-process"; what a model does wrong then happens to the server
// (docs/deployments.md). Registration checks never run here: they start the model as a process.
//
// Threads: each session has its own intra-op thread count (IntraOpThreads, default 1: the call runs on the
// calling thread and the session starts no thread at all) and runs its graph sequentially, so it uses no inter-op
// pool; the replicas share the server's threads, which Go's scheduler gives to the requests. A session therefore
// costs memory, never idle threads: 300 loaded sessions add no thread to the server.
type InProcessEngine struct {
	// Library is the ONNX Runtime shared library (empty: onnx.LibraryPath).
	Library string
	// IntraOpThreads is each session's intra-op thread count (0: 1).
	IntraOpThreads int

	// load is held while a session is created: the growth of the C heap over one creation is that session's.
	load sync.Mutex
}

var _ Engine = (*InProcessEngine)(nil)

// Start loads the model of spec (an ONNX runtime) into this process and returns the replica ready to serve. The
// load runs before Start returns: ONNX Runtime cannot interrupt a session's creation, so there is nothing a
// ready timeout could cancel.
func (e *InProcessEngine) Start(ctx context.Context, spec ProcessSpec, stderr LogFunc) (Conn, error) {
	if spec.Runtime != slipway.RuntimeONNX {
		return nil, slipway.Errorf(slipway.EINVALID, "isolation %q runs ONNX models only; a %s model runs as a process", slipway.IsolationInProcess, spec.Runtime)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	file, err := ONNXFile(spec.Files)
	if err != nil {
		return nil, err
	}
	lib := e.Library
	if lib == "" {
		if lib, err = onnx.LibraryPath(); err != nil {
			return nil, err
		}
	}
	if err := onnx.Init(lib); err != nil {
		return nil, err
	}
	path := filepath.Join(spec.Dir, file)
	began := time.Now()
	m, bytes, err := e.loadMeasured(path)
	if err != nil {
		return nil, fmt.Errorf("model failed to load: %w", err)
	}
	logf := func(format string, args ...any) {
		if stderr != nil {
			stderr(fmt.Sprintf(format, args...))
		}
	}
	for _, w := range m.Warnings() {
		logf("warning: %s", w)
	}
	logf("model loaded in-process: %s in %s, %d bytes of C heap (inputs %s; outputs %s)", file,
		time.Since(began).Round(time.Microsecond), bytes, columnsText(m.Inputs()), columnsText(m.Outputs()))
	return &inProcessReplica{model: m, handler: &onnx.Handler{Model: m}, bytes: bytes, done: make(chan struct{}),
		hello: workerproto.Hello{OK: true, Runtime: slipway.RuntimeONNX, PID: os.Getpid(), Inputs: m.Inputs(), Outputs: m.Outputs()}}, nil
}

// loadMeasured loads the model at path, one load at a time, and returns the C heap it took.
func (e *InProcessEngine) loadMeasured(path string) (*onnx.Model, int64, error) {
	e.load.Lock()
	defer e.load.Unlock()
	before, _ := onnx.HeapInUse()
	m, err := onnx.Load(path, onnx.Options{IntraOpThreads: e.IntraOpThreads})
	if err != nil {
		return nil, 0, err
	}
	after, _ := onnx.HeapInUse()
	onnx.ReleaseFreeMemory() // what the load used and freed (the parsed protobuf: as much again as the weights)
	return m, max(after-before, 0), nil
}

func columnsText(cols []workerproto.Column) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprintf("%s %s %v", c.Name, c.Datatype, c.Shape)
	}
	return strings.Join(parts, ", ")
}

// inProcessReplica is a Session: an ONNX Runtime session in the server's own process.
type inProcessReplica struct {
	model   *onnx.Model
	handler *onnx.Handler
	hello   workerproto.Hello
	bytes   int64

	end    sync.Once
	done   chan struct{}
	killed bool // set before done is closed
}

var _ Session = (*inProcessReplica)(nil)

// errInProcess answers the stream calls: an in-process replica is called through Session, never by frames.
var errInProcess = errors.New("an in-process replica takes calls, not frames")

func (r *inProcessReplica) Read([]byte) (int, error)  { return 0, errInProcess }
func (r *inProcessReplica) Write([]byte) (int, error) { return 0, errInProcess }

// Close ends the replica once its call in progress (if any) has answered, and frees its session.
func (r *inProcessReplica) Close() error {
	r.stop(false)
	return nil
}

// Kill cancels the call in progress (ONNX Runtime stops between nodes) and frees the session once it returned.
func (r *inProcessReplica) Kill() { r.stop(true) }

func (r *inProcessReplica) stop(kill bool) {
	r.end.Do(func() {
		if kill {
			r.model.Cancel()
		}
		_ = r.model.Close() // waits for the call in progress; an error here leaves nothing to release
		onnx.ReleaseFreeMemory()
		r.killed = kill
		close(r.done)
	})
}

func (r *inProcessReplica) Ready() error          { return nil } // the server's threads keep the server's policy
func (r *inProcessReplica) Done() <-chan struct{} { return r.done }
func (r *inProcessReplica) PID() int              { return 0 } // not a process of its own

func (r *inProcessReplica) ExitErr() error {
	if r.killed {
		return errors.New("in-process session cancelled")
	}
	return nil
}

func (r *inProcessReplica) Hello() workerproto.Hello { return r.hello }

func (r *inProcessReplica) PredictTensors(in []workerproto.Tensor) ([]workerproto.Tensor, error) {
	return r.handler.PredictTensors(in)
}

// PredictTensorsParams refuses: an ONNX model takes no MLflow params (its Hello says so, and the server
// answers 400 before a request with params gets here).
func (r *inProcessReplica) PredictTensorsParams([]workerproto.Tensor, []byte) ([]workerproto.Tensor, error) {
	return nil, &workerproto.ModelError{Message: "this model's predict() takes no params argument", Type: "ValueError"}
}

func (r *inProcessReplica) PredictJSON(body []byte) ([]byte, error) {
	return r.handler.PredictJSON(body)
}

func (r *inProcessReplica) Ping() error {
	select {
	case <-r.done:
		return errors.New("in-process session closed")
	default:
		return nil
	}
}

// MemoryBytes is the C heap the session took when it was created.
func (r *inProcessReplica) MemoryBytes() int64 { return r.bytes }

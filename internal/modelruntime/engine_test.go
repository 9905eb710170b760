package modelruntime

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// inProcessEngine serves replicas on goroutines, as an engine without a local process would: the Replica
// above it must not care.
type inProcessEngine struct{}

type echo struct{}

func (echo) PredictTensors(in []workerproto.Tensor) ([]workerproto.Tensor, error) { return in, nil }
func (echo) PredictJSON(body []byte) ([]byte, error)                              { return body, nil }

type pipeConn struct {
	io.Reader
	io.WriteCloser
	done   chan struct{}
	err    error
	killed chan struct{}
}

func (inProcessEngine) Start(_ context.Context, spec ProcessSpec, stderr LogFunc) (Conn, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := &pipeConn{Reader: outR, WriteCloser: inW, done: make(chan struct{}), killed: make(chan struct{})}
	go func() {
		defer close(c.done)
		stderr("serving " + spec.Runtime)
		c.err = workerproto.Serve(inR, outW, workerproto.Hello{OK: true, Runtime: spec.Runtime}, echo{})
		_ = outW.Close() // the replica's "exit": Read returns EOF
	}()
	go func() { // Kill: both ends of the stream break, which ends Serve
		<-c.killed
		inR.CloseWithError(io.ErrClosedPipe)
		outW.CloseWithError(io.ErrClosedPipe)
	}()
	return c, nil
}

func (c *pipeConn) Ready() error          { return nil }
func (c *pipeConn) Done() <-chan struct{} { return c.done }
func (c *pipeConn) ExitErr() error        { return c.err }
func (c *pipeConn) PID() int              { return 0 }
func (c *pipeConn) Kill() {
	select {
	case <-c.killed:
	default:
		close(c.killed)
	}
}

// Runtimes.Start drives any Engine: here one with no process behind it.
func TestEngineWithoutProcess(t *testing.T) {
	rt, err := New(Config{ScratchDir: t.TempDir(), Engine: inProcessEngine{}})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	r, err := rt.Start(context.Background(), ProcessSpec{Runtime: "onnx"}, time.Minute, func(line string) { lines = append(lines, line) })
	if err != nil {
		t.Fatal(err)
	}
	if r.Hello().Runtime != "onnx" || r.PID() != 0 {
		t.Errorf("hello %+v, pid %d: want the engine's hello and no pid", r.Hello(), r.PID())
	}
	out, err := r.PredictJSON(context.Background(), []byte(`{"x":1}`))
	if err != nil || string(out) != `{"x":1}` {
		t.Fatalf("predict: %s, %v", out, err)
	}
	if err := r.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Stop(time.Second)
	if err := r.ExitErr(); err != nil {
		t.Errorf("exit after stop: %v", err)
	}
	if strings.Join(lines, "\n") != "serving onnx" || r.Tail() != "serving onnx" {
		t.Errorf("stderr lines %q, tail %q", lines, r.Tail())
	}
}

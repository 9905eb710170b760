// Package worker holds the bodies of `slipway worker <runtime>` child processes, which
// serve one model over the protocol in docs/worker-protocol.md on stdin/stdout and log
// to stderr.
//
// JSON requests (J frames) to the ONNX worker take one of two forms:
//
//	{"inputs": {"features": [[5.1, 3.5, 1.4, 0.2]], "other": [1, 2]}}  // by input name
//	{"data": [[5.1, 3.5, 1.4, 0.2]]}                                   // single-input models
//
// Each value is a nested list whose nesting gives the shape ([[…4 numbers…]] is [1 4]);
// it must be rectangular. Leaves are converted to the input's datatype: numbers for
// FP16/FP32/FP64; integral numbers (1 or 1.0, in range) for INT*/UINT*; true/false (or
// 0/1) for BOOL; strings for BYTES. A model with one input takes a single "inputs" entry
// whatever its name. The answer (j frame) lists every output in model order:
//
//	{"outputs": {"probabilities": [[0.1, 0.9]], "label": [1]}}
//
// with floats in shortest round-trip form (NaN and ±Inf become null), BYTES as strings
// (invalid UTF-8 replaced by U+FFFD). Request errors are E frames of type ValueError;
// ONNX Runtime failures are RuntimeError. inference.DecodeWorkerJSON and
// inference.EncodeWorkerJSON are the codec.
package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/slipway-ml/slipway/internal/modelruntime/onnx"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// RunONNX is the body of `slipway worker onnx --model PATH`: it initializes ONNX
// Runtime, loads the model, and serves the worker protocol on stdin/stdout until stdin
// reaches EOF (then it returns nil). On load failure it writes a hello with ok=false
// and the error, and returns the error (the caller exits 1). Logs go to stderr.
//
// When ctx is cancelled, RunONNX closes stdin if it is an io.Closer and returns
// ctx.Err() once Serve stops. Closing does not interrupt a blocked read on every kind
// of file (os.Stdin on a pipe usually is not interruptible): the usual way to stop a
// worker is EOF on stdin, or the parent killing the process.
func RunONNX(ctx context.Context, modelPath string, stdin io.Reader, stdout io.Writer, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("runtime", "onnx", "model", modelPath)
	hello := workerproto.Hello{Runtime: "onnx", PID: os.Getpid()}
	start := time.Now()
	m, err := loadONNX(ctx, modelPath)
	if err != nil {
		log.Error("model failed to load", "err", err)
		hello.Error = err.Error()
		if werr := workerproto.Serve(stdin, stdout, hello, nil); werr != nil {
			log.Error("cannot write hello", "err", werr)
		}
		return err
	}
	defer m.Close()
	for _, w := range m.Warnings() {
		log.Warn(w)
	}
	hello.OK, hello.Inputs, hello.Outputs = true, m.Inputs(), m.Outputs()
	log.Info("model loaded", "seconds", time.Since(start).Seconds(), "inputs", columnsText(hello.Inputs), "outputs", columnsText(hello.Outputs))

	stop := closeOnCancel(ctx, stdin)
	err = workerproto.Serve(stdin, stdout, hello, &onnx.Handler{Model: m})
	stop()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("worker onnx: %w", err)
	}
	log.Info("stdin closed, exiting")
	return nil
}

func loadONNX(ctx context.Context, modelPath string) (*onnx.Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lib, err := onnx.LibraryPath()
	if err != nil {
		return nil, err
	}
	if err := onnx.Init(lib); err != nil {
		return nil, err
	}
	return onnx.Load(modelPath, onnx.Options{})
}

// closeOnCancel closes r (if it is an io.Closer) when ctx is done. The returned stop
// function ends the watch and waits for a close already under way.
func closeOnCancel(ctx context.Context, r io.Reader) (stop func()) {
	c, ok := r.(io.Closer)
	if !ok {
		return func() {}
	}
	done := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(done)
		_ = c.Close() // only to unblock the read: the cancellation is what the caller reports
	})
	return func() {
		if !stopWatch() {
			<-done
		}
	}
}

func columnsText(cols []workerproto.Column) string {
	s := ""
	for i, c := range cols {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s %v", c.Name, c.Datatype, c.Shape)
	}
	return s
}

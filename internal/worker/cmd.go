package worker

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
)

// Main is `slipway worker RUNTIME --model PATH`: a model replica process started by the server. It speaks
// docs/worker-protocol.md on stdin/stdout and logs to stderr; it is not meant to be run by hand.
// `slipway worker serve` is the network replica (serve.go), which is.
func Main(ctx context.Context, args []string) error {
	return run(ctx, args, os.Stdin, os.Stdout, os.Stderr)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "serve" {
		return Serve(ctx, args[1:], stderr)
	}
	if len(args) > 0 && args[0] == "probe" {
		return Probe(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "onnx" {
		return fmt.Errorf("usage: slipway worker onnx --model PATH (started by the server for each replica)\n       slipway worker serve --listen ADDR --spec SPEC (a network replica of an external deployment)\n       slipway worker probe --status-file FILE (a pod's probe of a network replica)")
	}
	fs := flag.NewFlagSet("slipway worker onnx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", "", "path to the .onnx model file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *model == "" {
		return fmt.Errorf("slipway worker onnx: --model is required")
	}
	return RunONNX(ctx, *model, stdin, stdout, stderr)
}

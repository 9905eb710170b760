package worker

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// TestMain doubles as a real worker process: with SLIPWAY_TEST_WORKER=onnx the test
// binary runs RunONNX on its stdin/stdout for the model in SLIPWAY_TEST_MODEL and exits,
// like `slipway worker onnx --model PATH` does.
func TestMain(m *testing.M) {
	if os.Getenv("SLIPWAY_TEST_WORKER") == "onnx" {
		if err := RunONNX(context.Background(), os.Getenv("SLIPWAY_TEST_MODEL"), os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

package worker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway/internal/modelruntime/onnx/onnxtest"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

var rows = [][]float32{{1, 2, 3, 4}, {-1, 0.5, 0, 2}}

// startWorker runs RunONNX in a goroutine connected to a Client through io.Pipes.
// Cleanup closes the client (EOF on the worker's stdin) and checks RunONNX's result.
func startWorker(t *testing.T, ctx context.Context, model string, wantErr bool) (*workerproto.Client, *syncBuffer) {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		err := RunONNX(ctx, model, stdinR, stdoutW, logs)
		stdoutW.Close()
		stdinR.Close()
		done <- err
	}()
	c := workerproto.NewClient(stdinW, stdoutR)
	t.Cleanup(func() {
		c.Close()
		if err := <-done; (err != nil) != wantErr {
			t.Errorf("RunONNX returned %v (want error: %v); logs:\n%s", err, wantErr, logs.String())
		}
	})
	return c, logs
}

func TestRunONNXThroughPipes(t *testing.T) {
	onnxtest.Init(t)
	c, _ := startWorker(t, context.Background(), onnxtest.BuildClassifier(t, t.TempDir()), false)
	h, err := c.ReadHello()
	if err != nil {
		t.Fatal(err)
	}
	if !h.OK || h.Runtime != "onnx" || h.PID != os.Getpid() || len(h.Inputs) != 1 || h.Inputs[0].Name != "features" || len(h.Outputs) != 2 {
		t.Fatalf("hello = %+v", h)
	}
	checkClassifier(t, c)
}

// checkClassifier runs the tensor and JSON paths against numpy and checks errors.
func checkClassifier(t *testing.T, c *workerproto.Client) {
	t.Helper()
	want := onnxtest.NumpyClassifier(t, rows)
	out, err := c.PredictTensors([]workerproto.Tensor{workerproto.NewFloat32("features", []int64{2, 4}, append(rows[0], rows[1]...))})
	if err != nil {
		t.Fatal(err)
	}
	probs, _ := out[0].Float32s()
	labels, _ := out[1].Int64s()
	for i := range rows {
		for j := range 2 {
			if math.Abs(float64(probs[2*i+j])-want.Probabilities[i][j]) > 1e-5 {
				t.Fatalf("probabilities %v, numpy %v", probs, want.Probabilities)
			}
		}
	}
	if !reflect.DeepEqual(labels, want.Label) {
		t.Fatalf("labels %v, numpy %v", labels, want.Label)
	}

	for _, body := range []string{`{"data": [[1, 2, 3, 4], [-1, 0.5, 0, 2]]}`, `{"inputs": {"features": [[1, 2, 3, 4], [-1, 0.5, 0, 2]]}}`} {
		res, err := c.PredictJSON([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Outputs struct {
				Probabilities [][]float64 `json:"probabilities"`
				Label         []int64     `json:"label"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(res, &got); err != nil {
			t.Fatalf("%s: %v", res, err)
		}
		for i := range rows {
			for j := range 2 {
				if math.Abs(got.Outputs.Probabilities[i][j]-want.Probabilities[i][j]) > 1e-5 {
					t.Fatalf("JSON probabilities %s, numpy %v", res, want.Probabilities)
				}
			}
		}
		if !reflect.DeepEqual(got.Outputs.Label, want.Label) {
			t.Fatalf("JSON labels %s, numpy %v", res, want.Label)
		}
	}

	errs := []struct {
		name string
		call func() error
		want workerproto.ModelError
	}{
		{"tensor dtype", func() error {
			_, err := c.PredictTensors([]workerproto.Tensor{workerproto.NewFloat64("features", []int64{2, 3}, make([]float64, 6))})
			return err
		}, workerproto.ModelError{Message: "onnx: input features: expected FP32 [-1 4], got FP64 [2 3]", Type: "ValueError"}},
		{"json shape", func() error {
			_, err := c.PredictJSON([]byte(`{"data": [1, 2, 3, 4]}`))
			return err
		}, workerproto.ModelError{Message: "onnx: input features: expected FP32 [-1 4], got FP32 [4]", Type: "ValueError"}},
		{"json syntax", func() error {
			_, err := c.PredictJSON([]byte(`{"data": [1, 2`))
			return err
		}, workerproto.ModelError{Message: `request must be {"inputs": {name: nested list}} or {"data": nested list}: unexpected EOF`, Type: "ValueError"}},
	}
	for _, e := range errs {
		var me *workerproto.ModelError
		if err := e.call(); !errors.As(err, &me) || *me != e.want {
			t.Errorf("%s: got %v, want %+v", e.name, err, e.want)
		}
	}
	if err := c.Ping(); err != nil {
		t.Fatalf("ping after errors: %v", err)
	}
}

func TestRunONNXLoadFailure(t *testing.T) {
	onnxtest.Init(t)
	bad := filepath.Join(t.TempDir(), "bad.onnx")
	if err := os.WriteFile(bad, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, logs := startWorker(t, context.Background(), bad, true)
	_, err := c.ReadHello()
	if err == nil || !strings.Contains(err.Error(), "onnx: load "+bad+": not a valid ONNX model") {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(logs.String(), `msg="model failed to load"`) {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

func TestRunONNXCancel(t *testing.T) {
	onnxtest.Init(t)
	ctx, cancel := context.WithCancel(context.Background())
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- RunONNX(ctx, onnxtest.BuildClassifier(t, t.TempDir()), stdinR, stdoutW, io.Discard)
		stdoutW.Close()
	}()
	defer stdinW.Close()
	c := workerproto.NewClient(stdinW, stdoutR)
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunONNX after cancel: %v", err)
	}
}

// TestWorkerProcess runs the worker as a real child process (this test binary, see
// TestMain) and talks to it over its stdin/stdout.
func TestWorkerProcess(t *testing.T) {
	onnxtest.Init(t)
	model := onnxtest.BuildClassifier(t, t.TempDir())
	tests := []struct {
		name     string
		model    string
		wantHelo string
		wantExit int
	}{
		{"serves", model, "", 0},
		{"missing model", filepath.Join(t.TempDir(), "missing.onnx"), "no such file or directory", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "SLIPWAY_TEST_WORKER=onnx", "SLIPWAY_TEST_MODEL="+tt.model)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			c := workerproto.NewClient(stdin, stdout)
			h, err := c.ReadHello()
			if tt.wantHelo != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantHelo) {
					t.Errorf("hello: %v, want %q", err, tt.wantHelo)
				}
			} else if err != nil {
				t.Fatalf("hello: %v; stderr:\n%s", err, stderr.String())
			} else {
				if h.PID != cmd.Process.Pid {
					t.Errorf("hello pid %d, child pid %d", h.PID, cmd.Process.Pid)
				}
				checkClassifier(t, c)
			}
			c.Close()
			err = cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != tt.wantExit {
				t.Fatalf("exit code %d (%v), want %d; stderr:\n%s", code, err, tt.wantExit, stderr.String())
			}
			if !strings.Contains(stderr.String(), "runtime=onnx") {
				t.Errorf("stderr has no log lines:\n%s", stderr.String())
			}
		})
	}
}

package serving

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx/onnxtest"
	"github.com/slipway-ml/slipway/internal/tracing"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// BenchmarkPredictTensors is the prediction path of a batched in-process ONNX deployment (queue, batch, replica,
// model) with tracing off and on. "off" is the figure to compare with a build without tracing (docs/monitoring.md):
// tracing off must cost nothing there.
func BenchmarkPredictTensors(b *testing.B) {
	onnxtest.Init(b)
	m := tinyModels(b, 1)[0]
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPool(m.Name, Options{MaxQueue: 64, Timeout: 30 * time.Second, Batching: &slipway.Batching{MaxBatchSize: 64}},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err := p.Rollout(context.Background(), 1, 1, inProcessStarter(rt, m.dir)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	in := []workerproto.Tensor{fp32(m.Input)}
	run := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.PredictTensors(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("tracing=off", run)
	b.Run("tracing=on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider() // spans recorded and ended, exported nowhere
		defer func() { _ = tp.Shutdown(context.Background()) }()
		off := tracing.Use(tp)
		defer off()
		run(b)
	})
}

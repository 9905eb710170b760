package serving

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/slipway-ml/slipway/internal/tracing"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// BenchmarkPredictTensors is the prediction path of a batched in-process ONNX deployment (queue, batch, replica,
// model) with tracing off and on. "off" is the figure to compare with a build without tracing (docs/monitoring.md):
// tracing off must cost nothing there.
func BenchmarkPredictTensors(b *testing.B) {
	p, m := batchedInProcessPool(b, 64, 1)
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

package inference

import (
	"testing"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// inputsBenchBody is the serving benchmark's ONNX request (bench/run.sh tensor-1.json): one row of 4 features.
var inputsBenchBody = []byte(`{"inputs": [[31.0, 29.0, 36.09, 0.0]]}`)

func BenchmarkDecodeMLflowInputs(b *testing.B) {
	b.SetBytes(int64(len(inputsBenchBody)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMLflowJSON(inputsBenchBody, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMLflowResponse(b *testing.B) {
	outs := []workerproto.Tensor{
		workerproto.NewInt64("label", []int64{1}, []int64{0}),
		workerproto.NewFloat32("probabilities", []int64{1, 2}, []float32{0.9836631, 0.016336916}),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeMLflowResponse(outs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSplit cuts the outputs of a batch of 9 one-row requests (the ONNX example's label and probabilities)
// back into one set per request, as the batcher does after every batched model call.
func BenchmarkSplit(b *testing.B) {
	const n = 9
	outs := []workerproto.Tensor{
		workerproto.NewInt64("label", []int64{n}, make([]int64, n)),
		workerproto.NewFloat32("probabilities", []int64{n, 2}, make([]float32, 2*n)),
	}
	rows := make([]int, n)
	for i := range rows {
		rows[i] = 1
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Split(outs, rows); err != nil {
			b.Fatal(err)
		}
	}
}

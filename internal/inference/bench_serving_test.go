package inference

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
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

// wideColumns is bench/pywide's frame: 30 float64 features f00..f29 (the Python batched benchmark's request).
const wideColumns = 30

var wideSchema = func() *slipway.Schema {
	s := &slipway.Schema{}
	for j := range wideColumns {
		s.Columns = append(s.Columns, slipway.ColumnSpec{Name: fmt.Sprintf("f%02d", j), Dtype: "float64"})
	}
	return s
}()

// wideBenchBody is bench/pywide's frame-1.json in form: one row of 30 named columns as dataframe_split.
func wideBenchBody() []byte {
	var b strings.Builder
	b.WriteString(`{"dataframe_split": {"columns": [`)
	for j := range wideColumns {
		if j > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `"f%02d"`, j)
	}
	b.WriteString(`], "data": [[`)
	for j := range wideColumns {
		if j > 0 {
			b.WriteString(", ")
		}
		// at most 4 decimals, as bench/pywide writes them
		b.WriteString(strconv.FormatFloat(math.Round((float64(j%7)*1.37-4.25)*1e4)/1e4, 'f', -1, 64))
	}
	b.WriteString("]]}}")
	return []byte(b.String())
}

// BenchmarkDecodeMLflowWide decodes and validates the Python batched benchmark's request against its schema,
// as the prediction handler does for every request.
func BenchmarkDecodeMLflowWide(b *testing.B) {
	body := wideBenchBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req, err := DecodeMLflowJSON(body, wideSchema)
		if err != nil {
			b.Fatal(err)
		}
		if err := ValidateSchema(req.Columns, wideSchema); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConcatWide merges 9 of those requests into one model call, as the batcher does for every batch.
func BenchmarkConcatWide(b *testing.B) {
	const n = 9
	frames := make([][]workerproto.Tensor, n)
	for i := range frames {
		req, err := DecodeMLflowJSON(wideBenchBody(), wideSchema)
		if err != nil {
			b.Fatal(err)
		}
		frames[i] = req.Columns
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Concat(frames); err != nil {
			b.Fatal(err)
		}
	}
}

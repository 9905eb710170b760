package inference

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

var churnSchemaFull = &slipway.Schema{Columns: []slipway.ColumnSpec{
	{Name: "age", Dtype: "float64"}, {Name: "tenure_months", Dtype: "int64"}, {Name: "monthly_charges", Dtype: "float64"},
	{Name: "plan", Dtype: "string"}, {Name: "support_calls", Dtype: "float64"},
}}

// v2BenchBody is an OIP request of one FP32 tensor [rows, 5].
func v2BenchBody(rows int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id": "bench", "inputs": [{"name": "features", "shape": [%d, 5], "datatype": "FP32", "data": [`, rows)
	for i := range rows * 5 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatFloat(float64(i%97)*1.37+0.25, 'f', -1, 64))
	}
	b.WriteString("]}]}")
	return []byte(b.String())
}

// splitBenchBody is an MLflow dataframe_split of rows × 5 features (4 numbers and a string).
func splitBenchBody(rows int) []byte {
	var b strings.Builder
	b.WriteString(`{"dataframe_split": {"columns": ["age", "tenure_months", "monthly_charges", "plan", "support_calls"], "data": [`)
	plans := []string{"basic", "pro", "enterprise"}
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `[%d, %d, %.2f, %q, %d]`, 20+i%50, i%72, 20+float64(i%80)*1.13, plans[i%3], i%4)
	}
	b.WriteString("]}}")
	return []byte(b.String())
}

func BenchmarkDecodeV2Request(b *testing.B) {
	for _, rows := range []int{1, 100} {
		body := v2BenchBody(rows)
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeV2Request(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeMLflowSplit(b *testing.B) {
	for _, rows := range []int{1, 100} {
		body := splitBenchBody(rows)
		for _, schema := range []bool{false, true} {
			b.Run(fmt.Sprintf("rows=%d/schema=%v", rows, schema), func(b *testing.B) {
				s := churnSchemaFull
				if !schema {
					s = nil
				}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := DecodeMLflowJSON(body, s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncodeV2Response(b *testing.B) {
	for _, rows := range []int{1, 100} {
		req, err := DecodeV2Request(v2BenchBody(rows))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeV2Response("churn", "1", "bench", req.Inputs, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

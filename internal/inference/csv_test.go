package inference

import (
	"testing"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

func TestInferTextType(t *testing.T) {
	tests := []struct {
		vals []string
		want workerproto.Datatype
	}{
		{[]string{"1", " -2 ", "+3", "0"}, workerproto.INT64},
		{[]string{"1", "", "3"}, workerproto.FP64}, // a missing integer is NaN
		{[]string{"1", "2.5", "1e400"}, workerproto.FP64},
		{[]string{"", " "}, workerproto.FP64},
		{nil, workerproto.INT64},                            // no values: nothing says otherwise
		{[]string{"9223372036854775808"}, workerproto.FP64}, // beyond INT64
		{[]string{"true", "False", "TRUE"}, workerproto.BOOL},
		{[]string{"1", "0"}, workerproto.INT64},
		{[]string{"true", ""}, workerproto.BYTES},
		{[]string{"true", "yes"}, workerproto.BYTES},
		{[]string{"1", "x"}, workerproto.BYTES},
	}
	for _, tt := range tests {
		if got := InferTextType(tt.vals); got != tt.want {
			t.Errorf("InferTextType(%q) = %s, want %s", tt.vals, got, tt.want)
		}
	}
}

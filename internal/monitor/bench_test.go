package monitor

import (
	"fmt"
	"testing"
)

// BenchmarkFinishCapture is the whole cost of one captured prediction: the request path (Finish) plus the
// background encoding and SQLite write (Close drains the queues).
func BenchmarkFinishCapture(b *testing.B) {
	for _, sampling := range []float64{0, 1} {
		b.Run(fmt.Sprintf("sampling=%g", sampling), func(b *testing.B) {
			e := newEnv(b, func(c *Config) { c.CaptureQueue, c.LogQueue = 1<<20, 1<<20 })
			e.s.state("churn").setSampling(sampling)
			e.s.Start()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e.predict(fmt.Sprint(i), []float64{41}, []string{"pro"}, []int64{0}, []float64{.2})
			}
			e.s.Close()
		})
	}
}

package serving

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx/onnxtest"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// BenchmarkBatchedConcurrent is the batcher under concurrent callers (16 per CPU: 32 at -cpu 2): a batched
// in-process ONNX deployment of 2 sessions, 1 row per request, as bench/run.sh's slipway-onnx-inproc-batch. Its
// allocs/op are the batcher's per-request allocations plus the model call's share.
func BenchmarkBatchedConcurrent(b *testing.B) {
	p, m := batchedInProcessPool(b, 256, 2)
	in := []workerproto.Tensor{fp32(m.Input)}
	if _, err := p.PredictTensors(context.Background(), in); err != nil { // the sessions' first call is slow
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithCancel(context.Background()) // cancellable, like a request's
		defer cancel()
		for pb.Next() {
			if _, err := p.PredictTensors(ctx, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Batched requests get their own rows back while clients come and go: queued requests (and their channels) are
// recycled, so an answer sent to a request that was put back, or a request put back while still queued, would
// show up here as another input's answer or a lost one.
func TestBatchedAnswersStayWithTheirRequests(t *testing.T) {
	p, m := batchedInProcessPool(t, 256, 2)
	const inputs = 8
	in := make([][]workerproto.Tensor, inputs)
	want := make([]string, inputs)
	for k := range in {
		rows := make([][]float32, len(m.Input))
		for i, row := range m.Input {
			rows[i] = make([]float32, len(row))
			for j, v := range row {
				rows[i][j] = v + float32(k)
			}
		}
		in[k] = []workerproto.Tensor{fp32(rows)}
		res, err := p.PredictTensors(context.Background(), in[k]) // alone: nothing to merge
		if err != nil {
			t.Fatal(err)
		}
		want[k] = string(res.Outputs[0].Data)
	}
	var answered, cancelled atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := (g + i) % inputs
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if i%5 == 0 { // a client that may give up while queued or while its batch runs
					ctx, cancel = context.WithTimeout(ctx, time.Duration(i%40)*10*time.Microsecond)
				}
				res, err := p.PredictTensors(ctx, in[k])
				cancel()
				switch {
				case err != nil && ctx.Err() != nil:
					cancelled.Add(1)
				case err != nil:
					t.Errorf("request %d of %d: %v", i, g, err)
					return
				case string(res.Outputs[0].Data) != want[k]:
					t.Errorf("request %d of %d (input %d) got another input's answer", i, g, k)
					return
				default:
					answered.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if answered.Load() == 0 {
		t.Fatal("no request answered")
	}
	t.Logf("%d answered, %d cancelled", answered.Load(), cancelled.Load())
}

// batchedInProcessPool is a batched (max 64 rows) in-process ONNX pool of a tiny model, with sessions replicas
// and a queue of maxQueue, closed when the test ends.
func batchedInProcessPool(tb testing.TB, maxQueue, sessions int) (*Pool, tinyModel) {
	tb.Helper()
	onnxtest.Init(tb)
	m := tinyModels(tb, 1)[0]
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	p := NewPool(m.Name, Options{MaxQueue: maxQueue, Timeout: 30 * time.Second, Batching: &slipway.Batching{MaxBatchSize: 64}},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err := p.Rollout(context.Background(), 1, sessions, inProcessStarter(rt, m.dir)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p, m
}

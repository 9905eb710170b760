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
)

// countingStarter counts the replicas a pool starts (cold starts included).
func countingStarter(t *testing.T, rt *modelruntime.Runtimes, dir string, n *atomic.Int32) Starter {
	start := starter(t, rt, dir)
	return func(ctx context.Context) (*modelruntime.Replica, error) {
		n.Add(1)
		return start(ctx)
	}
}

func TestScaledToZeroColdStartsOnceForConcurrentRequests(t *testing.T) {
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	var mu sync.Mutex
	p := NewPool("zero", Options{MaxQueue: 50, Timeout: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	p.StopGrace = time.Second
	t.Cleanup(p.Close)
	var starts atomic.Int32
	if err := p.Rollout(context.Background(), 1, 0, countingStarter(t, rt, modelDir(t, 1), &starts)); err != nil {
		t.Fatal(err)
	}
	if n, _ := p.Size(); n != 0 || !p.Ready() {
		t.Fatalf("rolled out at zero: size %d, ready %v; want 0 and ready (the next request starts one)", n, p.Ready())
	}
	for round := range 3 {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if a, err := call(t, p, `{"x": 1}`); err != nil || a.Version != 1 {
					t.Errorf("round %d: %+v, %v", round, a, err)
				}
			}()
		}
		wg.Wait()
		if got := starts.Load(); got != int32(round+1) {
			t.Fatalf("round %d: %d replicas started in all, want one cold start per round", round, got)
		}
		if err := p.Scale(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		if n, ready := p.Size(); n != 0 || ready != 0 {
			t.Fatalf("after scaling to zero: %d replicas (%d ready)", n, ready)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 3 || events[0].Kind != EventColdStart {
		t.Errorf("events = %+v, want 3 cold starts", events)
	}
}

func TestScaleUpAndDownUnderLoadDropsNothing(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 100})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed, served atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := call(t, p, `{"sleep": 0.01}`); err != nil {
					failed.Add(1)
					t.Error(err)
				}
				served.Add(1)
			}
		}()
	}
	for _, n := range []int{3, 1, 2, 1} {
		if err := p.Scale(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		if got, _ := p.Size(); got != n {
			t.Errorf("scaled to %d, size %d", n, got)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || served.Load() == 0 {
		t.Fatalf("served %d, failed %d", served.Load(), failed.Load())
	}
}

func TestColdStartFailureIsTheWaitersAnswer(t *testing.T) {
	p := NewPool("broken", Options{MaxQueue: 10, Timeout: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	t.Cleanup(p.Close)
	fail := func(ctx context.Context) (*modelruntime.Replica, error) {
		return nil, slipway.Errorf(slipway.EINVALID, "load_model() raised")
	}
	if err := p.Rollout(context.Background(), 1, 0, fail); err != nil {
		t.Fatal(err)
	}
	_, err := call(t, p, `{"x": 1}`)
	if slipway.ErrorCode(err) != slipway.EUNAVAILABLE {
		t.Fatalf("err = %v, want unavailable with the start's reason", err)
	}
}

func TestScaleUpOfAClosedPoolStopsItsReplicas(t *testing.T) {
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool("closing", Options{MaxQueue: 10, Timeout: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	p.StopGrace = time.Second
	start := starter(t, rt, modelDir(t, 1))
	started := make(chan *modelruntime.Replica, 1)
	closed := make(chan struct{})
	slow := func(ctx context.Context) (*modelruntime.Replica, error) {
		rep, err := start(ctx)
		if err == nil {
			started <- rep
			<-closed // the pool closes while this replica starts
		}
		return rep, err
	}
	if err := p.Rollout(context.Background(), 1, 0, slow); err != nil {
		t.Fatal(err)
	}
	scaled := make(chan error, 1)
	go func() { scaled <- p.Scale(context.Background(), 1) }()
	rep := <-started
	p.Close()
	close(closed)
	if err := <-scaled; err != ErrClosed {
		t.Fatalf("scale of a closed pool: %v, want ErrClosed", err)
	}
	select {
	case <-rep.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the replica started for a closed pool still runs")
	}
}

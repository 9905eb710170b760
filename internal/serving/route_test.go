package serving

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// shadowRecorder is a deployment observer that keeps the shadow outcomes.
type shadowRecorder struct {
	mu       sync.Mutex
	outcomes map[string]int
}

func (r *shadowRecorder) Queued(int)       {}
func (r *shadowRecorder) Batch(int, int)   {}
func (r *shadowRecorder) Rejected()        {}
func (r *shadowRecorder) TimedOut()        {}
func (r *shadowRecorder) Restarted(string) {}
func (r *shadowRecorder) Shadowed(version int, outcome string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[outcome]++
}

func (r *shadowRecorder) get() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.outcomes {
		out[k] = v
	}
	return out
}

// Shadow copies beyond the in-flight bound are dropped at once, never queued; the others run in the
// background and their outcomes are counted; close waits for them and later copies are ignored.
func TestShadowMirrorIsBounded(t *testing.T) {
	rec := &shadowRecorder{outcomes: map[string]int{}}
	pool := NewPool("test-shadow", Options{MaxQueue: 1, Timeout: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	target := &Side{pool: pool, version: &slipway.ModelVersion{Version: 2}, replicas: 1,
		observer: func() Observer { return rec }, inflight: make(chan struct{}, 2)}

	release := make(chan struct{})
	started := make(chan struct{}, 5)
	var mu sync.Mutex
	answers := map[string]int{} // what the done callbacks got: each mirror calls its own exactly once
	done := func(version int, out []workerproto.Tensor, _ []byte, err error, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case version != 2:
			t.Errorf("answer of version %d, want 2", version)
		case errors.Is(err, slipway.ErrShadowNotSent):
			answers["not sent"]++
		case err != nil:
			answers["error"]++
		case len(out) == 1 && out[0].Name == "y":
			answers["ok"]++
		}
	}
	for i := range 5 {
		target.mirror(done, func(ctx context.Context, p *Pool) ([]workerproto.Tensor, []byte, error) {
			started <- struct{}{}
			<-release
			if i == 1 {
				return nil, nil, errors.New("model error")
			}
			return []workerproto.Tensor{workerproto.NewFloat64("y", nil, []float64{1})}, nil, nil
		})
	}
	<-started
	<-started
	if got := rec.get(); got["dropped"] != 3 {
		t.Fatalf("outcomes while 2 copies run: %v, want 3 dropped", got)
	}
	close(release)
	target.close() // waits for the 2 copies
	if got := rec.get(); got["ok"] != 1 || got["error"] != 1 || got["dropped"] != 3 {
		t.Fatalf("outcomes: %v, want 1 ok, 1 error, 3 dropped", got)
	}
	target.mirror(done, func(context.Context, *Pool) ([]workerproto.Tensor, []byte, error) {
		t.Error("a copy ran after close")
		return nil, nil, nil
	})
	mu.Lock()
	if answers["ok"] != 1 || answers["error"] != 1 || answers["not sent"] != 4 {
		t.Errorf("answers: %v, want 1 ok, 1 error, 4 not sent (3 dropped, 1 after close)", answers)
	}
	mu.Unlock()
	if got := rec.get(); got["ok"]+got["error"]+got["dropped"] != 5 {
		t.Fatalf("outcomes after close: %v", got)
	}
}

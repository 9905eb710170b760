package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// A real python replica: score.py answers {"version": V, "pid": pid, "echo": data} after an optional sleep.
const testScore = `
import os, time
VERSION = int(open(os.path.join(os.path.dirname(__file__), "VERSION")).read())
def load_model():
    return VERSION
def predict(data, model=None):
    if isinstance(data, dict):
        time.sleep(data.get("sleep", 0))
        return {"version": model, "pid": os.getpid(), "echo": data.get("x")}
    first = float(__import__("numpy").asarray(data).ravel()[0])
    if first < 0:  # tensor requests ask for a slow call with a negative first value: -seconds
        time.sleep(-first)
    return {"prediction": [model] * len(data)}
`

func modelDir(t *testing.T, version int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "score.py"), []byte(testScore), 0o644)
	os.WriteFile(filepath.Join(dir, "VERSION"), []byte(string(rune('0'+version))), 0o644)
	return dir
}

func starter(t *testing.T, rt *modelruntime.Runtimes, dir string) Starter {
	return func(ctx context.Context) (*modelruntime.Replica, error) {
		spec, err := rt.ReplicaSpec(slipway.RuntimePython, dir, nil, nil)
		if err != nil {
			return nil, err
		}
		return rt.Start(ctx, spec, time.Minute, nil)
	}
}

func newTestPool(t *testing.T, replicas int, opts Options) (*Pool, *modelruntime.Runtimes) {
	t.Helper()
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	p := NewPool("test", opts, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	p.StopGrace = time.Second
	if err := p.Rollout(context.Background(), 1, replicas, starter(t, rt, modelDir(t, 1))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, rt
}

type answer struct {
	Version int    `json:"version"`
	PID     int    `json:"pid"`
	Echo    any    `json:"echo"`
	Err     string `json:"-"`
}

func call(t *testing.T, p *Pool, body string) (answer, error) {
	out, _, err := p.PredictJSON(context.Background(), []byte(body))
	if err != nil {
		return answer{}, err
	}
	var a answer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	return a, nil
}

func TestOverloadAnswersAtOnce(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 1})
	_, rep := p.Hello()
	n := int32(rep.MaxInFlight() + 4)
	var wg sync.WaitGroup
	var ok, overloaded atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := call(t, p, `{"sleep": 0.3}`)
			switch {
			case err == nil:
				ok.Add(1)
			case slipway.ErrorCode(err) == slipway.EOVERLOADED:
				overloaded.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// The calls in flight + one queued can succeed at any moment; the rest must be refused, not queued.
	if overloaded.Load() == 0 || ok.Load() == 0 || ok.Load()+overloaded.Load() != n {
		t.Fatalf("ok %d, overloaded %d", ok.Load(), overloaded.Load())
	}
}

func TestReplicaKilledMidRequestIsRetried(t *testing.T) {
	p, _ := newTestPool(t, 2, Options{MaxQueue: 10})
	if _, err := call(t, p, `{"x": 1}`); err != nil {
		t.Fatal(err)
	}
	// Kill the replica that takes the next request: find it by asking.
	done := make(chan answer, 1)
	go func() {
		a, err := call(t, p, `{"sleep": 1.0, "x": 2}`)
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	var victim int
	deadline := time.Now().Add(10 * time.Second)
	for victim == 0 && time.Now().Before(deadline) {
		for _, st := range p.Status() {
			if st.InFlight == 1 {
				victim = st.PID
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if victim == 0 {
		t.Fatal("no request in flight")
	}
	syscall.Kill(victim, syscall.SIGKILL)
	a := <-done
	if a.PID == victim || a.PID == 0 {
		t.Fatalf("answered by %d after killing %d", a.PID, victim)
	}
	// The dead replica is replaced.
	for time.Now().Before(deadline) {
		ready, restarts := 0, 0
		for _, st := range p.Status() {
			if st.State == stateReady {
				ready++
			}
			restarts += st.Restarts
		}
		if ready == 2 && restarts == 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica not replaced: %+v", p.Status())
}

// A batch whose replica dies mid-call is retried once on another replica: its requests all get their rows.
func TestBatchRetriedWhenItsReplicaDies(t *testing.T) {
	p, _ := newTestPool(t, 2, Options{MaxQueue: 10, Batching: &slipway.Batching{MaxBatchSize: 8}})
	p.batcher.callNanos.Store(int64(time.Second))     // long calls: no waiting for a busy replica
	slow := predictAsync(p, context.Background(), -1) // a 1 s call
	var victim int
	var victimID string
	for deadline := time.Now().Add(30 * time.Second); victim == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no batch in flight")
		}
		for _, st := range p.Status() {
			if st.InFlight == 1 {
				victim, victimID = st.PID, st.ID
			}
		}
	}
	syscall.Kill(victim, syscall.SIGKILL)
	r := <-slow
	if r.err != nil || r.res.Batch != 1 || r.res.Outputs[0].Shape[0] != 1 {
		t.Fatalf("after its replica died: %+v, %v", r.res, r.err)
	}
	if r.res.Replica == victimID {
		t.Fatalf("answered by the killed replica %s (pid %d)", victimID, victim)
	}
}

func TestTimeoutKillsStuckReplica(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 10, Timeout: 300 * time.Millisecond})
	_, err := call(t, p, `{"sleep": 5}`)
	if slipway.ErrorCode(err) != slipway.ETIMEOUT {
		t.Fatalf("err %v, want timeout", err)
	}
	// The next request is served by a fresh replica.
	p.SetOptions(Options{MaxQueue: 10, Timeout: 30 * time.Second})
	if _, err := call(t, p, `{"x": 1}`); err != nil {
		t.Fatal(err)
	}
}

func TestRolloutUnderLoadDropsNothing(t *testing.T) {
	p, rt := newTestPool(t, 2, Options{MaxQueue: 100})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures atomic.Int32
	var seenV2 atomic.Bool
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				a, err := call(t, p, `{"sleep": 0.01}`)
				if err != nil {
					failures.Add(1)
					t.Log(err)
				} else if a.Version == 2 {
					seenV2.Store(true)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if err := p.Rollout(context.Background(), 2, 2, starter(t, rt, modelDir(t, 2))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if failures.Load() != 0 || !seenV2.Load() {
		t.Fatalf("failures %d, served v2 %v", failures.Load(), seenV2.Load())
	}
	for _, st := range p.Status() {
		if st.Version != 2 {
			t.Fatalf("old replica still listed: %+v", st)
		}
	}
}

func TestFailedRolloutKeepsServing(t *testing.T) {
	p, rt := newTestPool(t, 1, Options{MaxQueue: 10})
	broken := filepath.Join(t.TempDir(), "broken")
	os.MkdirAll(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "score.py"), []byte("def load_model():\n    raise RuntimeError('no weights')\ndef predict(d, model=None):\n    return d\n"), 0o644)
	err := p.Rollout(context.Background(), 2, 1, starter(t, rt, broken))
	if err == nil || !strings.Contains(err.Error(), "no weights") {
		t.Fatalf("rollout error %v, want the model's own message", err)
	}
	a, err := call(t, p, `{"x": 1}`)
	if err != nil || a.Version != 1 {
		t.Fatalf("after failed rollout: %+v, %v", a, err)
	}
}

func TestBatchingMergesConcurrentRequests(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 100, Batching: &slipway.Batching{MaxBatchSize: 8, MaxWaitMS: 50}})
	var wg sync.WaitGroup
	var maxBatch atomic.Int32
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := []workerproto.Tensor{workerproto.NewFloat64("x", nil, []float64{float64(i)})}
			res, err := p.PredictTensors(context.Background(), in)
			if err != nil {
				t.Error(err)
				return
			}
			if len(res.Outputs) != 1 || res.Outputs[0].Shape[0] != 1 {
				t.Errorf("outputs %+v: want one row back", res.Outputs)
			}
			for {
				cur := maxBatch.Load()
				if int32(res.Batch) <= cur || maxBatch.CompareAndSwap(cur, int32(res.Batch)) {
					break
				}
			}
		}()
	}
	wg.Wait()
	if maxBatch.Load() < 2 {
		t.Fatalf("largest batch %d: concurrent requests were not merged", maxBatch.Load())
	}
}

// Batches form when a replica frees up: requests that arrive while every replica is busy go out together in
// the next call (even with max_wait_ms 0), split into calls of at most max_batch_size rows.
func TestBatchesFormWhenAReplicaFrees(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 100, Batching: &slipway.Batching{MaxBatchSize: 4, MaxWaitMS: 0}})
	busy := holdReplica(t, p, 2) // until the batch requests are queued
	const n = 6
	batches := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.PredictTensors(context.Background(), []workerproto.Tensor{workerproto.NewFloat64("x", nil, []float64{float64(i)})})
			if err != nil {
				t.Error(err)
				return
			}
			batches <- res.Batch
		}()
	}
	// One request waits for the replica in the batcher; the others queue behind it.
	for deadline := time.Now().Add(30 * time.Second); p.batcher.queued() < n-1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", p.batcher.queued(), n-1)
		}
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(batches)
	sizes := map[int]int{}
	for b := range batches {
		sizes[b]++
	}
	if sizes[4] != 4 || sizes[2] != 2 {
		t.Fatalf("batch sizes seen by the %d requests: %v, want 4 requests in a batch of 4 and 2 in a batch of 2", n, sizes)
	}
	// Idle again: a lone request goes straight to the replica.
	res, err := p.PredictTensors(context.Background(), []workerproto.Tensor{workerproto.NewFloat64("x", nil, []float64{1, 2})})
	if err != nil || res.Batch != 2 || len(res.Outputs) != 1 || res.Outputs[0].Shape[0] != 2 {
		t.Fatalf("lone request: %+v, %v", res, err)
	}
}

// At low concurrency the replica that answered last takes the next request (its caches are warm).
func TestIdleReplicasAreReusedLastInFirstOut(t *testing.T) {
	p, _ := newTestPool(t, 2, Options{MaxQueue: 10})
	first, err := call(t, p, `{"x": 1}`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		a, err := call(t, p, `{"x": 1}`)
		if err != nil {
			t.Fatal(err)
		}
		if a.PID != first.PID {
			t.Fatalf("request %d went to pid %d, want the warm replica %d", i+2, a.PID, first.PID)
		}
	}
}

func TestClosedPoolRefuses(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 10})
	p.Close()
	if _, err := call(t, p, `{}`); !errors.Is(err, ErrClosed) {
		t.Fatalf("err %v", err)
	}
}

// Idle is what retiring a canary waits for: no request running, none queued.
func TestIdle(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 10})
	if !p.Idle() {
		t.Fatal("a new pool is not idle")
	}
	done := holdReplica(t, p, 0.5)
	if p.Idle() {
		t.Fatal("idle with a request running")
	}
	queued := make(chan error, 1)
	go func() { _, err := call(t, p, `{}`); queued <- err }()
	for p.QueueLen() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Idle() {
		t.Fatal("idle with a request queued")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if !p.Idle() {
		t.Fatal("not idle once both requests are answered")
	}
}

// A replica that crashes again and again is restarted with backoff and reported as a crash loop; once it
// serves again the pool reports recovery.
func TestCrashLoopIsReported(t *testing.T) {
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "score.py"), []byte("import os\ndef load_model():\n    return 1\ndef predict(d, model=None):\n    if d.get('crash'):\n        os._exit(7)\n    return {'ok': 1}\n"), 0o644)
	events := make(chan Event, 10)
	p := NewPool("loop", Options{MaxQueue: 10, Timeout: 30 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(e Event) { events <- e })
	p.StopGrace = time.Second
	t.Cleanup(p.Close)
	if err := p.Rollout(context.Background(), 1, 1, starter(t, rt, dir)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < crashLoopCount; i++ {
		// Wait for the replica to be back, then crash it again with a request (retried once, then 503).
		deadline := time.Now().Add(30 * time.Second)
		for !p.Ready() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		_, _, err := p.PredictJSON(context.Background(), []byte(`{"crash": true}`))
		if slipway.ErrorCode(err) != slipway.EUNAVAILABLE {
			t.Fatalf("crash %d: err %v, want unavailable", i, err)
		}
	}
	select {
	case e := <-events:
		if e.Kind != "crashloop" || !strings.Contains(e.Message, "exit status 7") {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no crash loop reported")
	}
	select {
	case e := <-events:
		if e.Kind != "recovered" {
			t.Fatalf("event %+v, want recovered", e)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no recovery reported")
	}
	if _, _, err := p.PredictJSON(context.Background(), []byte(`{}`)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// A client that hangs up mid-call does not cost the replica its life: the call finishes and the replica serves on.
func TestClientCancelKeepsReplica(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 10})
	before := p.Status()[0].PID
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p.PredictJSON(ctx, []byte(`{"sleep": 0.3}`))
	a, err := call(t, p, `{"x": 1}`)
	if err != nil {
		t.Fatal(err)
	}
	if a.PID != before || p.Status()[0].Restarts != 0 {
		t.Fatalf("replica replaced after a client hung up: pid %d → %d, status %+v", before, a.PID, p.Status())
	}
}

// holdReplica keeps the pool's only replica busy, every position it has for calls in flight taken
// (perReplicaLocked), until the returned channel is read: it gives the first error once all those calls are
// over. A process replica runs its calls one after the other: the hold lasts n × seconds.
func holdReplica(t *testing.T, p *Pool, seconds float64) <-chan error {
	t.Helper()
	_, rep := p.Hello()
	p.mu.Lock()
	n := p.perReplicaLocked(rep)
	p.mu.Unlock()
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := call(t, p, fmt.Sprintf(`{"sleep": %g}`, seconds))
			errs <- err
		}()
	}
	for p.Status()[0].InFlight < n {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		var first error
		for range n {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		done <- first
	}()
	return done
}

type predicted struct {
	res Result
	err error
}

func predictAsync(p *Pool, ctx context.Context, x ...float64) <-chan predicted {
	out := make(chan predicted, 1)
	go func() {
		res, err := p.PredictTensors(ctx, []workerproto.Tensor{workerproto.NewFloat64("x", nil, x)})
		out <- predicted{res, err}
	}()
	return out
}

// queued is the number of requests waiting for a batch.
func (b *batcher) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func waitQueued(t *testing.T, p *Pool, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); p.batcher.queued() != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued for a batch, want %d", p.batcher.queued(), n)
		}
	}
}

// The batcher's queue loses nothing when a client gives up: a queued client leaves at once, and when the one
// waiting for a replica on the queue's behalf leaves, the next in line takes over.
func TestBatchQueueSurvivesClientsLeaving(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 10, Batching: &slipway.Batching{MaxBatchSize: 8}})
	busy := holdReplica(t, p, 1)

	acquirerCtx, leaveAcquirer := context.WithCancel(context.Background())
	acquirer := predictAsync(p, acquirerCtx, 1) // waits for the replica for the queue
	for p.QueueLen() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	queuedCtx, leaveQueue := context.WithCancel(context.Background())
	leaver := predictAsync(p, queuedCtx, 2)
	stayer := predictAsync(p, context.Background(), 3, 4)
	waitQueued(t, p, 2)

	leaveQueue()
	if r := <-leaver; r.err == nil {
		t.Fatal("a client that left the queue got an answer")
	}
	waitQueued(t, p, 1)
	leaveAcquirer()
	if r := <-acquirer; r.err == nil {
		t.Fatal("a client that left while waiting for a replica got an answer")
	}
	waitQueued(t, p, 0) // the stayer took over the wait for a replica
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	r := <-stayer
	if r.err != nil || r.res.Batch != 2 || r.res.Outputs[0].Shape[0] != 2 {
		t.Fatalf("the request that stayed: %+v, %v; want its own 2 rows in a batch of 2", r.res, r.err)
	}
}

// Changing the batching settings while requests are queued: they run without batching, none fails.
func TestBatchingChangeKeepsQueuedRequests(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 10, Timeout: 30 * time.Second, Batching: &slipway.Batching{MaxBatchSize: 8}})
	busy := holdReplica(t, p, 1)
	var pending []<-chan predicted
	pending = append(pending, predictAsync(p, context.Background(), 1))
	for p.QueueLen() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	pending = append(pending, predictAsync(p, context.Background(), 2), predictAsync(p, context.Background(), 3))
	waitQueued(t, p, 2)
	p.SetOptions(Options{MaxQueue: 10, Timeout: 30 * time.Second, Batching: &slipway.Batching{MaxBatchSize: 4}})
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	for i, ch := range pending {
		if r := <-ch; r.err != nil || r.res.Outputs[0].Shape[0] != 1 {
			t.Fatalf("request %d: %+v, %v", i, r.res, r.err)
		}
	}
}

// While model calls are short, a batch waits for the replica of the batch in flight rather than start on an
// idle one (fewer, fuller batches); once calls are long, it takes the idle replica at once.
func TestShortCallsConcentrateOnABusyReplica(t *testing.T) {
	for _, tt := range []struct {
		name      string
		callNanos time.Duration
		waits     bool
	}{
		{"short calls wait for the busy replica", 100 * time.Microsecond, true},
		{"long calls use the idle replica", 5 * time.Millisecond, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newTestPool(t, 2, Options{MaxQueue: 10, Batching: &slipway.Batching{MaxBatchSize: 8}})
			b := p.batcher
			b.concentrateFor = time.Hour
			b.callNanos.Store(int64(tt.callNanos))
			b.mu.Lock()
			b.inflight = 1 // a batch in flight on another replica
			b.mu.Unlock()
			// A request that waited for the busy replica when it should not have would outlive this context
			// (the fake batch in flight never returns) and fail.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got := predictAsync(p, ctx, 1)
			if tt.waits {
				select {
				case r := <-got:
					t.Fatalf("answered (%v) while the other batch was still in flight", r.err)
				case <-time.After(200 * time.Millisecond):
				}
				b.callReturned()
			}
			if r := <-got; r.err != nil || r.res.Batch != 1 {
				t.Fatalf("%+v, %v", r.res, r.err)
			}
		})
	}
}

// Requests go to the replica with the fewest calls in flight: concurrent requests spread over idle replicas
// first; once every replica is busy, a process replica takes more calls (up to MaxInFlight, pipelined on its
// stream) before anything queues. Each answer is its own.
func TestLeastInFlightThenPipelined(t *testing.T) {
	p, _ := newTestPool(t, 2, Options{MaxQueue: 10})
	_, rep := p.Hello()
	perReplica := rep.MaxInFlight()
	if perReplica < 2 {
		t.Fatalf("a process replica takes %d call at a time, want several", perReplica)
	}
	type res struct {
		a   answer
		err error
	}
	results := make(chan res, 2*perReplica)
	send := func(i int) {
		go func() {
			a, err := call(t, p, fmt.Sprintf(`{"sleep": 2, "x": %d}`, i))
			results <- res{a, err}
		}()
	}
	inFlight := func() (counts []int) {
		for _, s := range p.Status() {
			counts = append(counts, s.InFlight)
		}
		return counts
	}
	send(0)
	for slices.Max(inFlight()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	send(1)
	for total(inFlight()) < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	if got := inFlight(); got[0] != 1 || got[1] != 1 {
		t.Fatalf("two requests on two idle replicas: in flight %v, want one each", got)
	}
	for i := 2; i < 2*perReplica; i++ {
		send(i)
	}
	for total(inFlight()) < 2*perReplica {
		if p.QueueLen() > 0 {
			t.Fatalf("a request queued while replicas had room: in flight %v", inFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}
	seen := map[float64]bool{}
	for range 2 * perReplica {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		x := r.a.Echo.(float64)
		if seen[x] {
			t.Fatalf("answer for x=%v twice", x)
		}
		seen[x] = true
	}
}

// A batching pool gives a replica two calls at a time, whatever the replica could take: the rows wait in the
// batcher and join bigger batches. Turned off, the requests waiting go to the replica at once, not when a call
// ends.
func TestBatchingPoolGivesAReplicaTwoCalls(t *testing.T) {
	p, _ := newTestPool(t, 1, Options{MaxQueue: 10, Timeout: 30 * time.Second, Batching: &slipway.Batching{MaxBatchSize: 8}})
	_, rep := p.Hello()
	if rep.MaxInFlight() <= batchedPerReplica {
		t.Fatalf("the replica takes %d calls: the test needs one that takes more than %d", rep.MaxInFlight(), batchedPerReplica)
	}
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := call(t, p, fmt.Sprintf(`{"sleep": 1, "x": %d}`, i))
			errs <- err
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); p.Status()[0].InFlight != 2 || p.QueueLen() != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls on the replica and %d queued, want 2 and 2", p.Status()[0].InFlight, p.QueueLen())
		}
	}
	p.SetOptions(Options{MaxQueue: 10, Timeout: 30 * time.Second}) // batching off
	if q := p.QueueLen(); q != 0 {
		t.Fatalf("%d requests still queued once batching was off, with room on the replica", q)
	}
	for i := range n {
		if err := <-errs; err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got := p.Status()[0].InFlight; got != 0 {
		t.Fatalf("%d calls still counted in flight", got)
	}
}

func total(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}

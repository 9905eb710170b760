// Package serving is the data plane of deployments: a pool of replica processes per deployment, least-loaded
// dispatch with a bounded queue (full → EOVERLOADED, never an unbounded backlog), per-request timeouts, one
// retry on another replica when a replica dies mid-request, supervision with restart backoff, health pings,
// zero-downtime generation switches, and optional dynamic batching.
//
// A request goes route.go (Routers: the deployment's Router; Router.Pick: its version or its canary, with a
// copy to its shadow) → batcher.go (merged with concurrent requests when batching is on) → pool.go (a replica,
// queueing and timeouts) → the replica client (modelruntime). The control plane (deploy) builds the routers
// and pools; it is never on a request's path.
package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/tracing"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Starter starts one replica process of a given model version.
type Starter func(ctx context.Context) (*modelruntime.Replica, error)

// Options are the pool's tunables; they can change while it serves.
type Options struct {
	MaxQueue int
	Timeout  time.Duration
	Batching *slipway.Batching
}

// Event tells the control plane about replica health.
type Event struct {
	Kind    string // "crashloop" (repeated crashes: needs attention) or "recovered"
	Message string
}

// Observer receives a pool's capacity signals (monitoring). Its methods are called on the request path, some
// under the pool's lock: they must be quick and never block.
type Observer interface {
	Queued(depth int)         // a request joined the queue, which now holds depth requests
	Batch(rows, requests int) // the batcher made one model call
	Rejected()                // a request was refused: queue full (429)
	TimedOut()                // a request passed the timeout (504)
	Restarted(replica string) // a dead replica process was replaced
}

// StageObserver is an Observer that also takes the per-call profile of replicas that report one (the Python
// harness): the replica's own decode, predict() and encode times, and the whole call as the server saw it
// (adapting the columns, writing the frame, the replica's work, reading and decoding the answer).
type StageObserver interface {
	Stages(t workerproto.Timings, call time.Duration)
}

// Slot states.
const (
	stateStarting = "STARTING"
	stateReady    = "READY"
	stateDead     = "RESTARTING"
	stateDraining = "DRAINING"
	stateStopped  = "STOPPED"
)

// slot is one replica position: it keeps its id across restarts.
type slot struct {
	id        string
	version   int
	start     Starter
	rep       *modelruntime.Replica // current process; nil while (re)starting
	state     string
	inflight  int // calls on rep now (at most rep.MaxInFlight(): a process replica pipelines a few)
	restarts  int
	startedAt time.Time
	lastErr   string
	crashes   []time.Time
	// stopRestart cancels a restart under way (set while the slot is RESTARTING): a slot taken out of
	// service must not go on starting replicas (with network replicas, every Start asks for a worker).
	stopRestart context.CancelFunc
	// Under a memory budget: the replica's size measured at its start, and when a request last took it
	// (health checks do not count: an idle replica stays least recently used).
	bytes    int64
	lastUsed time.Time
}

// Pool serves one deployment.
type Pool struct {
	name    string
	log     *slog.Logger
	onEvent func(Event)

	mu      sync.Mutex
	opts    Options
	slots   []*slot
	free    []*slot // READY, current generation, with room for another call (see takeFreeLocked)
	waiters []chan *slot
	nextID  int
	batcher *batcher
	obs     atomic.Pointer[Observer]

	// Scaling: one change of the replica set at a time (Rollout, Scale, a cold start), and what Scale and a
	// cold start run (the serving generation's version and starter, kept at zero replicas too).
	resize      sync.Mutex
	tmplVersion int     // guarded by mu
	tmplStart   Starter // guarded by mu
	waking      bool    // guarded by mu: a cold start is under way
	wakeErr     error   // guarded by mu: why the last cold start failed (its waiters get it)
	requests    atomic.Int64

	// budget bounds the memory of the pool's replicas with other pools' (nil: none); expected is the size the
	// next replica is expected to take (the last one measured).
	budget   *MemoryBudget
	expected atomic.Int64

	ctx    context.Context // supervision lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup // supervisors and stoppers

	// Tunables for supervision (tests shorten them).
	HealthInterval time.Duration
	StopGrace      time.Duration
}

// NewPool returns an empty pool; Start adds replicas.
func NewPool(name string, opts Options, log *slog.Logger, onEvent func(Event)) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{name: name, log: log, onEvent: onEvent, opts: opts, ctx: ctx, cancel: cancel,
		HealthInterval: 5 * time.Second, StopGrace: 10 * time.Second}
	p.setBatching(opts.Batching)
	return p
}

// SetObserver sets the pool's observer (nil removes it).
func (p *Pool) SetObserver(o Observer) {
	if o == nil {
		p.obs.Store(nil)
		return
	}
	p.obs.Store(&o)
}

func (p *Pool) observer() Observer {
	if o := p.obs.Load(); o != nil {
		return *o
	}
	return nil
}

// QueueLen is the number of requests waiting for a replica.
func (p *Pool) QueueLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
}

// ErrClosed is returned for requests to a pool that was stopped.
var ErrClosed = slipway.Errorf(slipway.EUNAVAILABLE, "deployment is not serving (inactive or being deleted)")

// Rollout starts n replicas of version with start and, once all are ready, makes them the pool's only serving
// generation: later requests go to them, the previous replicas finish their current request and stop. If any
// new replica fails to start, the new ones are stopped, the old ones keep serving and the error says why.
//
// n may be 0: the pool then serves at zero replicas, and its next request starts one (see acquire).
func (p *Pool) Rollout(ctx context.Context, version, n int, start Starter) error {
	p.resize.Lock()
	defer p.resize.Unlock()
	fresh, err := p.startSlots(ctx, version, n, start)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.tmplVersion, p.tmplStart = version, start
	old := slices.Clone(p.slots)
	p.slots = append(p.slots, fresh...)
	for _, s := range old {
		p.retireLocked(s)
	}
	for _, s := range fresh {
		p.superviseLocked(s)
		p.offerLocked(s, s.rep)
	}
	p.wakeLocked() // rolled out at zero replicas with requests waiting
	p.mu.Unlock()
	return nil
}

// Scale changes the number of replicas of the current generation; added replicas are all ready before they
// take requests, removed ones finish their request first (idle ones go first). 0 leaves the pool serving at
// zero replicas: its next request starts one.
func (p *Pool) Scale(ctx context.Context, n int) error {
	p.resize.Lock()
	defer p.resize.Unlock()
	p.mu.Lock()
	current := p.currentLocked()
	version, start := p.tmplVersion, p.tmplStart
	p.mu.Unlock()
	switch diff := n - len(current); {
	case diff > 0:
		if start == nil {
			return fmt.Errorf("serving: scale %s: no version rolled out yet", p.name)
		}
		fresh, err := p.startSlots(ctx, version, diff, start)
		if err != nil {
			return err
		}
		p.mu.Lock()
		if p.ctx.Err() != nil { // closed while they started (the autoscaler does not hold the deployment's lock)
			p.mu.Unlock()
			p.stopAll(fresh)
			return ErrClosed
		}
		p.slots = append(p.slots, fresh...)
		for _, s := range fresh {
			p.superviseLocked(s)
			p.offerLocked(s, s.rep)
		}
		p.mu.Unlock()
	case diff < 0:
		p.mu.Lock()
		// Retire idle replicas first so that no request waits for a drain.
		slices.SortStableFunc(current, func(a, b *slot) int { return a.inflight - b.inflight })
		for _, s := range current[:-diff] {
			p.retireLocked(s)
		}
		p.wakeLocked() // scaled to zero with requests waiting behind the draining replicas
		p.mu.Unlock()
	}
	return nil
}

// hasCurrentLocked reports whether the serving generation has a replica (currentLocked without allocating:
// every queued request asks).
func (p *Pool) hasCurrentLocked() bool {
	return slices.ContainsFunc(p.slots, func(s *slot) bool { return s.state != stateDraining && s.state != stateStopped })
}

func (p *Pool) currentLocked() []*slot {
	var out []*slot
	for _, s := range p.slots {
		if s.state != stateDraining && s.state != stateStopped {
			out = append(out, s)
		}
	}
	return out
}

// startSlots starts n replicas in parallel; all or nothing.
func (p *Pool) startSlots(ctx context.Context, version, n int, start Starter) ([]*slot, error) {
	fresh := make([]*slot, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	p.mu.Lock()
	for i := range fresh {
		p.nextID++
		fresh[i] = &slot{id: fmt.Sprintf("%s-%d", p.name, p.nextID), version: version, start: start, state: stateStarting}
	}
	p.mu.Unlock()
	for i, s := range fresh {
		wg.Add(1)
		go func() { // bounded by Start's own ready timeout
			defer wg.Done()
			admitted := p.admitToBudget()
			rep, err := start(ctx)
			if err != nil {
				admitted(s)
				errs[i] = fmt.Errorf("replica %s: %w", s.id, err)
				return
			}
			s.rep, s.state, s.startedAt, s.lastUsed = rep, stateReady, time.Now(), time.Now()
			admitted(s)
		}()
	}
	wg.Wait()
	if err := joinDistinct(errs); err != nil {
		for _, s := range fresh {
			if s.rep != nil {
				s.rep.Stop(p.StopGrace)
			}
		}
		return nil, err
	}
	return fresh, nil
}

// stopAll stops replicas that were started but never took a request.
func (p *Pool) stopAll(fresh []*slot) {
	for _, s := range fresh {
		s.rep.Stop(p.StopGrace)
	}
}

// retireLocked takes s out of service; it stops now if idle, else when its calls in flight finish.
func (p *Pool) retireLocked(s *slot) {
	if s.state == stateDraining || s.state == stateStopped {
		return
	}
	s.state = stateDraining
	p.free = slices.DeleteFunc(p.free, func(f *slot) bool { return f == s })
	if s.inflight == 0 {
		p.stopLocked(s)
	}
}

func (p *Pool) stopLocked(s *slot) {
	s.state = stateStopped
	if s.stopRestart != nil {
		s.stopRestart()
	}
	rep := s.rep
	p.slots = slices.DeleteFunc(p.slots, func(f *slot) bool { return f == s })
	if rep == nil {
		return
	}
	p.wg.Add(1)
	go func() { // owned by the pool (wg): bounded by StopGrace
		defer p.wg.Done()
		rep.Stop(p.StopGrace)
	}()
}

// acquire takes an idle replica, or waits in the bounded queue for one until the deadline or ctx ends.
// The fast path (a replica is idle) creates no timer.
func (p *Pool) acquire(ctx context.Context, deadline time.Time) (*slot, *modelruntime.Replica, error) {
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if s := p.takeFreeLocked(); s != nil {
		p.mu.Unlock()
		return s, s.rep, nil
	}
	if len(p.waiters) >= p.opts.MaxQueue {
		p.mu.Unlock()
		if o := p.observer(); o != nil {
			o.Rejected()
		}
		return nil, nil, slipway.Errorf(slipway.EOVERLOADED, "deployment %s is at capacity (%d requests queued): retry after a moment, or add replicas", p.name, p.opts.MaxQueue)
	}
	ch := waiterChans.Get().(chan *slot)
	// Every return below leaves ch empty: it was answered, or it left p.waiters (under mu, so no one sends after)
	// and then took what had been sent before.
	defer waiterChans.Put(ch)
	p.waiters = append(p.waiters, ch)
	depth := len(p.waiters)
	p.wakeLocked()
	p.mu.Unlock()
	if o := p.observer(); o != nil {
		o.Queued(depth)
	}
	timer := queueTimer(time.Until(deadline))
	defer func() {
		timer.Stop() // (since Go 1.23 a stopped timer delivers nothing stale after a Reset)
		queueTimers.Put(timer)
	}()
	var err error
	select {
	case s := <-ch:
		if s == nil {
			return nil, nil, p.refusedErr()
		}
		return s, s.rep, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = context.DeadlineExceeded
	}
	p.mu.Lock()
	p.waiters = slices.DeleteFunc(p.waiters, func(w chan *slot) bool { return w == ch })
	p.mu.Unlock()
	select {
	case s := <-ch: // handed over just as we gave up: pass it on
		if s != nil {
			p.release(s, s.rep)
		}
	default:
	}
	return nil, nil, err
}

// A request that waits for a replica (under load, most do) takes its channel and its timer from these pools
// instead of allocating both (with the context's, the timer was one of the larger allocations per request).
var (
	waiterChans = sync.Pool{New: func() any { return make(chan *slot, 1) }}
	queueTimers sync.Pool // of *time.Timer, stopped
)

// queueTimer returns a timer that fires after d, from queueTimers when it has one.
func queueTimer(d time.Duration) *time.Timer {
	if t, ok := queueTimers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// refusedErr is why a waiting request was sent away: the pool closed, or its cold start failed.
func (p *Pool) refusedErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() == nil && p.wakeErr != nil {
		return p.wakeErr
	}
	return ErrClosed
}

// wakeLocked starts a replica for the queue when the pool is at zero replicas (scaled to zero, or lazy), once:
// every request that arrives meanwhile waits in the queue for the same start.
func (p *Pool) wakeLocked() {
	if len(p.waiters) == 0 || p.waking || p.tmplStart == nil || p.ctx.Err() != nil || p.hasCurrentLocked() {
		return
	}
	p.waking = true
	p.wg.Add(1)
	go p.wake() // owned by the pool (wg); bounded by the replica's ready timeout and the pool's lifetime
}

// wake is the cold start: one replica of the serving generation, handed to the oldest waiting request. If it
// cannot start, the waiting requests get the reason (and the next request tries again).
func (p *Pool) wake() {
	defer p.wg.Done()
	p.resize.Lock()
	defer p.resize.Unlock()
	p.mu.Lock()
	version, start, current := p.tmplVersion, p.tmplStart, len(p.currentLocked())
	if current > 0 { // a scale-up or a rollout got there first
		p.waking = false
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	began := time.Now()
	fresh, err := p.startSlots(p.ctx, version, 1, start)
	took := time.Since(began)
	p.mu.Lock()
	p.waking = false
	if err == nil && p.ctx.Err() != nil { // closed meanwhile: Close has sent the waiters away
		p.mu.Unlock()
		p.stopAll(fresh)
		return
	}
	if err != nil {
		p.wakeErr = slipway.Wrap(slipway.EUNAVAILABLE, err, "deployment %s was scaled to zero and its replica did not start: %v", p.name, err)
		for _, w := range p.waiters {
			w <- nil
		}
		p.waiters = nil
		p.mu.Unlock()
		p.log.Error("cold start failed", "deployment", p.name, "took", took, "error", err)
		return
	}
	p.wakeErr = nil
	p.slots = append(p.slots, fresh[0])
	p.superviseLocked(fresh[0])
	p.offerLocked(fresh[0], fresh[0].rep)
	p.mu.Unlock()
	p.log.Info("cold start: a request started a replica", "deployment", p.name, "replica", fresh[0].id, "took", took)
	p.emit(Event{Kind: EventColdStart, Message: fmt.Sprintf("a request started replica %s (cold start %s)", fresh[0].id, took.Round(time.Millisecond))})
}

// EventColdStart is the Event.Kind of a replica started by a request to a pool at zero replicas.
const EventColdStart = "coldstart"

// takeFreeLocked takes a call's position on the replica with the fewest calls in flight: an idle replica before
// a busy one, and a busy process replica (which pipelines: MaxInFlight) before none.
func (p *Pool) takeFreeLocked() *slot {
	// A replica that died with calls in flight is still listed until one of them returns or its supervisor
	// notices: a request sent there would only fail and be retried.
	p.free = slices.DeleteFunc(p.free, func(s *slot) bool { return dead(s.rep) })
	if len(p.free) == 0 {
		return nil
	}
	// Among equals, last in, first out: at low concurrency the replica that just answered takes the next request,
	// with its caches and pages still warm (round robin made a 1-row scikit-learn request cost ~1.5x the CPU:
	// each replica ran after the other had evicted it). Under load every replica is busy and the order is moot.
	best := len(p.free) - 1
	for i := best - 1; i >= 0 && p.free[best].inflight > 0; i-- {
		if p.free[i].inflight < p.free[best].inflight {
			best = i
		}
	}
	s := p.free[best]
	p.occupyLocked(s)
	return s
}

// batchedPerReplica is how many calls a batching pool gives one replica at once: a batch running and the next
// one waiting in its pipe. More would start batches while rows are still arriving, and the batches would shrink
// (2.0-2.3× the FastAPI peer at 2, 1.6× at 8, 1.3× at 16: docs/benchmarks.md, "Issue 17, session 14").
const batchedPerReplica = 2

// perReplicaLocked is how many calls rep may have in flight: all it takes (a process replica pipelines up to
// its MaxInFlight) unless the pool batches.
func (p *Pool) perReplicaLocked(rep *modelruntime.Replica) int {
	if p.batcher != nil {
		return min(rep.MaxInFlight(), batchedPerReplica)
	}
	return rep.MaxInFlight()
}

// reofferLocked applies a new per-replica limit (batching turned on or off): a replica listed with as many calls
// as it may now have leaves the free list, and one with room it did not have takes waiting requests at once.
func (p *Pool) reofferLocked() {
	p.free = slices.DeleteFunc(p.free, func(s *slot) bool { return s.rep != nil && s.inflight >= p.perReplicaLocked(s.rep) })
	for _, s := range p.slots {
		if s.state == stateReady && s.rep != nil {
			p.offerLocked(s, s.rep)
		}
	}
}

// dead reports whether rep has exited.
func dead(rep *modelruntime.Replica) bool {
	select {
	case <-rep.Done():
		return true
	default:
		return false
	}
}

// occupyLocked counts one more call on s, which has room for it, and takes s off the free list once it is full.
func (p *Pool) occupyLocked(s *slot) {
	s.inflight++
	if s.inflight >= p.perReplicaLocked(s.rep) {
		p.free = slices.DeleteFunc(p.free, func(f *slot) bool { return f == s })
	}
	if p.budget != nil {
		s.lastUsed = time.Now()
	}
}

func (p *Pool) release(s *slot, rep *modelruntime.Replica) {
	p.mu.Lock()
	p.releaseLocked(s, rep)
	p.mu.Unlock()
}

// releaseLocked ends one call on s and offers its position. A stale release (the replica was replaced
// meanwhile: its count started again at 0) is ignored.
func (p *Pool) releaseLocked(s *slot, rep *modelruntime.Replica) {
	if s.rep != rep {
		return
	}
	s.inflight--
	p.offerLocked(s, rep)
}

// offerLocked puts s's free positions in service: to the waiters first, oldest first, else on the free list. A
// draining slot stops once its last call finished.
func (p *Pool) offerLocked(s *slot, rep *modelruntime.Replica) {
	if s.rep != rep {
		return
	}
	switch s.state {
	case stateDraining:
		if s.inflight == 0 {
			p.stopLocked(s)
		}
		return
	case stateReady:
	default:
		return
	}
	if dead(rep) { // its supervisor restarts it; meanwhile no request may pick it (a busy slot stays listed)
		p.free = slices.DeleteFunc(p.free, func(f *slot) bool { return f == s })
		return
	}
	limit := p.perReplicaLocked(rep)
	for len(p.waiters) > 0 && s.inflight < limit {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.occupyLocked(s)
		w <- s
	}
	if s.inflight >= limit {
		return
	}
	if i := slices.Index(p.free, s); i >= 0 {
		if s.inflight > 0 {
			return // keeps its place
		}
		p.free = slices.Delete(p.free, i, i+1) // idle again: it goes last, the warmest (takeFreeLocked)
	}
	p.free = append(p.free, s)
}

// Do runs fn on a replica: least-loaded (an idle one, else the first to free up), within the pool's timeout,
// retried once on another replica if the first died before answering.
func (p *Pool) Do(ctx context.Context, fn func(ctx context.Context, rep *modelruntime.Replica) error) (replica string, err error) {
	timeout := p.timeout()
	deadline := time.Now().Add(timeout)
	_, queued := tracing.Start(ctx, tracing.SpanQueue)
	s, rep, err := p.acquire(ctx, deadline)
	tracing.Fail(queued, err)
	queued.End()
	if err != nil {
		return "", p.timeoutError(err, timeout)
	}
	return p.doOn(ctx, s, rep, deadline, fn)
}

// doOn runs fn on an acquired replica; if that replica died before answering, once more on another, under the
// same deadline. A client that gives up leaves the queue at once, but a model call, once started, runs to its
// answer or to the deadline (runOn): a call cut short kills its replica, and a client hanging up must not be
// able to restart replicas at will.
func (p *Pool) doOn(ctx context.Context, s *slot, rep *modelruntime.Replica, deadline time.Time, fn func(ctx context.Context, rep *modelruntime.Replica) error) (replica string, err error) {
	err = p.runOn(ctx, s, rep, deadline, fn)
	if errors.Is(err, modelruntime.ErrReplicaDied) {
		p.log.Warn("replica died during a request; retrying on another", "deployment", p.name, "replica", s.id, "error", err)
		if s, rep, err = p.acquire(ctx, deadline); err != nil {
			return "", p.timeoutError(err, 0)
		}
		err = p.runOn(ctx, s, rep, deadline, fn)
	}
	return s.id, p.timeoutError(err, 0)
}

// runOn runs fn on an acquired replica until the deadline (whatever becomes of ctx), then releases it.
func (p *Pool) runOn(ctx context.Context, s *slot, rep *modelruntime.Replica, deadline time.Time, fn func(ctx context.Context, rep *modelruntime.Replica) error) error {
	ctx, span := tracing.Start(ctx, tracing.SpanReplica)
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrDeployment.String(p.name), tracing.AttrReplica.String(s.id))
	}
	callCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	stages, _ := p.observer().(StageObserver)
	var timings *workerproto.CallTimings
	if stages != nil { // the replica's own profile of this call (calls on one replica overlap)
		callCtx, timings = workerproto.NewCallTimings(callCtx)
	}
	start := time.Now()
	err := fn(callCtx, rep)
	took := time.Since(start)
	cancel()
	if timings != nil && err == nil && timings.Reported {
		stages.Stages(timings.Timings, took)
	}
	p.release(s, rep)
	tracing.Fail(span, err)
	span.End()
	return err
}

// modelSpan starts the span of the model's time. The worker protocol carries no time of the model's own, so
// it is the call on the replica as the server sees it (for an in-process session, the session's run).
func modelSpan(ctx context.Context) trace.Span {
	_, span := tracing.Start(ctx, tracing.SpanModel)
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrModelTimeSrc.String("call"))
	}
	return span
}

func (p *Pool) timeout() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts.Timeout
}

func (p *Pool) timeoutError(err error, timeout time.Duration) error {
	if err == nil { // the usual case: no lock (p.timeout), and no errors.As target escaping to the heap
		return nil
	}
	if timeout == 0 {
		timeout = p.timeout()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		if o := p.observer(); o != nil {
			o.TimedOut()
		}
		return slipway.Errorf(slipway.ETIMEOUT, "deployment %s did not answer within %s (timeout_ms)", p.name, timeout)
	}
	var merr interface{ ModelErrorType() string }
	if errors.As(err, &merr) {
		return err
	}
	if errors.Is(err, modelruntime.ErrReplicaDied) {
		return slipway.Wrap(slipway.EUNAVAILABLE, err, "the model process died while answering (retried once): %v", err)
	}
	return err
}

// SetOptions changes queue bound, timeout and batching while serving.
func (p *Pool) SetOptions(o Options) {
	p.mu.Lock()
	p.opts = o
	p.mu.Unlock()
	p.setBatching(o.Batching)
}

// Status reports every replica.
func (p *Pool) Status() []slipway.ReplicaStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]slipway.ReplicaStatus, 0, len(p.slots))
	for _, s := range p.slots {
		st := slipway.ReplicaStatus{ID: s.id, Version: s.version, State: s.state, Restarts: s.restarts, StartedAt: s.startedAt, LastError: s.lastErr}
		st.InFlight = s.inflight
		if s.rep != nil && s.state != stateDead {
			st.PID = s.rep.PID()
		}
		out = append(out, st)
	}
	return out
}

// Ready reports whether at least one replica can serve, or the pool is at zero replicas and its next request
// starts one.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.state == stateReady {
			return true
		}
	}
	return p.tmplStart != nil && !p.hasCurrentLocked() && p.ctx.Err() == nil
}

// Size reports the serving generation's replicas (starting, ready or restarting: draining ones leave) and how
// many of them are READY.
func (p *Pool) Size() (replicas, ready int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.currentLocked() {
		replicas++
		if s.state == stateReady {
			ready++
		}
	}
	return replicas, ready
}

// Requests is the number of prediction requests in the pool now: being answered, batched or queued.
func (p *Pool) Requests() int { return int(p.requests.Load()) }

// ServedVersion is the version the pool's serving generation runs (0 before the first rollout).
func (p *Pool) ServedVersion() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tmplVersion
}

// Hello returns what a ready replica of the current generation reported (inputs/outputs).
func (p *Pool) Hello() (version int, rep *modelruntime.Replica) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.state == stateReady && s.rep != nil {
			return s.version, s.rep
		}
	}
	return 0, nil
}

// Idle reports whether no request runs on the pool's replicas or waits for one (in its queue or its batcher).
func (p *Pool) Idle() bool {
	p.mu.Lock()
	b := p.batcher
	busy := len(p.waiters) > 0 || slices.ContainsFunc(p.slots, func(s *slot) bool { return s.inflight > 0 })
	p.mu.Unlock()
	if busy || b == nil {
		return !busy
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue) == 0 && !b.owned && b.inflight == 0
}

// Close stops every replica and supervisor; waiting requests get ErrClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	p.cancel()
	for _, w := range p.waiters {
		w <- nil
	}
	p.waiters = nil
	for _, s := range slices.Clone(p.slots) {
		p.retireLocked(s)
		if s.state == stateDraining { // busy: the server stopped taking requests, so do not wait for it
			p.stopLocked(s)
		}
	}
	b := p.batcher
	p.batcher = nil
	p.mu.Unlock()
	if b != nil {
		b.close()
	}
	p.wg.Wait()
	if p.budget != nil {
		p.budget.detach(p)
	}
}

// joinDistinct joins errors, keeping one copy of each message (N replicas failing the same way say it once).
func joinDistinct(errs []error) error {
	seen := map[string]bool{}
	var out []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		msg := err.Error()
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "replica ") {
			msg = msg[i+2:] // "replica churn-3: ..." → compare the cause
		}
		if !seen[msg] {
			seen[msg] = true
			out = append(out, err)
		}
	}
	return errors.Join(out...)
}

package serving

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Routers are the live deployments' routers by name. The control plane (deploy) puts a router in when a
// deployment starts serving and takes it out when it stops; the prediction handlers look one up per request.
type Routers struct {
	mu sync.RWMutex
	m  map[string]*Router
}

// NewRouters returns an empty set.
func NewRouters() *Routers { return &Routers{m: map[string]*Router{}} }

// Get returns the router of a serving deployment, or nil.
func (rs *Routers) Get(name string) *Router {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return rs.m[name]
}

// Put makes r the deployment's router.
func (rs *Routers) Put(name string, r *Router) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.m[name] = r
}

// Take removes the deployment's router and returns it (nil: there was none), for the caller to close.
func (rs *Routers) Take(name string) *Router {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[name]
	delete(rs.m, name)
	return r
}

// TakeAll removes every router and returns them by deployment name, for the caller to close.
func (rs *Routers) TakeAll() map[string]*Router {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	all := rs.m
	rs.m = map[string]*Router{}
	return all
}

// All returns the routers by deployment name (a snapshot).
func (rs *Routers) All() map[string]*Router {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	out := make(map[string]*Router, len(rs.m))
	for name, r := range rs.m {
		out[name] = r
	}
	return out
}

// Router routes one deployment's requests: to its live pool and the version it serves, or to its canary's,
// with a copy to its shadow when it has one.
type Router struct {
	Pool    *Pool
	mu      sync.RWMutex
	version *slipway.ModelVersion
	canary  *Side         // takes weight percent of the requests
	shadow  *Side         // gets a copy of every request; its answers are dropped
	holdout atomic.Uint64 // the holdout share's float64 bits (0: none)
}

// SetHoldout sets the share of requests held out (0: none).
func (r *Router) SetHoldout(share float64) { r.holdout.Store(math.Float64bits(share)) }

func (r *Router) holdoutShare() float64 { return math.Float64frombits(r.holdout.Load()) }

// NewRouter routes every request to pool, which serves v.
func NewRouter(pool *Pool, v *slipway.ModelVersion) *Router {
	return &Router{Pool: pool, version: v}
}

// Route is where one request goes: the pool and version that answer it, and the shadow, if any, that gets a
// copy.
type Route struct {
	Pool    *Pool
	Version *slipway.ModelVersion
	shadow  *Side
	holdout float64 // the deployment's holdout share
}

// HeldOut reports whether the request with id is one of the deployment's holdout share.
func (rt Route) HeldOut(id string) bool { return slipway.HeldOut(rt.holdout, id) }

// Pick routes one request, from one snapshot (a rollout may switch versions meanwhile): to the canary for its
// share of the requests, at random, else to the deployment's version.
func (r *Router) Pick() Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if c := r.canary; c != nil && rand.IntN(100) < c.weight {
		return Route{Pool: c.pool, Version: c.version, shadow: r.shadow, holdout: r.holdoutShare()}
	}
	return Route{Pool: r.Pool, Version: r.version, shadow: r.shadow, holdout: r.holdoutShare()}
}

// ForVersion routes a request that names version n to the deployment's or its canary's pool.
func (r *Router) ForVersion(n int) (Route, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	switch {
	case r.version.Version == n:
		return Route{Pool: r.Pool, Version: r.version, shadow: r.shadow, holdout: r.holdoutShare()}, true
	case r.canary != nil && r.canary.version.Version == n:
		return Route{Pool: r.canary.pool, Version: r.canary.version, shadow: r.shadow, holdout: r.holdoutShare()}, true
	}
	return Route{}, false
}

// Main routes to the deployment's own version (model metadata and readiness).
func (r *Router) Main() Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return Route{Pool: r.Pool, Version: r.version}
}

// ShadowDone receives a shadow's answer to a mirrored request, off the request path: its outputs (tensors, or
// the JSON body of an OCI predict), or the error, and how long the shadow took. It is called exactly once per
// mirrored request, with slipway.ErrShadowNotSent when the copy was not sent (shadow saturated or closed).
type ShadowDone func(version int, out []workerproto.Tensor, outJSON []byte, err error, took time.Duration)

// ShadowCompares reports whether the route has a shadow whose answers are compared with the live ones.
func (rt Route) ShadowCompares() bool { return rt.shadow != nil && rt.shadow.compare.Load() }

// MirrorTensors sends a copy of a tensor request to the shadow, if any, without waiting for it. The copy has
// its own slice of tensors; their data is only read. done (nil: the answer is dropped) gets the answer.
func (rt Route) MirrorTensors(in []workerproto.Tensor, done ShadowDone) {
	if rt.shadow == nil {
		return // no copy, no closure: a deployment without a shadow pays nothing
	}
	rt.shadow.mirror(done, func(ctx context.Context, p *Pool) ([]workerproto.Tensor, []byte, error) {
		res, err := p.PredictTensors(ctx, slices.Clone(in))
		return res.Outputs, nil, err
	})
}

// MirrorJSON sends a copy of a JSON request (the OCI predict body) to the shadow, if any; done as MirrorTensors.
func (rt Route) MirrorJSON(body []byte, done ShadowDone) {
	if rt.shadow == nil {
		return
	}
	rt.shadow.mirror(done, func(ctx context.Context, p *Pool) ([]workerproto.Tensor, []byte, error) {
		out, _, err := p.PredictJSON(ctx, body)
		return nil, out, err
	})
}

// Version is the model version currently served (the deployment's own, not its canary's).
func (r *Router) Version() *slipway.ModelVersion {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.version
}

// SetVersion records that the deployment's pool now serves v (after a rollout).
func (r *Router) SetVersion(v *slipway.ModelVersion) {
	r.mu.Lock()
	r.version = v
	r.mu.Unlock()
}

// Versions are the version numbers that answer requests: the deployment's, then its canary's.
func (r *Router) Versions() []int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.canary != nil {
		return []int{r.version.Version, r.canary.version.Version}
	}
	return []int{r.version.Version}
}

// Pools are the live pools: the deployment's, then its canary's and its shadow's.
func (r *Router) Pools() []*Pool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	pools := []*Pool{r.Pool}
	for _, t := range []*Side{r.canary, r.shadow} {
		if t != nil {
			pools = append(pools, t.pool)
		}
	}
	return pools
}

// Role names a router's side slot.
type Role int

const (
	Canary Role = iota // takes a share of the requests
	Shadow             // gets a copy of every request
)

func (role Role) String() string {
	if role == Shadow {
		return "shadow"
	}
	return "canary"
}

// Side returns the canary or the shadow (nil: none).
func (r *Router) Side(role Role) *Side {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return *r.slot(role)
}

func (r *Router) slot(role Role) **Side {
	if role == Shadow {
		return &r.shadow
	}
	return &r.canary
}

// SwapSide installs t (nil: none) in a slot and returns the side it replaces, for the caller to retire.
func (r *Router) SwapSide(role Role, t *Side) *Side {
	r.mu.Lock()
	defer r.mu.Unlock()
	slot := r.slot(role)
	old := *slot
	*slot = t
	return old
}

// Resize records a side's new weight and replica count (its pool is scaled by the caller).
func (r *Router) Resize(t *Side, weight, replicas int) {
	r.mu.Lock()
	t.weight, t.replicas = weight, replicas
	r.mu.Unlock()
}

// Close closes the canary, the shadow and the deployment's pool (their replicas exit).
func (r *Router) Close() {
	for _, role := range []Role{Canary, Shadow} {
		if old := r.SwapSide(role, nil); old != nil {
			old.close()
		}
	}
	r.Pool.Close()
}

// Side is a canary's or a shadow's live pool: its own replicas of another version.
type Side struct {
	pool     *Pool
	version  *slipway.ModelVersion
	weight   int // canary: percent of the requests
	replicas int

	// Shadow copies: at most cap(inflight) at once (more are dropped), each in a goroutine owned by the side.
	observer func() Observer // the deployment's, looked up per copy: monitoring may connect later
	inflight chan struct{}
	compare  atomic.Bool // a shadow whose answers are compared (deploy sets it from the spec)
	mu       sync.Mutex
	closed   bool
	wg       sync.WaitGroup
}

// NewSide returns a side on pool, which serves v on replicas replicas; a canary takes weight percent of the
// requests. observer gives the deployment's observer, which counts the shadow's outcomes.
func NewSide(pool *Pool, v *slipway.ModelVersion, weight, replicas int, observer func() Observer) *Side {
	return &Side{pool: pool, version: v, weight: weight, replicas: replicas, observer: observer,
		inflight: make(chan struct{}, 4*replicas)}
}

// Pool is the side's pool.
func (t *Side) Pool() *Pool { return t.pool }

// Version is the version the side serves.
func (t *Side) Version() *slipway.ModelVersion { return t.version }

// Replicas is the side's replica count.
func (t *Side) Replicas() int { return t.replicas }

// shadowObserver is the part of a deployment's observer that records shadow copies.
type shadowObserver interface {
	Shadowed(version int, outcome string, took time.Duration)
}

// mirror runs call on the shadow's pool in the background, or drops it when the shadow is saturated; done
// (nil: none) gets the answer.
func (t *Side) mirror(done ShadowDone, call func(ctx context.Context, p *Pool) ([]workerproto.Tensor, []byte, error)) {
	select {
	case t.inflight <- struct{}{}:
	default:
		t.record("dropped", 0)
		t.answer(done, nil, nil, slipway.ErrShadowNotSent, 0)
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.inflight
		t.answer(done, nil, nil, slipway.ErrShadowNotSent, 0)
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() { // owned by t: close waits for it; the pool's timeout bounds it
		defer t.wg.Done()
		defer func() { <-t.inflight }()
		start := time.Now()
		outcome := "ok"
		out, outJSON, err := call(context.Background(), t.pool)
		if err != nil {
			outcome = "error"
		}
		took := time.Since(start)
		t.record(outcome, took)
		t.answer(done, out, outJSON, err, took)
	}()
}

func (t *Side) answer(done ShadowDone, out []workerproto.Tensor, outJSON []byte, err error, took time.Duration) {
	if done != nil {
		done(t.version.Version, out, outJSON, err, took)
	}
}

// SetCompare says whether the shadow's answers are compared with the live ones (ShadowCompares).
func (t *Side) SetCompare(on bool) { t.compare.Store(on) }

func (t *Side) record(outcome string, took time.Duration) {
	if o, ok := t.observer().(shadowObserver); ok {
		o.Shadowed(t.version.Version, outcome, took)
	}
}

// sideGrace is how long a replaced canary or shadow keeps taking the requests that were routed to it just
// before the swap (they are between the routing and the pool, reading or decoding their payload).
const sideGrace = time.Second

// Retire closes a canary or shadow taken out of service without failing a request routed to it: after
// sideGrace, once its requests are done (at most timeout more, the deployment's request timeout).
func (t *Side) Retire(timeout time.Duration) {
	time.Sleep(sideGrace)
	for deadline := time.Now().Add(timeout); !t.pool.Idle() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	t.close()
}

// close stops the pool and waits for the copies in flight (the closed pool fails them at once).
func (t *Side) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.pool.Close()
	t.wg.Wait()
}

// Package deploy is the control plane of deployments: it validates desired state, stores it, and drives the
// serving pools to match (create, roll out a new version, scale, deactivate, activate, delete), recording the
// lifecycle state and the reason for it. Long operations run in the background, one at a time per deployment.
package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/serving"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Materializer gives the folder holding a version's files.
type Materializer interface {
	Materialize(ctx context.Context, v *slipway.ModelVersion) (string, error)
}

// Service manages deployments.
type Service struct {
	store    slipway.DeploymentStore
	models   slipway.ModelStore
	files    Materializer
	runtimes *modelruntime.Runtimes
	log      *slog.Logger

	mu     sync.RWMutex
	served map[string]*Served
	locks  map[string]*sync.Mutex // one operation at a time per deployment

	ctx    context.Context // background operations
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// ReadyTimeout bounds a replica's start (load_model()).
	ReadyTimeout time.Duration
	// ReplicaLog receives every line replicas write to stderr.
	ReplicaLog func(deployment, replica, line string)

	// Set by SetMonitor (after deployments may already be serving): the pools' observer and the replica log sink.
	observe    func(deployment string) serving.Observer // guarded by mu
	replicaLog atomic.Pointer[func(deployment, replica, line string)]
}

// SetMonitor connects monitoring: observe gives each deployment's pool its observer (nil: none), and replicaLog
// receives every line replicas write, in place of ReplicaLog. It applies to the pools already serving too.
func (s *Service) SetMonitor(observe func(deployment string) serving.Observer, replicaLog func(deployment, replica, line string)) {
	if replicaLog != nil {
		s.replicaLog.Store(&replicaLog)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe = observe
	for name, sv := range s.served {
		s.observeLocked(name, sv.Pool)
		sv.mu.RLock()
		if sv.canary != nil {
			s.observeLocked(name, sv.canary.pool)
		}
		sv.mu.RUnlock()
	}
}

func (s *Service) observeLocked(name string, p *serving.Pool) {
	if s.observe != nil {
		p.SetObserver(s.observe(name))
	}
}

// observer returns the deployment's observer (nil without monitoring).
func (s *Service) observer(name string) serving.Observer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.observe == nil {
		return nil
	}
	return s.observe(name)
}

// Pools returns the live pools by deployment name (a snapshot): the deployment's, its canary's and its
// shadow's.
func (s *Service) Pools() map[string][]*serving.Pool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string][]*serving.Pool, len(s.served))
	for name, sv := range s.served {
		out[name] = sv.Pools()
	}
	return out
}

// Served is a deployment's live pool with the version it serves, and its canary's and shadow's when it has
// them.
type Served struct {
	Pool    *serving.Pool
	mu      sync.RWMutex
	version *slipway.ModelVersion
	canary  *sideTarget // takes weight percent of the requests
	shadow  *sideTarget // gets a copy of every request; its answers are dropped
}

// sideTarget is a canary's or a shadow's live pool: its own replicas of another version.
type sideTarget struct {
	pool     *serving.Pool
	version  *slipway.ModelVersion
	weight   int // canary: percent of the requests
	replicas int

	// Shadow copies: at most cap(inflight) at once (more are dropped), each in a goroutine owned by the target.
	observer func() serving.Observer // the deployment's, looked up per copy: monitoring may connect later
	inflight chan struct{}
	mu       sync.Mutex
	closed   bool
	wg       sync.WaitGroup
}

// shadowObserver is the part of a deployment's observer that records shadow copies.
type shadowObserver interface {
	Shadowed(version int, outcome string, took time.Duration)
}

// mirror runs call on the shadow's pool in the background, or drops it when the shadow is saturated.
func (t *sideTarget) mirror(call func(ctx context.Context, p *serving.Pool) error) {
	select {
	case t.inflight <- struct{}{}:
	default:
		t.record("dropped", 0)
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.inflight
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() { // owned by t: close waits for it; the pool's timeout bounds it
		defer t.wg.Done()
		defer func() { <-t.inflight }()
		start := time.Now()
		outcome := "ok"
		if err := call(context.Background(), t.pool); err != nil {
			outcome = "error"
		}
		t.record(outcome, time.Since(start))
	}()
}

func (t *sideTarget) record(outcome string, took time.Duration) {
	if o, ok := t.observer().(shadowObserver); ok {
		o.Shadowed(t.version.Version, outcome, took)
	}
}

// sideGrace is how long a replaced canary or shadow keeps taking the requests that were routed to it just
// before the swap (they are between the routing and the pool, reading or decoding their payload).
const sideGrace = time.Second

// retire closes a canary or shadow taken out of service without failing a request routed to it: after
// sideGrace, once its requests are done (at most timeout more, the deployment's request timeout).
func (t *sideTarget) retire(timeout time.Duration) {
	time.Sleep(sideGrace)
	for deadline := time.Now().Add(timeout); !t.pool.Idle() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	t.close()
}

// close stops the pool and waits for the copies in flight (the closed pool fails them at once).
func (t *sideTarget) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.pool.Close()
	t.wg.Wait()
}

// Version is the model version currently served (the deployment's own, not its canary's).
func (s *Served) Version() *slipway.ModelVersion {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

func (s *Served) setVersion(v *slipway.ModelVersion) {
	s.mu.Lock()
	s.version = v
	s.mu.Unlock()
}

// Route is where one request goes: the pool and version that answer it, and the shadow, if any, that gets a
// copy.
type Route struct {
	Pool    *serving.Pool
	Version *slipway.ModelVersion
	shadow  *sideTarget
}

// Pick routes one request, from one snapshot (a rollout may switch versions meanwhile): to the canary for its
// share of the requests, at random, else to the deployment's version.
func (s *Served) Pick() Route {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := s.canary; c != nil && rand.IntN(100) < c.weight {
		return Route{Pool: c.pool, Version: c.version, shadow: s.shadow}
	}
	return Route{Pool: s.Pool, Version: s.version, shadow: s.shadow}
}

// MirrorTensors sends a copy of a tensor request to the shadow, if any, without waiting for it. The copy has
// its own slice of tensors; their data is only read.
func (r Route) MirrorTensors(in []workerproto.Tensor) {
	if r.shadow == nil {
		return // no copy, no closure: a deployment without a shadow pays nothing
	}
	r.shadow.mirror(func(ctx context.Context, p *serving.Pool) error {
		_, err := p.PredictTensors(ctx, slices.Clone(in))
		return err
	})
}

// MirrorJSON sends a copy of a JSON request (the OCI predict body) to the shadow, if any.
func (r Route) MirrorJSON(body []byte) {
	if r.shadow == nil {
		return
	}
	r.shadow.mirror(func(ctx context.Context, p *serving.Pool) error {
		_, _, err := p.PredictJSON(ctx, body)
		return err
	})
}

// ForVersion routes a request that names version n to the deployment's or its canary's pool.
func (s *Served) ForVersion(n int) (Route, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case s.version.Version == n:
		return Route{Pool: s.Pool, Version: s.version, shadow: s.shadow}, true
	case s.canary != nil && s.canary.version.Version == n:
		return Route{Pool: s.canary.pool, Version: s.canary.version, shadow: s.shadow}, true
	}
	return Route{}, false
}

// Main routes to the deployment's own version (model metadata and readiness).
func (s *Served) Main() Route {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Route{Pool: s.Pool, Version: s.version}
}

// Versions are the version numbers that answer requests: the deployment's, then its canary's.
func (s *Served) Versions() []int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.canary != nil {
		return []int{s.version.Version, s.canary.version.Version}
	}
	return []int{s.version.Version}
}

// Pools are the live pools: the deployment's, then its canary's and its shadow's.
func (s *Served) Pools() []*serving.Pool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pools := []*serving.Pool{s.Pool}
	for _, t := range []*sideTarget{s.canary, s.shadow} {
		if t != nil {
			pools = append(pools, t.pool)
		}
	}
	return pools
}

// side returns the canary's or the shadow's slot.
func (s *Served) side(shadow bool) **sideTarget {
	if shadow {
		return &s.shadow
	}
	return &s.canary
}

// swapSide installs t (nil: none) in a slot and returns the target it replaces, for the caller to close.
func (s *Served) swapSide(shadow bool, t *sideTarget) *sideTarget {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := s.side(shadow)
	old := *slot
	*slot = t
	return old
}

func (s *Served) close() {
	for _, shadow := range []bool{false, true} {
		if old := s.swapSide(shadow, nil); old != nil {
			old.close()
		}
	}
	s.Pool.Close()
}

// Config wires a Service.
type Config struct {
	Store    slipway.DeploymentStore
	Models   slipway.ModelStore
	Files    Materializer
	Runtimes *modelruntime.Runtimes
	Log      *slog.Logger
}

// New returns a Service; call Recover to bring stored deployments back and Close to stop everything.
func New(cfg Config) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{store: cfg.Store, models: cfg.Models, files: cfg.Files, runtimes: cfg.Runtimes, log: cfg.Log,
		served: map[string]*Served{}, locks: map[string]*sync.Mutex{}, ctx: ctx, cancel: cancel,
		ReadyTimeout: 2 * time.Minute}
}

// Served returns the live pool of a deployment, or an error a prediction client can act on.
func (s *Service) Served(name string) (*Served, error) {
	s.mu.RLock()
	sv := s.served[name]
	s.mu.RUnlock()
	if sv != nil {
		return sv, nil
	}
	return nil, s.notServing(name)
}

func (s *Service) notServing(name string) error {
	d, err := s.store.FindDeployment(context.Background(), name)
	if err != nil {
		return err
	}
	return slipway.Errorf(slipway.EUNAVAILABLE, "deployment %s is %s%s: it is not serving", name, d.State, reasonSuffix(d.Reason))
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// Get returns a deployment with its live replica status.
func (s *Service) Get(ctx context.Context, name string) (*slipway.Deployment, error) {
	d, err := s.store.FindDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	s.decorate(d)
	return d, nil
}

// List returns every deployment with live status.
func (s *Service) List(ctx context.Context) ([]*slipway.Deployment, error) {
	ds, err := s.store.FindDeployments(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		s.decorate(d)
	}
	return ds, nil
}

func (s *Service) decorate(d *slipway.Deployment) {
	d.ReplicaStatus = []slipway.ReplicaStatus{}
	s.mu.RLock()
	sv := s.served[d.Name]
	s.mu.RUnlock()
	if sv != nil {
		for _, p := range sv.Pools() {
			d.ReplicaStatus = append(d.ReplicaStatus, p.Status()...)
		}
	}
	d.URLs = &slipway.DeploymentURLs{
		Predict:     "/deployments/" + d.Name + "/predict",
		Invocations: "/deployments/" + d.Name + "/invocations",
		V2Infer:     "/v2/models/" + d.Name + "/infer",
	}
}

func (s *Service) lock(name string) func() {
	s.mu.Lock()
	l := s.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[name] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// background runs op for a deployment after any running operation on it, owned by the service.
func (s *Service) background(name string, op func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		unlock := s.lock(name)
		defer unlock()
		if s.ctx.Err() != nil {
			return
		}
		op(s.ctx)
	}()
}

// setState records a state; failures to record are logged (the next operation records again).
func (s *Service) setState(ctx context.Context, name string, to slipway.DeploymentState, reason string) {
	if err := s.store.SetDeploymentState(context.WithoutCancel(ctx), name, to, reason); err != nil {
		s.log.Error("record deployment state", "deployment", name, "state", to, "error", err)
		return
	}
	s.log.Info("deployment state", "deployment", name, "state", to, "reason", reason)
}

// starter returns how to start one replica of v for d.
func (s *Service) starter(d *slipway.Deployment, v *slipway.ModelVersion, dir string) serving.Starter {
	name := d.Name
	env := modelruntime.ThreadEnv(d.Replicas, d.Env)
	return func(ctx context.Context) (*modelruntime.Replica, error) {
		spec, err := s.runtimes.ReplicaSpec(v.Runtime, dir, v.Files, env)
		if err != nil {
			return nil, err
		}
		replicaID := fmt.Sprintf("%s-v%d", name, v.Version)
		return s.runtimes.Start(ctx, spec, s.ReadyTimeout, func(line string) {
			if fn := s.replicaLog.Load(); fn != nil {
				(*fn)(name, replicaID, line)
			} else if s.ReplicaLog != nil {
				s.ReplicaLog(name, replicaID, line)
			}
		})
	}
}

// Close stops background operations and every pool (their replicas exit).
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	pools := s.served
	s.served = map[string]*Served{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, sv := range pools {
		wg.Add(1)
		go func() { defer wg.Done(); sv.close() }()
	}
	wg.Wait()
}

func msDuration(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }

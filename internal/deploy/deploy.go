// Package deploy is the control plane of deployments: it validates desired state, stores it, and drives the
// serving pools to match (create, roll out a new version, scale, deactivate, activate, delete), recording the
// lifecycle state and the reason for it. Long operations run in the background, one at a time per deployment.
//
// Requests never pass through this package: a serving deployment's serving.Router, which routes them to its
// pool, canary and shadow, is in the serving.Routers that the prediction handlers read.
//
// Files: deploy.go (the service, its state changes and replica starter), spec.go (merging and checking a
// spec), lifecycle.go (create, update, deactivate, activate, delete), sides.go (canary and shadow),
// recover.go (server start).
package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/serving"
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

	routers *serving.Routers // the serving deployments: the data plane routes by them
	owner   Ownership        // leases shared with other servers (nil: this server owns every deployment)
	// stopOwnership ends the ownership loop and waits for it (nil: not started).
	stopOwnership func()
	scale         *autoscaler // the deployments' scaling policies, loads and decisions

	budget  *serving.MemoryBudget      // bounds the memory of the local replicas (nil: none)
	remote  *modelruntime.RemoteEngine // external deployments' engine (SetRemote; nil: none)
	secrets slipway.ReplicaSecretStore
	kube    KubeReplicas // the kubernetes engine's replica Deployments (SetKubernetes; nil: local replicas)
	// followers are the deployments another server hosts whose predictions this server serves from the same
	// pods (follow.go), with the shape their pool was built for; followPending: a change under way. Guarded
	// by mu.
	followers     map[string]string
	followPending map[string]bool
	followSides   map[string]string // canarySig of the canary each following router has

	mu    sync.RWMutex
	locks map[string]*sync.Mutex // one operation at a time per deployment

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
	for name, rt := range s.routers.All() {
		s.observeLocked(name, rt.Pool)
		if c := rt.Side(serving.Canary); c != nil {
			s.observeLocked(name, c.Pool())
		}
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
	routers := s.routers.All()
	out := make(map[string][]*serving.Pool, len(routers))
	for name, rt := range routers {
		out[name] = rt.Pools()
	}
	return out
}

// Config wires a Service.
type Config struct {
	Store    slipway.DeploymentStore
	Models   slipway.ModelStore
	Files    Materializer
	Runtimes *modelruntime.Runtimes
	Log      *slog.Logger
	// Budget bounds the memory of the replicas on this server (nil: none).
	Budget *serving.MemoryBudget
}

// New returns a Service; call Recover to bring stored deployments back and Close to stop everything.
func New(cfg Config) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{store: cfg.Store, models: cfg.Models, files: cfg.Files, runtimes: cfg.Runtimes, log: cfg.Log, budget: cfg.Budget,
		routers: serving.NewRouters(), scale: newAutoscaler(), locks: map[string]*sync.Mutex{}, ctx: ctx, cancel: cancel,
		followers: map[string]string{}, followPending: map[string]bool{}, followSides: map[string]string{},
		ReadyTimeout: 2 * time.Minute}
	s.wg.Add(1)
	go func() { // owned by the service: ends with Close
		defer s.wg.Done()
		s.autoscale(ctx)
	}()
	return s
}

// Routers are the routers of the serving deployments, which the prediction handlers look up.
func (s *Service) Routers() *serving.Routers { return s.routers }

// NotServing says why a deployment has no router: an error a prediction client can act on (its state and
// reason), or ENOTFOUND.
func (s *Service) NotServing(ctx context.Context, name string) error {
	d, err := s.store.FindDeployment(ctx, name)
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
	if rt := s.routers.Get(d.Name); rt != nil {
		for _, p := range rt.Pools() {
			d.ReplicaStatus = append(d.ReplicaStatus, p.Status()...)
		}
		s.scaleStatus(d, rt)
	}
	d.URLs = &slipway.DeploymentURLs{
		Predict:     "/deployments/" + d.Name + "/predict",
		Invocations: "/deployments/" + d.Name + "/invocations",
		V2Infer:     "/v2/models/" + d.Name + "/infer",
	}
	s.decorateExternal(d)
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

// setState moves a deployment to a state, if that is a legal move from the stored one (compare-and-set:
// another server on the database may have moved it meanwhile). An illegal move, or a failure to record, is
// logged and not written (the next operation records again).
func (s *Service) setState(ctx context.Context, name string, to slipway.DeploymentState, reason string) {
	ctx = context.WithoutCancel(ctx)
	d, err := s.store.FindDeployment(ctx, name)
	if err != nil {
		s.log.Error("record deployment state", "deployment", name, "state", to, "error", err)
		return
	}
	if !d.State.CanMoveTo(to) {
		s.log.Error("illegal deployment state change, not recorded", "deployment", name, "from", d.State, "to", to, "reason", reason)
		return
	}
	if err := s.store.SetDeploymentState(ctx, name, d.State, to, reason); err != nil {
		s.log.Error("record deployment state", "deployment", name, "from", d.State, "state", to, "error", err)
		return
	}
	s.log.Info("deployment state", "deployment", name, "state", to, "reason", reason)
}

// starter returns how to start one replica of v for d.
func (s *Service) starter(d *slipway.Deployment, v *slipway.ModelVersion, dir string) serving.Starter {
	name := d.Name
	env := modelruntime.ThreadEnv(d.Replicas, d.Env)
	engine := s.engineFor(d)
	resources := d.Resources
	return func(ctx context.Context) (*modelruntime.Replica, error) {
		spec, err := s.runtimes.VersionSpec(v, dir, env)
		if err != nil {
			return nil, err
		}
		spec.Deployment, spec.Version, spec.Isolation = name, v.Version, isolation(d)
		spec.Resources = resources
		replicaID := fmt.Sprintf("%s-v%d", name, v.Version)
		start := s.runtimes.Start
		if engine != nil {
			start = func(ctx context.Context, spec modelruntime.ProcessSpec, ready time.Duration, log modelruntime.LogFunc) (*modelruntime.Replica, error) {
				return s.runtimes.StartOn(ctx, engine, spec, ready, log)
			}
		}
		return start(ctx, spec, s.ReadyTimeout, func(line string) {
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
	s.StopOwnership()
	s.cancel()
	s.wg.Wait()
	var wg sync.WaitGroup
	for _, rt := range s.routers.TakeAll() {
		wg.Add(1)
		go func() { defer wg.Done(); rt.Close() }()
	}
	wg.Wait()
}

func msDuration(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }

package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/serving"
)

// Create stores a deployment in CREATING and starts its replicas in the background.
func (s *Service) Create(ctx context.Context, sp slipway.DeploymentSpec) (*slipway.Deployment, error) {
	if err := slipway.ValidateName("deployment", sp.Name); err != nil {
		return nil, err
	}
	if err := slipway.ValidateName("model", sp.Model); err != nil {
		return nil, err
	}
	if sp.Version != nil && sp.Alias != nil {
		return nil, slipway.Errorf(slipway.EINVALID, "give either version or alias, not both")
	}
	d := &slipway.Deployment{Name: sp.Name, Model: sp.Model, State: slipway.DeploymentCreating,
		Replicas: DefaultReplicas, TimeoutMS: DefaultTimeoutMS, MaxQueue: DefaultMaxQueue, Load: slipway.LoadEager,
		Isolation: slipway.IsolationProcess}
	v, err := s.prepare(ctx, d, sp)
	if err != nil {
		return nil, err
	}
	if err := s.checkEngine(d); err != nil {
		return nil, err
	}
	// The server taking the request hosts the deployment: its lease is taken before the row exists, so that no
	// other server's ownership loop sees a deployment to take over in between.
	if ok, err := s.own(ctx, d.Name); err != nil {
		return nil, err
	} else if !ok {
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s already exists (another server hosts it)", d.Name)
	}
	if err := s.store.CreateDeployment(ctx, d); err != nil {
		s.disown(ctx, d.Name)
		return nil, err
	}
	s.background(d.Name, func(ctx context.Context) { s.start(ctx, d, v, slipway.DeploymentFailed) })
	s.decorate(d)
	return d, nil
}

// start brings up a pool for d at v; on failure the deployment goes to failState with the replica's error.
func (s *Service) start(ctx context.Context, d *slipway.Deployment, v *slipway.ModelVersion, failState slipway.DeploymentState) {
	if ok, err := s.own(ctx, d.Name); !ok {
		// Another server took the deployment meanwhile (its ownership loop): it starts the replicas there.
		s.log.Warn("not starting a deployment another server hosts", "deployment", d.Name, "error", err)
		return
	}
	rt, err := s.newRouter(ctx, d, v)
	if err != nil {
		s.setState(ctx, d.Name, failState, err.Error())
		s.disown(ctx, d.Name)
		return
	}
	s.scale.setPolicy(d)
	s.mu.Lock()
	s.routers.Put(d.Name, rt)
	s.observeLocked(d.Name, rt.Pool)
	s.mu.Unlock()
	s.setState(ctx, d.Name, slipway.DeploymentActive, s.sidesReason(ctx, d, rt))
}

func (s *Service) newRouter(ctx context.Context, d *slipway.Deployment, v *slipway.ModelVersion) (*serving.Router, error) {
	pool, err := s.startPool(ctx, d.Name, d, v)
	if err != nil {
		return nil, err
	}
	return serving.NewRouter(pool, v), nil
}

// startPool starts a pool named poolName of d.Replicas replicas of v (none when d loads lazily), all ready
// before it returns; its events are d's.
func (s *Service) startPool(ctx context.Context, poolName string, d *slipway.Deployment, v *slipway.ModelVersion) (*serving.Pool, error) {
	dir, err := s.files.Materialize(ctx, v)
	if err != nil {
		return nil, fmt.Errorf("prepare model files: %w", err)
	}
	if err := s.checkPythonEnvironment(ctx, d, v, dir); err != nil {
		return nil, err
	}
	name := d.Name
	side := strings.TrimPrefix(strings.TrimPrefix(poolName, name), "-")
	if side == "" {
		side = "deployment"
	}
	var pool *serving.Pool
	pool = serving.NewPool(poolName, options(d), s.log, func(e serving.Event) {
		if e.Kind == serving.EventColdStart { // after NewPool returned: pool is set
			s.coldStarted(name, side, pool, e)
			return
		}
		s.onPoolEvent(name, e)
	})
	if s.budget != nil && d.Engine != slipway.EngineExternal { // external replicas hold no memory here
		pool.SetBudget(s.budget, filesSize(v))
	}
	if err := pool.Rollout(ctx, v.Version, startCount(d), s.starter(d, v, dir)); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// filesSize is the size of a version's files: what a replica is expected to hold until one has been measured.
func filesSize(v *slipway.ModelVersion) int64 {
	var n int64
	for _, f := range v.Files {
		n += f.Size
	}
	return n
}

func (s *Service) onPoolEvent(name string, e serving.Event) {
	s.background(name, func(ctx context.Context) {
		d, err := s.store.FindDeployment(ctx, name)
		if err != nil {
			return
		}
		switch {
		case e.Kind == "crashloop" && d.State == slipway.DeploymentActive:
			s.setState(ctx, name, slipway.DeploymentNeedsAttention, e.Message)
		case e.Kind == "recovered" && d.State == slipway.DeploymentNeedsAttention:
			s.setState(ctx, name, slipway.DeploymentActive, "")
		}
	})
}

// Update changes a deployment. A new version (or env) rolls out a new generation of replicas and switches to
// it only once all are ready; replicas scale in place; queue, timeout and batching apply at once. If the new
// generation fails to start, the old one keeps serving and the reason says why.
//
// The change applies to the deployment as it is stored: when another server or request wrote it between this
// read and this write (its revision moved on), the change is applied again to a fresh read, a few times. A
// client that gives sp.Revision (a read-modify-write of its own) gets the conflict instead.
func (s *Service) Update(ctx context.Context, name string, sp slipway.DeploymentSpec) (*slipway.Deployment, error) {
	unlock := s.lock(name)
	defer unlock()
	for attempt := 1; ; attempt++ {
		d, err := s.updateOnce(ctx, name, sp)
		if !errors.Is(err, slipway.ErrStaleDeployment) || sp.Revision != nil || attempt == maxStaleRetries {
			return d, err
		}
		s.log.Info("deployment changed while an update was applied: applying it again", "deployment", name, "attempt", attempt)
	}
}

// maxStaleRetries bounds how many times a change is applied again to a deployment that keeps changing under it.
const maxStaleRetries = 5

func (s *Service) updateOnce(ctx context.Context, name string, sp slipway.DeploymentSpec) (*slipway.Deployment, error) {
	d, err := s.store.FindDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	if sp.Revision != nil && *sp.Revision != d.Revision {
		return nil, slipway.Wrap(slipway.ECONFLICT, slipway.ErrStaleDeployment,
			"deployment %s is at revision %d, not %d: another request changed it since you read it; read it again and retry with its revision",
			name, d.Revision, *sp.Revision)
	}
	if sp.Model != "" && sp.Model != d.Model {
		return nil, slipway.Errorf(slipway.EINVALID, "a deployment cannot change model (%s → %s): create a new deployment", d.Model, sp.Model)
	}
	if sp.Engine != nil && *sp.Engine != d.Engine {
		return nil, slipway.Errorf(slipway.EINVALID, "a deployment cannot change engine (%q → %q): create a new deployment", d.Engine, *sp.Engine)
	}
	if d.State == slipway.DeploymentDeleting || d.State == slipway.DeploymentCreating {
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s is %s: wait until it settles", name, d.State)
	}
	// The API forwards a change to the deployment's host; a change made here by this server's own services
	// (an alias move, canary analysis) cannot reshape another server's pool.
	if host, err := s.hostedElsewhere(ctx, name); err != nil {
		return nil, err
	} else if host != "" {
		return nil, slipway.Errorf(slipway.EUNAVAILABLE, "deployment %s is hosted by server %s: send the change to it (any server's API forwards it there)", name, host)
	}
	prev := *d
	prev.Env = maps.Clone(d.Env)
	v, err := s.prepare(ctx, d, sp)
	if err != nil {
		return nil, err
	}
	if d.State == slipway.DeploymentInactive {
		if err := s.store.UpdateDeployment(ctx, d); err != nil {
			return nil, err
		}
		return s.Get(ctx, name)
	}
	d.State, d.Reason = slipway.DeploymentUpdating, ""
	if err := s.store.UpdateDeployment(ctx, d); err != nil {
		return nil, err
	}
	s.background(name, func(ctx context.Context) { s.finishUpdate(ctx, &prev, d, v, sp.Note) })
	return s.Get(ctx, name)
}

func (s *Service) finishUpdate(ctx context.Context, prev, d *slipway.Deployment, v *slipway.ModelVersion, note string) {
	rt := s.routers.Get(d.Name)
	if rt == nil { // FAILED or NEEDS_ATTENTION without a pool: start afresh
		s.start(ctx, d, v, slipway.DeploymentFailed)
		return
	}
	err := s.reshape(ctx, rt, prev, d, v)
	if err != nil {
		prev.State, prev.Reason = slipway.DeploymentActive, fmt.Sprintf("update rejected, still serving version %d: %v", prev.Version, err)
		if serr := s.storeOver(context.WithoutCancel(ctx), prev); serr != nil {
			s.log.Error("record failed update", "deployment", d.Name, "error", serr)
		}
		s.log.Warn("deployment update failed; previous version kept", "deployment", d.Name, "error", err)
		return
	}
	s.scale.setPolicy(d)
	reason := s.sidesReason(ctx, d, rt)
	if reason == "" {
		reason = note
	}
	s.setState(ctx, d.Name, slipway.DeploymentActive, reason)
}

// storeOver stores d as the deployment's desired state whatever was written since d was read (the rollback of a
// failed update: what serves is prev), moving the revision on as any write does.
func (s *Service) storeOver(ctx context.Context, d *slipway.Deployment) error {
	for attempt := 1; ; attempt++ {
		now, err := s.store.FindDeployment(ctx, d.Name)
		if err != nil {
			return err
		}
		d.Revision = now.Revision
		err = s.store.UpdateDeployment(ctx, d)
		if !errors.Is(err, slipway.ErrStaleDeployment) || attempt == maxStaleRetries {
			return err
		}
	}
}

func (s *Service) reshape(ctx context.Context, rt *serving.Router, prev, d *slipway.Deployment, v *slipway.ModelVersion) error {
	rt.Pool.SetOptions(options(d))
	if v.Version != rt.Version().Version || !maps.Equal(prev.Env, d.Env) || isolation(prev) != isolation(d) ||
		!sameResources(prev.Resources, d.Resources) {
		dir, err := s.files.Materialize(ctx, v)
		if err != nil {
			return err
		}
		if err := s.checkPythonEnvironment(ctx, d, v, dir); err != nil {
			return err
		}
		if err := rt.Pool.Rollout(ctx, v.Version, rolloutCount(d, rt.Pool), s.starter(d, v, dir)); err != nil {
			rt.Pool.SetOptions(options(prev))
			return err
		}
		rt.SetVersion(v)
		return nil
	}
	if needsFixedScale(d, rt.Pool, d.Replicas) {
		return rt.Pool.Scale(ctx, d.Replicas)
	}
	return nil
}

// sameResources reports whether a and b limit the same (nil and {} both limit nothing).
func sameResources(a, b *slipway.Resources) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	return *a == *b
}

// isolation is d's isolation, "" (stored before isolation existed) being a process.
func isolation(d *slipway.Deployment) string {
	if d.Isolation == "" {
		return slipway.IsolationProcess
	}
	return d.Isolation
}

// needsFixedScale reports whether pool, of d or of its canary or shadow, must be scaled to want: d has no
// autoscaling (with it, replicas is only the starting count; without it, a policy just removed leaves the
// count the autoscaler chose), and it is not a lazy deployment that no request has started yet.
func needsFixedScale(d *slipway.Deployment, pool *serving.Pool, want int) bool {
	if d.Autoscaling != nil {
		return false
	}
	n, _ := pool.Size()
	if n == 0 && d.Load == slipway.LoadLazy {
		return false
	}
	return n != want
}

// startCount is how many replicas d starts with: none when it loads lazily (its first request starts one).
func startCount(d *slipway.Deployment) int {
	if d.Load == slipway.LoadLazy {
		return 0
	}
	return d.Replicas
}

// rolloutCount is how many replicas of a new version replace pool's: d's replicas, or, when it autoscales,
// as many as serve now (within its bounds): a rollout under load must not shrink the deployment, nor wake
// one scaled to zero (nor a lazy one no request has started).
func rolloutCount(d *slipway.Deployment, pool *serving.Pool) int {
	current, _ := pool.Size()
	a := d.Autoscaling
	switch {
	case current == 0 && (a != nil || d.Load == slipway.LoadLazy):
		return 0
	case a == nil:
		return d.Replicas
	}
	return min(max(current, a.MinReplicas, 1), a.MaxReplicas)
}

// Deactivate stops the replicas and keeps the configuration and URL.
func (s *Service) Deactivate(ctx context.Context, name string) (*slipway.Deployment, error) {
	unlock := s.lock(name)
	defer unlock()
	d, err := s.store.FindDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	if d.State == slipway.DeploymentInactive {
		return s.Get(ctx, name)
	}
	if d.State == slipway.DeploymentDeleting || d.State == slipway.DeploymentCreating || d.State == slipway.DeploymentUpdating {
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s is %s: wait until it settles", name, d.State)
	}
	s.stopPool(name)
	s.stoppedWorkers(name)
	s.setState(ctx, name, slipway.DeploymentInactive, "")
	s.disown(ctx, name)
	return s.Get(ctx, name)
}

func (s *Service) stopPool(name string) {
	s.scale.forget(name)
	if rt := s.routers.Take(name); rt != nil {
		rt.Close()
	}
}

// Activate starts an INACTIVE (or FAILED) deployment's replicas again at its configured version.
func (s *Service) Activate(ctx context.Context, name string) (*slipway.Deployment, error) {
	unlock := s.lock(name)
	defer unlock()
	d, err := s.store.FindDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	switch d.State {
	case slipway.DeploymentActive:
		return s.Get(ctx, name)
	case slipway.DeploymentInactive, slipway.DeploymentFailed:
	default:
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s is %s: only INACTIVE or FAILED deployments can be activated", name, d.State)
	}
	v, err := s.resolve(ctx, d, false)
	if err != nil {
		return nil, err
	}
	// As with create, the server taking the request hosts the deployment.
	if ok, err := s.own(ctx, name); err != nil {
		return nil, err
	} else if !ok {
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s is being started by another server", name)
	}
	fail := d.State
	d.State, d.Reason = slipway.DeploymentUpdating, ""
	if err := s.store.UpdateDeployment(ctx, d); err != nil {
		s.disown(ctx, name)
		return nil, err
	}
	s.background(name, func(ctx context.Context) { s.start(ctx, d, v, failStateFor(fail)) })
	return s.Get(ctx, name)
}

func failStateFor(from slipway.DeploymentState) slipway.DeploymentState {
	if from == slipway.DeploymentInactive {
		return slipway.DeploymentFailed
	}
	return from
}

// Delete stops the replicas and removes the deployment.
func (s *Service) Delete(ctx context.Context, name string) error {
	unlock := s.lock(name)
	defer unlock()
	if _, err := s.store.FindDeployment(ctx, name); err != nil {
		return err
	}
	s.setState(ctx, name, slipway.DeploymentDeleting, "")
	s.stopPool(name)
	if err := s.store.DeleteDeployment(context.WithoutCancel(ctx), name); err != nil {
		s.disown(ctx, name)
		return err
	}
	s.forgetWorkers(ctx, name)
	s.disown(ctx, name)
	return nil
}

// AliasMoved updates the deployments that follow model@alias to version.
func (s *Service) AliasMoved(ctx context.Context, model, alias string, version int) {
	ds, err := s.store.FindDeployments(ctx)
	if err != nil {
		s.log.Error("alias moved: list deployments", "error", err)
		return
	}
	for _, d := range ds {
		if d.Model == model && d.Alias == alias && d.FollowAlias && d.Version != version && d.State != slipway.DeploymentInactive {
			a := alias
			sp := slipway.DeploymentSpec{Alias: &a}
			if d.Canary != nil && d.Canary.Version == version {
				sp.Canary = &slipway.Canary{} // the alias moved to the canary's version: that promotes it
			}
			if _, err := s.Update(ctx, d.Name, sp); err != nil {
				s.log.Error("alias moved: update deployment", "deployment", d.Name, "error", err)
			}
		}
	}
}

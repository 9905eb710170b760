package deploy

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/serving"
)

// Defaults for a new deployment.
const (
	DefaultReplicas  = 1
	DefaultTimeoutMS = 30_000
	DefaultMaxQueue  = 100
)

// apply merges spec into d (nil fields unchanged).
func apply(d *slipway.Deployment, sp slipway.DeploymentSpec) {
	if sp.Version != nil {
		d.Version, d.Alias = *sp.Version, ""
		d.FollowAlias = false
	}
	if sp.Alias != nil {
		d.Alias = strings.TrimPrefix(*sp.Alias, "@")
	}
	if sp.FollowAlias != nil {
		d.FollowAlias = *sp.FollowAlias
	}
	if sp.Replicas != nil {
		d.Replicas = *sp.Replicas
	}
	if sp.Batching != nil {
		d.Batching = sp.Batching
		if !sp.Batching.Enabled() {
			d.Batching = nil // {"max_batch_size": 0|1} turns batching off
		}
	}
	if sp.TimeoutMS != nil {
		d.TimeoutMS = *sp.TimeoutMS
	}
	if sp.MaxQueue != nil {
		d.MaxQueue = *sp.MaxQueue
	}
	if sp.Env != nil {
		d.Env = sp.Env
	}
	if c := sp.Canary; c != nil {
		d.Canary = nil
		if c.Weight != 0 || c.Version != 0 {
			canary := *c
			if canary.Replicas == 0 {
				canary.Replicas = 1
			}
			if c.Analysis != nil {
				a := c.Analysis.WithDefaults()
				canary.Analysis = &a
			}
			d.Canary = &canary
		}
	}
	if sh := sp.Shadow; sh != nil {
		d.Shadow = nil
		if sh.Version != 0 {
			shadow := *sh
			if shadow.Replicas == 0 {
				shadow.Replicas = 1
			}
			d.Shadow = &shadow
		}
	}
}

// resolve finds the READY version d names (by number or alias) and records its number.
func (s *Service) resolve(ctx context.Context, d *slipway.Deployment) (*slipway.ModelVersion, error) {
	ref := slipway.VersionRef{Number: d.Version, Alias: d.Alias}
	if d.Alias != "" {
		ref.Number = 0
	} else if d.Version == 0 {
		ref.Alias = "latest"
	}
	v, err := s.readyVersion(ctx, d.Model, ref)
	if err != nil {
		return nil, err
	}
	d.Version = v.Version
	if c := d.Canary; c != nil && c.Version == v.Version {
		return nil, slipway.Errorf(slipway.EINVALID, "deployment %s: the canary's version %d is the deployment's own: to promote it, set the version and remove the canary (\"canary\": {\"weight\": 0})", d.Name, c.Version)
	}
	if sh := d.Shadow; sh != nil && sh.Version == v.Version {
		return nil, slipway.Errorf(slipway.EINVALID, "deployment %s: the shadow's version %d is the deployment's own: a shadow runs another version (remove it with \"shadow\": {\"version\": 0})", d.Name, sh.Version)
	}
	return v, nil
}

// readyVersion finds a version of model that can be deployed.
func (s *Service) readyVersion(ctx context.Context, model string, ref slipway.VersionRef) (*slipway.ModelVersion, error) {
	v, err := s.models.FindVersion(ctx, model, ref)
	if err != nil {
		return nil, err
	}
	if v.State != slipway.VersionReady {
		return nil, slipway.Errorf(slipway.ECONFLICT, "version %d of model %s is %s: only READY versions can be deployed", v.Version, v.Model, v.State)
	}
	return v, nil
}

// checkSides finds the versions of d's canary and shadow, so that a bad one is refused before anything starts.
func (s *Service) checkSides(ctx context.Context, d *slipway.Deployment) error {
	type side struct {
		role    string
		version int
	}
	var sides []side
	if d.Canary != nil {
		sides = append(sides, side{"canary", d.Canary.Version})
	}
	if d.Shadow != nil {
		sides = append(sides, side{"shadow", d.Shadow.Version})
	}
	for _, sd := range sides {
		if _, err := s.readyVersion(ctx, d.Model, slipway.VersionRef{Number: sd.version}); err != nil {
			// The message says which version of the request is wrong: the deployment's or its canary's?
			return slipway.Wrap(slipway.ErrorCode(err), err, "%s: %s", sd.role, slipway.ErrorMessage(err))
		}
	}
	return nil
}

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
		Replicas: DefaultReplicas, TimeoutMS: DefaultTimeoutMS, MaxQueue: DefaultMaxQueue}
	apply(d, sp)
	if err := d.Validate(); err != nil {
		return nil, err
	}
	v, err := s.resolve(ctx, d)
	if err != nil {
		return nil, err
	}
	if err := s.checkSides(ctx, d); err != nil {
		return nil, err
	}
	if err := s.store.CreateDeployment(ctx, d); err != nil {
		return nil, err
	}
	s.background(d.Name, func(ctx context.Context) { s.start(ctx, d, v, slipway.DeploymentFailed) })
	s.decorate(d)
	return d, nil
}

// start brings up a pool for d at v; on failure the deployment goes to failState with the replica's error.
func (s *Service) start(ctx context.Context, d *slipway.Deployment, v *slipway.ModelVersion, failState slipway.DeploymentState) {
	rt, err := s.newRouter(ctx, d, v)
	if err != nil {
		s.setState(ctx, d.Name, failState, err.Error())
		return
	}
	s.mu.Lock()
	s.routers.Put(d.Name, rt)
	s.observeLocked(d.Name, rt.Pool)
	s.mu.Unlock()
	s.setState(ctx, d.Name, slipway.DeploymentActive, s.sidesReason(ctx, d, rt))
}

// syncSides makes rt's canary and shadow match d's.
func (s *Service) syncSides(ctx context.Context, d *slipway.Deployment, rt *serving.Router) error {
	var canary, shadow *sideSpec
	if c := d.Canary; c != nil {
		canary = &sideSpec{version: c.Version, replicas: c.Replicas, weight: c.Weight}
	}
	if sh := d.Shadow; sh != nil {
		shadow = &sideSpec{version: sh.Version, replicas: sh.Replicas}
	}
	if err := s.syncSide(ctx, d, rt, serving.Canary, canary); err != nil {
		return fmt.Errorf("canary version %d did not start: %w", d.Canary.Version, err)
	}
	if err := s.syncSide(ctx, d, rt, serving.Shadow, shadow); err != nil {
		return fmt.Errorf("shadow version %d did not start: %w", d.Shadow.Version, err)
	}
	return nil
}

// sideSpec is what a canary or a shadow should run.
type sideSpec struct{ version, replicas, weight int }

// syncSide makes rt's canary (or shadow) match want (nil: none): scaled and reweighted in place when its
// version stays, else started beside the old one (all its replicas ready before it gets a request) and swapped
// in.
func (s *Service) syncSide(ctx context.Context, d *slipway.Deployment, rt *serving.Router, role serving.Role, want *sideSpec) error {
	cur := rt.Side(role)
	if want == nil {
		if old := rt.SwapSide(role, nil); old != nil {
			old.Retire(msDuration(d.TimeoutMS))
		}
		return nil
	}
	if cur != nil && cur.Version().Version == want.version {
		cur.Pool().SetOptions(options(d))
		if cur.Replicas() != want.replicas {
			if err := cur.Pool().Scale(ctx, want.replicas); err != nil {
				return err
			}
		}
		rt.Resize(cur, want.weight, want.replicas)
		return nil
	}
	v, err := s.readyVersion(ctx, d.Model, slipway.VersionRef{Number: want.version})
	if err != nil {
		return err
	}
	sd := *d
	sd.Replicas = want.replicas // its replicas share the CPUs like the deployment's
	name := d.Name
	pool, err := s.startPool(ctx, name+"-"+role.String(), &sd, v)
	if err != nil {
		return err
	}
	side := serving.NewSide(pool, v, want.weight, want.replicas, func() serving.Observer { return s.observer(name) })
	if role == serving.Canary { // a shadow's queue-full and timeouts are not the deployment's: only its outcomes are counted
		s.mu.Lock()
		s.observeLocked(name, pool)
		s.mu.Unlock()
	}
	if old := rt.SwapSide(role, side); old != nil {
		old.Retire(msDuration(d.TimeoutMS))
	}
	return nil
}

// sidesReason syncs the canary and the shadow and says, for the deployment's reason, which could not start:
// the deployment itself serves on.
func (s *Service) sidesReason(ctx context.Context, d *slipway.Deployment, rt *serving.Router) string {
	if err := s.syncSides(ctx, d, rt); err != nil {
		s.log.Warn("canary or shadow did not start", "deployment", d.Name, "error", err)
		return fmt.Sprintf("%v; every request goes to version %d", err, d.Version)
	}
	return ""
}

func (s *Service) newRouter(ctx context.Context, d *slipway.Deployment, v *slipway.ModelVersion) (*serving.Router, error) {
	pool, err := s.startPool(ctx, d.Name, d, v)
	if err != nil {
		return nil, err
	}
	return serving.NewRouter(pool, v), nil
}

// startPool starts a pool named poolName of d.Replicas replicas of v, all ready before it returns; its events
// are d's.
func (s *Service) startPool(ctx context.Context, poolName string, d *slipway.Deployment, v *slipway.ModelVersion) (*serving.Pool, error) {
	dir, err := s.files.Materialize(ctx, v)
	if err != nil {
		return nil, fmt.Errorf("prepare model files: %w", err)
	}
	name := d.Name
	pool := serving.NewPool(poolName, options(d), s.log, func(e serving.Event) { s.onPoolEvent(name, e) })
	if err := pool.Rollout(ctx, v.Version, d.Replicas, s.starter(d, v, dir)); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func options(d *slipway.Deployment) serving.Options {
	return serving.Options{MaxQueue: d.MaxQueue, Timeout: msDuration(d.TimeoutMS), Batching: d.Batching}
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
func (s *Service) Update(ctx context.Context, name string, sp slipway.DeploymentSpec) (*slipway.Deployment, error) {
	unlock := s.lock(name)
	defer unlock()
	d, err := s.store.FindDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	if sp.Model != "" && sp.Model != d.Model {
		return nil, slipway.Errorf(slipway.EINVALID, "a deployment cannot change model (%s → %s): create a new deployment", d.Model, sp.Model)
	}
	if d.State == slipway.DeploymentDeleting || d.State == slipway.DeploymentCreating {
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s is %s: wait until it settles", name, d.State)
	}
	prev := *d
	prev.Env = maps.Clone(d.Env)
	apply(d, sp)
	if err := d.Validate(); err != nil {
		return nil, err
	}
	v, err := s.resolve(ctx, d)
	if err != nil {
		return nil, err
	}
	if err := s.checkSides(ctx, d); err != nil {
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
		if serr := s.store.UpdateDeployment(context.WithoutCancel(ctx), prev); serr != nil {
			s.log.Error("record failed update", "deployment", d.Name, "error", serr)
		}
		s.log.Warn("deployment update failed; previous version kept", "deployment", d.Name, "error", err)
		return
	}
	reason := s.sidesReason(ctx, d, rt)
	if reason == "" {
		reason = note
	}
	s.setState(ctx, d.Name, slipway.DeploymentActive, reason)
}

func (s *Service) reshape(ctx context.Context, rt *serving.Router, prev, d *slipway.Deployment, v *slipway.ModelVersion) error {
	rt.Pool.SetOptions(options(d))
	if v.Version != rt.Version().Version || !maps.Equal(prev.Env, d.Env) {
		dir, err := s.files.Materialize(ctx, v)
		if err != nil {
			return err
		}
		if err := rt.Pool.Rollout(ctx, v.Version, d.Replicas, s.starter(d, v, dir)); err != nil {
			rt.Pool.SetOptions(options(prev))
			return err
		}
		rt.SetVersion(v)
		return nil
	}
	if d.Replicas != prev.Replicas {
		return rt.Pool.Scale(ctx, d.Replicas)
	}
	return nil
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
	s.setState(ctx, name, slipway.DeploymentInactive, "")
	return s.Get(ctx, name)
}

func (s *Service) stopPool(name string) {
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
	v, err := s.resolve(ctx, d)
	if err != nil {
		return nil, err
	}
	fail := d.State
	d.State, d.Reason = slipway.DeploymentUpdating, ""
	if err := s.store.UpdateDeployment(ctx, d); err != nil {
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
	return s.store.DeleteDeployment(context.WithoutCancel(ctx), name)
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

// Recover brings back, at server start, every deployment that was serving (or on its way) when the server
// stopped, and finishes deletions that were interrupted.
func (s *Service) Recover(ctx context.Context) error {
	ds, err := s.store.FindDeployments(ctx)
	if err != nil {
		return err
	}
	for _, d := range ds {
		switch d.State {
		case slipway.DeploymentInactive, slipway.DeploymentFailed:
		case slipway.DeploymentDeleting:
			if err := s.store.DeleteDeployment(ctx, d.Name); err != nil {
				return err
			}
		default:
			v, err := s.resolve(ctx, d)
			if err != nil {
				s.setState(ctx, d.Name, slipway.DeploymentFailed, "cannot restore after restart: "+slipway.ErrorMessage(err))
				continue
			}
			s.setState(ctx, d.Name, slipway.DeploymentCreating, "restoring after server restart")
			s.background(d.Name, func(ctx context.Context) { s.start(ctx, d, v, slipway.DeploymentFailed) })
		}
	}
	return nil
}

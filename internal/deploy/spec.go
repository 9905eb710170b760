package deploy

import (
	"context"
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

// apply merges spec into d (nil fields unchanged). A spec that names an alias and leaves follow_alias out
// follows the alias (followsByDefault); a stored deployment keeps its follow_alias until a spec names an alias.
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
	if sp.Engine != nil {
		d.Engine = *sp.Engine
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
	if h := sp.Holdout; h != nil {
		d.Holdout = nil
		if h.Share != 0 {
			holdout := *h
			d.Holdout = &holdout
		}
	}
	if sp.Alias != nil && sp.FollowAlias == nil {
		d.FollowAlias = followsByDefault(d)
	}
	if sp.Load != nil {
		d.Load = *sp.Load
	}
	if sp.Isolation != nil {
		d.Isolation = *sp.Isolation
	}
	if r := sp.Resources; r != nil {
		d.Resources = nil // {} removes them
		if !r.IsZero() {
			res := *r
			d.Resources = &res
		}
	}
	applyAutoscaling(d, sp)
}

// applyAutoscaling sets d's policy from sp: {"max_replicas": 0} removes it, zero fields take the defaults
// (but min_replicas: 0 scales to zero). A policy given without replicas brings the starting count within its
// bounds.
func applyAutoscaling(d *slipway.Deployment, sp slipway.DeploymentSpec) {
	a := sp.Autoscaling
	if a == nil {
		return
	}
	d.Autoscaling = nil
	if a.MaxReplicas == 0 {
		return
	}
	policy := *a
	if policy.TargetInFlight == 0 {
		policy.TargetInFlight = slipway.DefaultTargetInFlight
	}
	if policy.ScaleDownAfterS == 0 {
		policy.ScaleDownAfterS = slipway.DefaultScaleDownAfterS
	}
	d.Autoscaling = &policy
	if sp.Replicas == nil && policy.MinReplicas <= policy.MaxReplicas {
		d.Replicas = min(max(d.Replicas, policy.MinReplicas), policy.MaxReplicas)
	}
}

// followsByDefault is follow_alias for a deployment whose spec names an alias without saying: it follows,
// unless its canary is analysed. Canary analysis promotes by setting the version, which a deployment that
// follows an alias refuses, so asking for the analysis without asking to follow pins the alias's version
// instead of failing; an explicit follow_alias true with an analysed canary is still refused.
func followsByDefault(d *slipway.Deployment) bool {
	return d.Canary == nil || d.Canary.Analysis == nil
}

// prepare merges sp into d and checks the result: its settings, and the READY versions it names for itself,
// its canary and its shadow. It returns the deployment's version.
func (s *Service) prepare(ctx context.Context, d *slipway.Deployment, sp slipway.DeploymentSpec) (*slipway.ModelVersion, error) {
	apply(d, sp)
	if err := d.Validate(); err != nil {
		return nil, err
	}
	v, err := s.resolve(ctx, d, sp.Alias != nil)
	if err != nil {
		return nil, err
	}
	if err := s.checkSides(ctx, d); err != nil {
		return nil, err
	}
	if err := s.checkIsolation(ctx, d, v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkIsolation refuses an in-process deployment of a version (its own, its canary's or its shadow's) that is
// not an ONNX model: only ONNX Runtime sessions run inside the server.
func (s *Service) checkIsolation(ctx context.Context, d *slipway.Deployment, v *slipway.ModelVersion) error {
	if d.Isolation != slipway.IsolationInProcess {
		return nil
	}
	versions := []*slipway.ModelVersion{v}
	var sides []int
	if d.Canary != nil {
		sides = append(sides, d.Canary.Version)
	}
	if d.Shadow != nil {
		sides = append(sides, d.Shadow.Version)
	}
	for _, side := range sides {
		sv, err := s.readyVersion(ctx, d.Model, slipway.VersionRef{Number: side})
		if err != nil {
			return err
		}
		versions = append(versions, sv)
	}
	for _, mv := range versions {
		if mv.Runtime != slipway.RuntimeONNX {
			return slipway.Errorf(slipway.EINVALID, "deployment %s: isolation %q runs ONNX models only, and version %d of %s is a %s model: leave isolation out (or %q)",
				d.Name, slipway.IsolationInProcess, mv.Version, mv.Model, mv.Runtime, slipway.IsolationProcess)
		}
	}
	return nil
}

// resolve finds the READY version d names and records its number. The alias names it when d follows the
// alias or when the spec being applied has just named it (byAlias); a deployment pinned to the version an
// alias named keeps that version when the alias moves, through updates, activation and restarts.
func (s *Service) resolve(ctx context.Context, d *slipway.Deployment, byAlias bool) (*slipway.ModelVersion, error) {
	ref := slipway.VersionRef{Number: d.Version}
	switch {
	case d.Alias != "" && (byAlias || d.FollowAlias || d.Version == 0):
		ref = slipway.VersionRef{Alias: d.Alias}
	case d.Version == 0:
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

func options(d *slipway.Deployment) serving.Options {
	return serving.Options{MaxQueue: d.MaxQueue, Timeout: msDuration(d.TimeoutMS), Batching: d.Batching}
}

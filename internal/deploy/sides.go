package deploy

import (
	"context"
	"fmt"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/serving"
)

// syncSides makes rt's canary, shadow and holdout match d's.
func (s *Service) syncSides(ctx context.Context, d *slipway.Deployment, rt *serving.Router) error {
	var holdout float64
	if d.Holdout != nil {
		holdout = d.Holdout.Share
	}
	rt.SetHoldout(holdout)
	var canary, shadow *sideSpec
	if c := d.Canary; c != nil {
		canary = &sideSpec{version: c.Version, replicas: c.Replicas, weight: c.Weight}
	}
	if sh := d.Shadow; sh != nil {
		shadow = &sideSpec{version: sh.Version, replicas: sh.Replicas, compare: sh.Compare}
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
type sideSpec struct {
	version, replicas, weight int
	compare                   bool // a shadow whose answers are compared
}

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
		if needsFixedScale(d, cur.Pool(), want.replicas) {
			if err := cur.Pool().Scale(ctx, want.replicas); err != nil {
				return err
			}
		}
		rt.Resize(cur, want.weight, want.replicas)
		cur.SetCompare(want.compare)
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
	side.SetCompare(want.compare)
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

package deploy

import (
	"context"

	"github.com/slipway-ml/slipway"
)

// Recover brings back, at server start, every deployment that was serving (or on its way) when the server
// stopped, and finishes deletions that were interrupted. With ownership (several servers) it is the ownership
// loop's first look, run before the server serves: it restores what no server hosts (recording CREATING
// before the API answers, as on one server) and leaves alone what another server hosts.
func (s *Service) Recover(ctx context.Context) error {
	if s.owner != nil {
		s.reconcile(ctx)
		return nil
	}
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
			s.forgetWorkers(ctx, d.Name)
		default:
			if v := s.prepareRestore(ctx, d, "restoring after server restart"); v != nil {
				s.background(d.Name, func(ctx context.Context) { s.start(ctx, d, v, slipway.DeploymentFailed) })
			}
		}
	}
	return nil
}

// prepareRestore resolves the version to restore and records CREATING with reason; nil (and FAILED) when the
// version cannot be resolved any more.
func (s *Service) prepareRestore(ctx context.Context, d *slipway.Deployment, reason string) *slipway.ModelVersion {
	v, err := s.resolve(ctx, d, false)
	if err != nil {
		s.setState(ctx, d.Name, slipway.DeploymentFailed, "cannot restore after restart: "+slipway.ErrorMessage(err))
		s.disown(ctx, d.Name)
		return nil
	}
	s.setState(ctx, d.Name, slipway.DeploymentCreating, reason)
	return v
}

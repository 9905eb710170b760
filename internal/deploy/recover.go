package deploy

import (
	"context"

	"github.com/slipway-ml/slipway"
)

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
			v, err := s.resolve(ctx, d, false)
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

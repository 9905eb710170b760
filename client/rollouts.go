package client

import (
	"context"
	"net/http"
	"time"

	"github.com/slipway-ml/slipway"
)

// Rollout types (see POST /api/v1/deployments/{name}/rollouts).
type (
	Rollout         = slipway.Rollout
	RolloutSpec     = slipway.RolloutSpec
	RolloutStep     = slipway.RolloutStep
	RolloutGates    = slipway.RolloutGates
	RolloutDecision = slipway.RolloutDecision
)

// StartRollout starts a gated rollout of spec.Version on a deployment.
func (c *Client) StartRollout(ctx context.Context, deployment string, spec RolloutSpec) (*Rollout, error) {
	return call[Rollout](ctx, c, http.MethodPost, apiPath("deployments", deployment, "rollouts"), nil, spec)
}

// GetRollout returns a rollout with its decisions.
func (c *Client) GetRollout(ctx context.Context, deployment, id string) (*Rollout, error) {
	return call[Rollout](ctx, c, http.MethodGet, apiPath("deployments", deployment, "rollouts", id), nil, nil)
}

// ListRollouts returns a deployment's rollouts, newest first.
func (c *Client) ListRollouts(ctx context.Context, deployment string) ([]*Rollout, error) {
	return items[*Rollout](ctx, c, http.MethodGet, apiPath("deployments", deployment, "rollouts"), nil)
}

// CancelRollout ends a running rollout: its canary or shadow is removed, the deployment keeps its version.
func (c *Client) CancelRollout(ctx context.Context, deployment, id string) (*Rollout, error) {
	return call[Rollout](ctx, c, http.MethodPost, apiPath("deployments", deployment, "rollouts", id, "cancel"), nil, nil)
}

// WaitRollout polls a rollout every poll (DefaultPoll when ≤ 0), calling progress with each state seen (may
// be nil), until it ends (PROMOTED, ROLLED_BACK or CANCELED) or ctx ends. It returns the last rollout seen.
func (c *Client) WaitRollout(ctx context.Context, deployment, id string, progress func(*Rollout), poll time.Duration) (*Rollout, error) {
	return waitFor(ctx, "rollout "+id, poll, func() (*Rollout, bool, error) {
		r, err := c.GetRollout(ctx, deployment, id)
		if err != nil {
			return nil, false, err
		}
		if progress != nil {
			progress(r)
		}
		return r, r.State.Ended(), nil
	})
}

package client

import (
	"context"
	"net/http"
	"time"

	"github.com/slipway-ml/slipway"
)

// DeploymentSpec is the body of CreateDeployment and UpdateDeployment (nil fields are not sent).
type DeploymentSpec = slipway.DeploymentSpec

// CreateDeployment creates a deployment. It answers at once with the deployment in state CREATING: the
// replicas start in the background (see WaitDeployment).
func (c *Client) CreateDeployment(ctx context.Context, spec DeploymentSpec) (*slipway.Deployment, error) {
	return call[slipway.Deployment](ctx, c, http.MethodPost, apiPath("deployments"), nil, spec)
}

// ListDeployments returns every deployment, by name, with the live status of its replicas.
func (c *Client) ListDeployments(ctx context.Context) ([]*slipway.Deployment, error) {
	return items[*slipway.Deployment](ctx, c, http.MethodGet, apiPath("deployments"), nil)
}

// GetDeployment returns a deployment with the live status of its replicas and its prediction URLs.
func (c *Client) GetDeployment(ctx context.Context, name string) (*slipway.Deployment, error) {
	return call[slipway.Deployment](ctx, c, http.MethodGet, apiPath("deployments", name), nil, nil)
}

// UpdateDeployment changes a deployment (nil fields of spec are left unchanged). A new version or
// environment rolls out in the background with the deployment in state UPDATING; the previous replicas
// keep serving until the new ones are ready, and stay if they fail (the state is then ACTIVE again with a
// reason saying why the update was rejected).
func (c *Client) UpdateDeployment(ctx context.Context, name string, spec DeploymentSpec) (*slipway.Deployment, error) {
	return call[slipway.Deployment](ctx, c, http.MethodPatch, apiPath("deployments", name), nil, spec)
}

// DeleteDeployment stops a deployment's replicas and deletes it.
func (c *Client) DeleteDeployment(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, apiPath("deployments", name), nil, nil, nil)
}

// ActivateDeployment starts the replicas of an INACTIVE or FAILED deployment again, in the background.
func (c *Client) ActivateDeployment(ctx context.Context, name string) (*slipway.Deployment, error) {
	return call[slipway.Deployment](ctx, c, http.MethodPost, apiPath("deployments", name, "activate"), nil, nil)
}

// DeactivateDeployment stops a deployment's replicas and keeps its configuration and URLs.
func (c *Client) DeactivateDeployment(ctx context.Context, name string) (*slipway.Deployment, error) {
	return call[slipway.Deployment](ctx, c, http.MethodPost, apiPath("deployments", name, "deactivate"), nil, nil)
}

// DefaultPoll is WaitDeployment's interval when poll is 0.
const DefaultPoll = time.Second

// WaitDeployment polls a deployment every poll (DefaultPoll when 0) until until returns true for it, and
// returns that deployment. The first poll is immediate. Any error of the API ends the wait with that error.
// When ctx ends first, it returns the last deployment it saw (nil if none) with an error wrapping ctx.Err(),
// so that the caller can say what state it was stuck in.
func (c *Client) WaitDeployment(ctx context.Context, name string, until func(*slipway.Deployment) bool, poll time.Duration) (*slipway.Deployment, error) {
	return waitFor(ctx, "deployment "+name, poll, func() (*slipway.Deployment, bool, error) {
		d, err := c.GetDeployment(ctx, name)
		return d, err == nil && until(d), err
	})
}

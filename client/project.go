package client

import (
	"context"
	"net/http"

	"github.com/slipway-ml/slipway"
)

// CreateProject creates a project (admin only).
func (c *Client) CreateProject(ctx context.Context, spec slipway.ProjectSpec) (*slipway.Project, error) {
	return call[slipway.Project](ctx, c, http.MethodPost, apiPath("projects"), nil, spec)
}

// ListProjects lists the projects the token may see.
func (c *Client) ListProjects(ctx context.Context) ([]*slipway.Project, error) {
	return items[*slipway.Project](ctx, c, http.MethodGet, apiPath("projects"), nil)
}

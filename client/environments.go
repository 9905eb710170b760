package client

import (
	"context"
	"net/http"

	"github.com/slipway-ml/slipway"
)

// ListEnvironments lists the server's Python environments with their Python and package versions.
func (c *Client) ListEnvironments(ctx context.Context) ([]slipway.PythonEnvironment, error) {
	return items[slipway.PythonEnvironment](ctx, c, http.MethodGet, apiPath("environments"), nil)
}

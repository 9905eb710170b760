package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/slipway-ml/slipway"
)

// CreateModel creates an empty model. Pushing a version creates its model when needed, so this is only
// required to set a description or tags up front.
func (c *Client) CreateModel(ctx context.Context, name, description string, tags map[string]string) (*slipway.Model, error) {
	in := struct {
		Name        string            `json:"name"`
		Description string            `json:"description,omitempty"`
		Tags        map[string]string `json:"tags,omitempty"`
	}{name, description, tags}
	return call[slipway.Model](ctx, c, http.MethodPost, apiPath("models"), nil, in)
}

// ListModelsOptions filters and pages ListModels. Zero values mean "no filter" and the server's defaults.
type ListModelsOptions struct {
	Name   string // substring of the name
	Tag    string // "key" or "key=value"
	Offset int
	Limit  int // 1..1000; 0 is the server's default (100)
}

// ListModels lists models by name and returns one page of them with the total number that match.
func (c *Client) ListModels(ctx context.Context, opts ListModelsOptions) ([]*slipway.Model, int, error) {
	q := url.Values{}
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	if opts.Tag != "" {
		q.Set("tag", opts.Tag)
	}
	return itemsAndTotal[*slipway.Model](ctx, c, apiPath("models"), pageQuery(q, opts.Offset, opts.Limit))
}

// GetModel returns a model with its aliases and latest version number.
func (c *Client) GetModel(ctx context.Context, name string) (*slipway.Model, error) {
	return call[slipway.Model](ctx, c, http.MethodGet, apiPath("models", name), nil, nil)
}

// UpdateModel changes a model's description and/or tags (nil fields are left unchanged).
func (c *Client) UpdateModel(ctx context.Context, name string, u slipway.ModelUpdate) (*slipway.Model, error) {
	return call[slipway.Model](ctx, c, http.MethodPatch, apiPath("models", name), nil, u)
}

// DeleteModel deletes a model with all its versions and aliases.
func (c *Client) DeleteModel(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, apiPath("models", name), nil, nil, nil)
}

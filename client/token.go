package client

import (
	"context"
	"net/http"

	"github.com/slipway-ml/slipway"
)

// Whoami returns the token making the requests.
func (c *Client) Whoami(ctx context.Context) (*slipway.Token, error) {
	return call[slipway.Token](ctx, c, http.MethodGet, apiPath("whoami"), nil, nil)
}

// CreateToken creates a token (admin only). The returned Token's Secret is the only copy of the secret.
func (c *Client) CreateToken(ctx context.Context, name string, role slipway.Role) (*slipway.Token, error) {
	return c.CreateTokenFrom(ctx, slipway.TokenSpec{Name: name, Role: role})
}

// CreateTokenFrom creates a token from a full spec, lifetime included (admin only).
func (c *Client) CreateTokenFrom(ctx context.Context, spec slipway.TokenSpec) (*slipway.Token, error) {
	return call[slipway.Token](ctx, c, http.MethodPost, apiPath("tokens"), nil, spec)
}

// RotateToken gives the token with the given id a new secret (in the returned Token's Secret); the old secret
// keeps working for the rotation's grace period (admin only).
func (c *Client) RotateToken(ctx context.Context, id string, rot slipway.TokenRotation) (*slipway.Token, error) {
	return call[slipway.Token](ctx, c, http.MethodPost, apiPath("tokens", id, "rotate"), nil, rot)
}

// ListTokens lists every token, revoked ones included (admin only). Secrets are never returned.
func (c *Client) ListTokens(ctx context.Context) ([]*slipway.Token, error) {
	return items[*slipway.Token](ctx, c, http.MethodGet, apiPath("tokens"), nil)
}

// RevokeToken revokes the token with the given id (admin only).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, apiPath("tokens", id), nil, nil, nil)
}

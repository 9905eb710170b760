package client

import (
	"context"
	"net/http"
	"time"

	"github.com/slipway-ml/slipway"
)

// Replay types (see POST /api/v1/deployments/{name}/replays).
type (
	Replay     = slipway.Replay
	ReplaySpec = slipway.ReplaySpec
)

// StartReplay sends the captured requests of spec's window to spec.Version, offline.
func (c *Client) StartReplay(ctx context.Context, deployment string, spec ReplaySpec) (*Replay, error) {
	return call[Replay](ctx, c, http.MethodPost, apiPath("deployments", deployment, "replays"), nil, spec)
}

// GetReplay returns a replay: its progress and report.
func (c *Client) GetReplay(ctx context.Context, deployment, id string) (*Replay, error) {
	return call[Replay](ctx, c, http.MethodGet, apiPath("deployments", deployment, "replays", id), nil, nil)
}

// ListReplays returns a deployment's replays, newest first.
func (c *Client) ListReplays(ctx context.Context, deployment string) ([]*Replay, error) {
	return items[*Replay](ctx, c, http.MethodGet, apiPath("deployments", deployment, "replays"), nil)
}

// CancelReplay ends a running replay; its replicas stop.
func (c *Client) CancelReplay(ctx context.Context, deployment, id string) (*Replay, error) {
	return call[Replay](ctx, c, http.MethodPost, apiPath("deployments", deployment, "replays", id, "cancel"), nil, nil)
}

// WaitReplay polls a replay every poll (DefaultPoll when ≤ 0), calling progress with each state seen (may be
// nil), until it ends (SUCCEEDED, FAILED or CANCELED) or ctx ends. It returns the last replay seen.
func (c *Client) WaitReplay(ctx context.Context, deployment, id string, progress func(*Replay), poll time.Duration) (*Replay, error) {
	return waitFor(ctx, "replay "+id, poll, func() (*Replay, bool, error) {
		r, err := c.GetReplay(ctx, deployment, id)
		if err != nil {
			return nil, false, err
		}
		if progress != nil {
			progress(r)
		}
		return r, r.State.Ended(), nil
	})
}

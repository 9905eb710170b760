package client

import (
	"context"
	"fmt"
	"net/http"
)

// ReplicaSpecAnswer is POST /api/v1/deployments/{name}/replica-spec's answer.
type ReplicaSpecAnswer struct {
	Deployment  string `json:"deployment"`
	Version     int    `json:"version"`
	Server      string `json:"server"`
	ReplicaSpec string `json:"replica_spec"`
}

// IssueReplicaSpec asks for the replica spec of an external deployment (version 0: the deployment's), which
// `slipway worker serve --spec` takes. It carries the deployment's replica secret; it needs an admin token.
func (c *Client) IssueReplicaSpec(ctx context.Context, deployment string, version int) (*ReplicaSpecAnswer, error) {
	var out ReplicaSpecAnswer
	in := map[string]int{"version": version}
	if err := c.do(ctx, http.MethodPost, apiPath("deployments", deployment, "replica-spec"), nil, in, &out); err != nil {
		return nil, fmt.Errorf("client: replica spec of %s: %w", deployment, err)
	}
	return &out, nil
}

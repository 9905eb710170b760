package client

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// PerformanceOfVersion is Performance over the requests one version answered (0: every version).
func (c *Client) PerformanceOfVersion(ctx context.Context, deployment string, version int, r TimeRange, window time.Duration) ([]Performance, error) {
	q := r.query()
	if window > 0 {
		q.Set("window", window.String())
	}
	if version > 0 {
		q.Set("version", strconv.Itoa(version))
	}
	return items[Performance](ctx, c, http.MethodGet, apiPath("deployments", deployment, "performance"), q)
}

// MetricsOfVersion returns one version's figures (in Metrics.Version) and replicas.
func (c *Client) MetricsOfVersion(ctx context.Context, deployment string, version int) (*Metrics, error) {
	q := TimeRange{}.query()
	q.Set("version", strconv.Itoa(version))
	var m Metrics
	return &m, c.do(ctx, http.MethodGet, apiPath("deployments", deployment, "metrics"), q, nil, &m)
}

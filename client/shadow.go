package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/slipway-ml/slipway"
)

// ShadowReport compares a deployment's shadow with its live version (see GET /api/v1/deployments/{name}/shadow).
type ShadowReport = slipway.ShadowReport

// ShadowReport returns the comparison of a deployment's shadow with its live version over the range (zero:
// the last hour).
func (c *Client) ShadowReport(ctx context.Context, deployment string, r TimeRange) (*ShadowReport, error) {
	var rep ShadowReport
	return &rep, c.do(ctx, http.MethodGet, apiPath("deployments", deployment, "shadow"), r.query(), nil, &rep)
}

// CaptureExport selects captures to export: a range (zero: the last 24 hours), a version (0: all) and a
// format ("jsonl" or "csv"; "": jsonl).
type CaptureExport struct {
	TimeRange
	Version int
	Format  string
}

// ExportCaptures streams a deployment's captured rows with their ground truth into w and returns the bytes
// written; progress (optional) is called as bytes arrive. A response cut short is an error.
func (c *Client) ExportCaptures(ctx context.Context, deployment string, e CaptureExport, w io.Writer, progress func(received, total int64)) (int64, error) {
	q := e.query()
	if e.Version > 0 {
		q.Set("version", strconv.Itoa(e.Version))
	}
	if e.Format != "" {
		q.Set("format", e.Format)
	}
	n, err := c.download(ctx, apiPath("deployments", deployment, "captures"), q,
		"application/x-ndjson, text/csv, application/problem+json", &progressWriter{w: w, total: -1, fn: progress})
	if err != nil {
		return n, fmt.Errorf("client: export the captures of %s: %w", deployment, err)
	}
	return n, nil
}

// DriftOfVersion is Drift of the requests one version answered (a canary's, say), against that version's
// reference; 0 is the version the deployment serves.
func (c *Client) DriftOfVersion(ctx context.Context, deployment string, version int, r TimeRange) (*DriftReport, error) {
	q := r.query()
	if version > 0 {
		q.Set("version", strconv.Itoa(version))
	}
	var d DriftReport
	return &d, c.do(ctx, http.MethodGet, apiPath("deployments", deployment, "drift"), q, nil, &d)
}

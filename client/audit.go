package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway"
)

func auditQuery(f slipway.AuditFilter) url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.From.IsZero() {
		q.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	set("actor", f.Actor)
	set("target", f.Target)
	set("action", f.Action)
	if f.After > 0 {
		q.Set("after", strconv.FormatInt(f.After, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// AuditEntries lists audit entries matching f, oldest first (at most f.Limit, 100 by default; page on with
// f.After set to the last Seq). Admin only.
func (c *Client) AuditEntries(ctx context.Context, f slipway.AuditFilter) ([]*slipway.AuditEntry, error) {
	return items[*slipway.AuditEntry](ctx, c, http.MethodGet, apiPath("audit"), auditQuery(f))
}

// ExportAudit streams every entry matching f (f.Limit is ignored) as JSON Lines to w. Admin only.
func (c *Client) ExportAudit(ctx context.Context, f slipway.AuditFilter, w io.Writer) (int64, error) {
	q := auditQuery(f)
	q.Set("format", "jsonl")
	return c.download(ctx, apiPath("audit"), q, "application/jsonl", w)
}

// VerifyAudit has the server check the audit log's hash chain. Admin only.
func (c *Client) VerifyAudit(ctx context.Context) (*slipway.AuditVerification, error) {
	return call[slipway.AuditVerification](ctx, c, http.MethodGet, apiPath("audit", "verify"), nil, nil)
}

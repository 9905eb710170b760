package client

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
)

// Backup streams an online backup of the installation (a tar: slipway.db, local artifacts, monitor.db when
// withMonitor) into w and returns its size. A stream the server cut short is an error. progress (may be nil)
// is called with the bytes received so far (the total is not known: -1).
func (c *Client) Backup(ctx context.Context, withMonitor bool, w io.Writer, progress func(received, total int64)) (int64, error) {
	n, err := c.download(ctx, apiPath("backup"), url.Values{"monitor": {strconv.FormatBool(withMonitor)}},
		"application/x-tar, application/problem+json", &progressWriter{w: w, total: -1, fn: progress})
	if err != nil {
		return n, fmt.Errorf("client: backup: %w", err)
	}
	return n, nil
}

// download GETs path into w and returns how many bytes it wrote; a body cut short is an error.
func (c *Client) download(ctx context.Context, path string, query url.Values, accept string, w io.Writer) (int64, error) {
	body, err := c.open(ctx, path, query, accept)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return io.Copy(w, body)
}

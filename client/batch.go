package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway-ml/slipway"
)

// CreateBatchPrediction starts a batch prediction. The server checks the request, the model version, the
// input and the connection first (errors come back at once), then answers with the run in state ACCEPTED:
// it scores in the background (see WaitBatchPrediction).
func (c *Client) CreateBatchPrediction(ctx context.Context, spec slipway.BatchSpec) (*slipway.BatchRun, error) {
	return call[slipway.BatchRun](ctx, c, http.MethodPost, apiPath("batch-predictions"), nil, spec)
}

// GetBatchPrediction returns a run with its progress, errors and output.
func (c *Client) GetBatchPrediction(ctx context.Context, id string) (*slipway.BatchRun, error) {
	return call[slipway.BatchRun](ctx, c, http.MethodGet, apiPath("batch-predictions", id), nil, nil)
}

// ListBatchPredictions returns runs, newest first, and the total; state "" lists every state.
func (c *Client) ListBatchPredictions(ctx context.Context, state slipway.BatchState, offset, limit int) ([]*slipway.BatchRun, int, error) {
	q := pageQuery(nil, offset, limit)
	if state != "" {
		q.Set("state", string(state))
	}
	return itemsAndTotal[*slipway.BatchRun](ctx, c, apiPath("batch-predictions"), q)
}

// CancelBatchPrediction stops a run; chunks already committed stay in the output.
func (c *Client) CancelBatchPrediction(ctx context.Context, id string) (*slipway.BatchRun, error) {
	return call[slipway.BatchRun](ctx, c, http.MethodPost, apiPath("batch-predictions", id, "cancel"), nil, nil)
}

// DeleteBatchPrediction removes a finished run and its output file (a table output stays in its database).
func (c *Client) DeleteBatchPrediction(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, apiPath("batch-predictions", id), nil, nil, nil)
}

// WaitBatchPrediction polls a run every poll (DefaultPoll when ≤ 0), calling progress with each state seen
// (may be nil), until it is SUCCEEDED, FAILED or CANCELED or ctx ends. It returns the last run seen.
func (c *Client) WaitBatchPrediction(ctx context.Context, id string, progress func(*slipway.BatchRun), poll time.Duration) (*slipway.BatchRun, error) {
	return waitFor(ctx, "batch prediction "+id, poll, func() (*slipway.BatchRun, bool, error) {
		r, err := c.GetBatchPrediction(ctx, id)
		if err != nil {
			return nil, false, err
		}
		if progress != nil {
			progress(r)
		}
		return r, r.State.Terminal(), nil
	})
}

// DownloadBatchOutput writes a succeeded run's output file (CSV or Parquet) to w.
func (c *Client) DownloadBatchOutput(ctx context.Context, id string, w io.Writer) (int64, error) {
	n, err := c.download(ctx, apiPath("batch-predictions", id, "output"), nil, "*/*", w)
	if err != nil {
		return n, fmt.Errorf("client: download output of batch prediction %s: %w", id, err)
	}
	return n, nil
}

// UploadFile uploads an input file for batch predictions (streamed; the name's extension tells the format).
func (c *Client) UploadFile(ctx context.Context, name string, r io.Reader) (*slipway.UploadedFile, error) {
	var f slipway.UploadedFile
	if err := c.doRaw(ctx, http.MethodPost, apiPath("files"), url.Values{"name": {name}}, r, "application/octet-stream", &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// UploadFilePath uploads the file at path under its base name.
func (c *Client) UploadFilePath(ctx context.Context, path string) (*slipway.UploadedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("client: upload %s: %w", path, err)
	}
	defer f.Close()
	return c.UploadFile(ctx, filepath.Base(path), f)
}

// ListUploadedFiles returns the uploaded input files, newest first.
func (c *Client) ListUploadedFiles(ctx context.Context) ([]*slipway.UploadedFile, error) {
	return items[*slipway.UploadedFile](ctx, c, http.MethodGet, apiPath("files"), nil)
}

// DeleteUploadedFile deletes an uploaded input file.
func (c *Client) DeleteUploadedFile(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, apiPath("files", id), nil, nil, nil)
}

// ListConnections returns the server's named database connections (never their credentials).
func (c *Client) ListConnections(ctx context.Context) ([]slipway.Connection, error) {
	return items[slipway.Connection](ctx, c, http.MethodGet, apiPath("connections"), nil)
}

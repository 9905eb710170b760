package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/slipway-ml/slipway"
)

// PushVersion registers a new version of model from artifact: a .zip, .tar or .tar.gz archive, or a single
// file such as model.onnx (filename names it; the server detects archives by their content). meta may be nil:
// the server then infers the runtime from the files.
//
// The upload is streamed: artifact is read while the request is sent, never buffered whole in memory.
// progress, when not nil, is called from another goroutine with the artifact bytes sent so far and total
// (pass total < 0 when unknown, for example for an archive built on the fly). PushVersion stops reading
// artifact before it returns.
//
// A version whose checks failed is still registered: it comes back with State FAILED and a nil error.
func (c *Client) PushVersion(ctx context.Context, model string, artifact io.Reader, filename string,
	meta *slipway.VersionMetadata, progress func(sent, total int64), total int64) (*slipway.ModelVersion, error) {
	return c.pushVersion(ctx, model, "", artifact, filename, meta, progress, total)
}

// PushVersionNoWait is PushVersion that returns as soon as the server has stored the files: the version comes
// back REGISTERING and its checks run on the server (poll GetVersion).
func (c *Client) PushVersionNoWait(ctx context.Context, model string, artifact io.Reader, filename string,
	meta *slipway.VersionMetadata, progress func(sent, total int64), total int64) (*slipway.ModelVersion, error) {
	return c.pushVersion(ctx, model, "?wait=false", artifact, filename, meta, progress, total)
}

// BaselineFile is a sample of a version's training data sent with its registration: CSV with a header row
// (ContentType BaselineCSV) or Parquet (BaselineParquet). The server keeps its profile as the version's
// baseline once the version is READY, so that drift works from the version's first deployment.
type BaselineFile struct {
	Body        io.Reader
	Name        string
	ContentType string
}

// PushVersionWithBaseline is PushVersion with a baseline: the version is stored with its data profile. A
// baseline the server refuses fails the call, the version staying registered (the error says so).
func (c *Client) PushVersionWithBaseline(ctx context.Context, model string, artifact io.Reader, filename string,
	meta *slipway.VersionMetadata, baseline *BaselineFile, progress func(sent, total int64), total int64) (*slipway.ModelVersion, error) {
	return c.pushVersionBaseline(ctx, model, "", artifact, filename, meta, baseline, progress, total)
}

func (c *Client) pushVersion(ctx context.Context, model, query string, artifact io.Reader, filename string,
	meta *slipway.VersionMetadata, progress func(sent, total int64), total int64) (*slipway.ModelVersion, error) {
	return c.pushVersionBaseline(ctx, model, query, artifact, filename, meta, nil, progress, total)
}

func (c *Client) pushVersionBaseline(ctx context.Context, model, query string, artifact io.Reader, filename string,
	meta *slipway.VersionMetadata, baseline *BaselineFile, progress func(sent, total int64), total int64) (*slipway.ModelVersion, error) {
	u := multipartUpload{artifact: artifact, filename: filename, progress: progress, total: total, baseline: baseline}
	if meta != nil {
		b, err := json.Marshal(meta)
		if err != nil {
			return nil, fmt.Errorf("client: push %s: encode metadata: %w", model, err)
		}
		u.partName, u.partType, u.part = "metadata", "application/json", b
	}
	var v slipway.ModelVersion
	if err := c.postMultipart(ctx, apiPath("models", model, "versions")+query, "push "+model, u, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// ListVersions lists a model's versions, newest first, and returns the total number of versions.
func (c *Client) ListVersions(ctx context.Context, model string, offset, limit int) ([]*slipway.ModelVersion, int, error) {
	return itemsAndTotal[*slipway.ModelVersion](ctx, c, apiPath("models", model, "versions"), pageQuery(nil, offset, limit))
}

// GetVersion returns one version; version is a number ("3") or an alias ("@champion", "@latest").
func (c *Client) GetVersion(ctx context.Context, model, version string) (*slipway.ModelVersion, error) {
	return call[slipway.ModelVersion](ctx, c, http.MethodGet, apiPath("models", model, "versions", version), nil, nil)
}

// ListFiles returns a version's manifest: every file with its size and sha256.
func (c *Client) ListFiles(ctx context.Context, model, version string) ([]slipway.File, error) {
	return items[slipway.File](ctx, c, http.MethodGet, apiPath("models", model, "versions", version, "files"), nil)
}

// DownloadArtifact streams a version's files as a tar.gz. The caller must close the reader. A download cut
// short by the server ends with an error, never with a short but valid archive.
func (c *Client) DownloadArtifact(ctx context.Context, model, version string) (io.ReadCloser, error) {
	return c.open(ctx, apiPath("models", model, "versions", version, "artifact"), nil, "application/gzip, application/problem+json")
}

// AliasInfo is an alias of a model: the version it points at and its history, oldest move first.
type AliasInfo struct {
	Model   string               `json:"model"`
	Alias   string               `json:"alias"`
	Version int                  `json:"version"`
	History []*slipway.AliasMove `json:"history"`
}

// SetAlias points alias at version (which must be READY) and returns the move.
func (c *Client) SetAlias(ctx context.Context, model, alias string, version int) (*slipway.AliasMove, error) {
	in := struct {
		Version int `json:"version"`
	}{version}
	return call[slipway.AliasMove](ctx, c, http.MethodPut, apiPath("models", model, "aliases", strings.TrimPrefix(alias, "@")), nil, in)
}

// DeleteAlias removes an alias (the removal is kept in its history).
func (c *Client) DeleteAlias(ctx context.Context, model, alias string) error {
	return c.do(ctx, http.MethodDelete, apiPath("models", model, "aliases", strings.TrimPrefix(alias, "@")), nil, nil, nil)
}

// GetAlias returns the version an alias points at and the alias's history.
func (c *Client) GetAlias(ctx context.Context, model, alias string) (*AliasInfo, error) {
	return call[AliasInfo](ctx, c, http.MethodGet, apiPath("models", model, "aliases", strings.TrimPrefix(alias, "@")), nil, nil)
}

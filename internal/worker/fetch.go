package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// The manifest is small; files are bounded by what the server stored (the catalog's own upload limits), but a
// worker still refuses absurd ones rather than fill its disk.
const (
	maxManifestBytes = 8 << 20
	maxFileBytes     = 64 << 30
)

// apiClient talks to the server's replica routes with short-lived tokens minted from the replica secret.
type apiClient struct {
	spec slipway.ReplicaSpec
	http *http.Client
}

func (c *apiClient) token() string {
	return workerproto.ReplicaToken(c.spec.Secret, c.spec.Deployment, c.spec.Version, time.Now().Add(5*time.Minute))
}

func (c *apiClient) url(parts ...string) string {
	u := strings.TrimSuffix(c.spec.Server, "/") + "/api/v1/deployments/" + url.PathEscape(c.spec.Deployment)
	for _, p := range parts {
		u += "/" + p
	}
	return u
}

// do sends a request with a fresh token; a non-2xx answer becomes an error quoting the server's problem.
func (c *apiClient) do(ctx context.Context, method, u string, body io.Reader) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		var p slipway.Problem
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &p) == nil && p.Detail != "" {
			msg = p.Detail
		}
		return nil, &httpError{status: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s: %s", method, u, resp.Status, msg)}
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// refused says whether the server refused the worker for good (bad secret, unknown deployment or version).
func refused(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.status >= 400 && he.status < 500 && he.status != http.StatusTooManyRequests
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// versionManifest is what GET .../replica-files/{version} answers.
type versionManifest struct {
	Runtime string         `json:"runtime"`
	Files   []slipway.File `json:"files"`
}

func (c *apiClient) manifest(ctx context.Context) (*versionManifest, error) {
	resp, err := c.do(ctx, http.MethodGet, c.url("replica-files", strconv.Itoa(c.spec.Version)), nil)
	if err != nil {
		return nil, fmt.Errorf("read version %d's file list: %w", c.spec.Version, err)
	}
	defer resp.Body.Close()
	var m versionManifest
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxManifestBytes)).Decode(&m); err != nil {
		return nil, fmt.Errorf("decode version %d's file list: %w", c.spec.Version, err)
	}
	return &m, nil
}

// fetchModel makes dir hold the version's files, each checked against its digest: a cached file whose digest
// matches is kept, any other (missing, partial, tampered with) is downloaded again. Writes go to a temp file
// in the same folder, synced, then renamed over the old one; every path goes through an os.Root, so a file list
// naming "../x" or an absolute path cannot write outside dir.
func fetchModel(ctx context.Context, c *apiClient, m *versionManifest, dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	defer root.Close()
	for _, f := range m.Files {
		if !filepath.IsLocal(f.Path) || strings.Contains(f.Path, `\`) {
			return fmt.Errorf("file list names %q: not a path inside the model folder", f.Path)
		}
		if f.Size < 0 || f.Size > maxFileBytes {
			return fmt.Errorf("file %s: size %d out of range", f.Path, f.Size)
		}
		ok, err := cachedFileMatches(root, f)
		if err != nil {
			return err
		}
		if ok {
			log.Info("cached file verified", "file", f.Path, "sha256", f.SHA256)
			continue
		}
		if err := downloadFile(ctx, c, root, f); err != nil {
			return err
		}
		log.Info("file downloaded and verified", "file", f.Path, "bytes", f.Size, "sha256", f.SHA256)
	}
	return nil
}

// cachedFileMatches reports whether root holds f with f's digest.
func cachedFileMatches(root *os.Root, f slipway.File) (bool, error) {
	fh, err := root.Open(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("model cache: %w", err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return false, fmt.Errorf("model cache: read %s: %w", f.Path, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == f.SHA256, nil
}

func downloadFile(ctx context.Context, c *apiClient, root *os.Root, f slipway.File) error {
	if d := path.Dir(filepath.ToSlash(f.Path)); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("model cache: %w", err)
		}
	}
	// One path segment: PathEscape turns the file's slashes into %2F.
	resp, err := c.do(ctx, http.MethodGet, c.url("replica-files", strconv.Itoa(c.spec.Version), url.PathEscape(filepath.ToSlash(f.Path))), nil)
	if err != nil {
		return fmt.Errorf("download %s: %w", f.Path, err)
	}
	defer resp.Body.Close()
	tmp := f.Path + ".part-" + strconv.Itoa(os.Getpid())
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	defer func() { _ = root.Remove(tmp) }() // after a successful rename there is nothing left to remove
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(resp.Body, f.Size+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", f.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != f.Size || got != f.SHA256 {
		return fmt.Errorf("download %s: got %d bytes with sha256 %s, the version's manifest says %d bytes with %s", f.Path, n, got, f.Size, f.SHA256)
	}
	if err := root.Rename(tmp, f.Path); err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to path through a temp file and a rename.
func writeFileAtomic(p string, data []byte) error {
	tmp := p + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

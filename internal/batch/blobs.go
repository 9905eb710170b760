package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/blob"
)

// Uploaded inputs, the parts of file outputs and the merged output files live in the installation's artifact
// store (Config.Blobs: DATA_DIR/blobs on one server, the bucket with several), keyed by their SHA-256, so
// that a run adopted by another server reads its input and resumes its output there, and any server serves
// the output. Readers that need a local file (Parquet reads at offsets) get the local store's own file, or a
// copy fetched from the bucket into the cache folder, verified against the digest as it is read.

// localFiles is the local store: its blobs are files that can be read in place.
type localFiles interface {
	File(digest string) (string, error)
}

func (s *Service) cacheDir() string { return filepath.Join(s.dir, "cache") }

// blobFile returns a local file holding blob digest: the local store's own file, or the cached copy (fetched
// now when missing). cached says whether it is a copy, which the caller may evict.
func (s *Service) blobFile(ctx context.Context, digest, what string) (path string, cached bool, err error) {
	if !blob.ValidDigest(digest) {
		return "", false, fmt.Errorf("batch: %s has no valid digest (%q)", what, digest)
	}
	if lf, ok := s.blobs.(localFiles); ok {
		p, err := lf.File(digest)
		return p, false, s.blobError(err, what)
	}
	p := filepath.Join(s.cacheDir(), digest)
	if _, err := os.Stat(p); err == nil {
		return p, true, nil
	}
	if err := s.fetchBlob(ctx, digest, p, what); err != nil {
		return "", false, err
	}
	return p, true, nil
}

// fetchBlob copies blob digest to path atomically; a blob whose content does not match its digest leaves
// nothing behind.
func (s *Service) fetchBlob(ctx context.Context, digest, path, what string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("batch: create %s: %w", filepath.Dir(path), err)
	}
	rc, err := s.blobs.Open(ctx, digest)
	if err != nil {
		return s.blobError(err, what)
	}
	defer rc.Close()
	if err := writeAtomic(path, func(w io.Writer) error { _, err := io.Copy(w, rc); return err }); err != nil {
		return s.blobError(err, what)
	}
	return nil
}

// blobError says what is wrong with a blob in words that name the batch object it belongs to.
func (s *Service) blobError(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blob.ErrNotFound):
		return slipway.Wrap(slipway.ENOTFOUND, err, "%s is missing from the artifact store", what)
	case errors.Is(err, blob.ErrCorrupt):
		return slipway.Wrap(slipway.EINTERNAL, err, "%s is damaged in the artifact store (its content does not match its SHA-256)", what)
	}
	return fmt.Errorf("batch: read %s from the artifact store: %w", what, err)
}

// dropBlob deletes a blob that no record refers to any more (content-addressed: an identical upload, say,
// shares it). A blob left behind by a failure here is collected by the next lone start's garbage collection.
func (s *Service) dropBlob(ctx context.Context, digest, what string) {
	if !blob.ValidDigest(digest) {
		return
	}
	used, err := s.store.BlobReferenced(ctx, digest)
	if err == nil && !used {
		err = s.blobs.Delete(ctx, digest)
	}
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		s.log.Warn("delete a blob no batch record needs (the next start collects it)", "blob", digest, "of", what, "error", err)
	}
	s.evictCached(digest)
}

// evictCached removes the cached copy of a blob unless a run scoring here reads it.
func (s *Service) evictCached(digest string) {
	if _, local := s.blobs.(localFiles); local || !blob.ValidDigest(digest) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.active {
		if a.input == digest {
			return
		}
	}
	if err := os.Remove(filepath.Join(s.cacheDir(), digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove a cached batch input", "blob", digest, "error", err)
	}
}

// cappedReader fails once more than left bytes were read: an upload over the limit is never stored.
type cappedReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, slipway.Errorf(slipway.ETOOLARGE, "file larger than the upload limit of %d bytes (server flag --max-upload-bytes)", c.limit)
	}
	return n, err
}

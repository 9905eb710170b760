package catalog

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/slipway-ml/slipway"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// WriteArtifact streams a version's files as a tar.gz, each verified against its digest while it is read.
func (s *Service) WriteArtifact(ctx context.Context, v *slipway.ModelVersion, w io.Writer) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, f := range v.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := &tar.Header{Name: f.Path, Mode: int64(f.Mode), Size: f.Size, ModTime: v.CreatedAt, Typeflag: tar.TypeReg}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("catalog: artifact %s: %w", f.Path, err)
		}
		if err := s.copyBlob(ctx, tw, f); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("catalog: artifact: %w", err)
	}
	return gz.Close()
}

func (s *Service) copyBlob(ctx context.Context, w io.Writer, f slipway.File) error {
	r, err := s.blobs.Open(ctx, f.SHA256)
	if err != nil {
		return fmt.Errorf("catalog: open %s (%s): %w", f.Path, f.SHA256, err)
	}
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("catalog: read %s (%s): %w", f.Path, f.SHA256, err)
	}
	return nil
}

// Materialize returns a folder holding the version's files, for replicas to run from. It is built once per
// version (verified from the blobs into a temp folder, then renamed into place) and reused afterwards.
func (s *Service) Materialize(ctx context.Context, v *slipway.ModelVersion) (string, error) {
	dir := filepath.Join(s.cache, v.Model, strconv.Itoa(v.Version)+"-"+v.Digest[:12])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("catalog: materialize: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return "", fmt.Errorf("catalog: materialize: %w", err)
	}
	defer s.removeScratch(tmp) // renamed away on success
	for _, f := range v.Files {
		if err := s.writeFile(ctx, tmp, f); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil // another caller won the race with identical content
		}
		return "", fmt.Errorf("catalog: materialize: %w", err)
	}
	return dir, nil
}

func (s *Service) writeFile(ctx context.Context, root string, f slipway.File) error {
	// Paths in a manifest were validated at upload; os.Root still guarantees nothing lands outside root.
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("catalog: materialize: %w", err)
	}
	defer r.Close()
	if dir := filepath.Dir(filepath.FromSlash(f.Path)); dir != "." {
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("catalog: materialize %s: %w", f.Path, err)
		}
	}
	mode := os.FileMode(f.Mode)
	if mode == 0 {
		mode = 0o644
	}
	out, err := r.OpenFile(filepath.FromSlash(f.Path), os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("catalog: materialize %s: %w", f.Path, err)
	}
	if err := s.copyBlob(ctx, out, f); err != nil {
		_ = out.Close() // the partial file goes with its temp folder
		return err
	}
	return out.Close()
}

package batch

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/slipway-ml/slipway"
)

var fileIDPattern = regexp.MustCompile(`^f-[0-9a-f]{20}$`)

func newID(prefix string) string {
	var b [10]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// safeName keeps the base name of an uploaded file with only letters, digits, '.', '_' and '-' (others
// become '_'), at most 100 characters. It is shown to people and gives the format; it is never a path.
func safeName(name string) string {
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), ".")
	if len(s) > 100 {
		s = s[len(s)-100:]
	}
	if s == "" {
		s = "upload"
	}
	return s
}

// formatOf infers an input format from a file name's extension ("" when unknown).
func formatOf(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return FormatCSV
	case ".jsonl", ".ndjson":
		return FormatJSONL
	case ".parquet", ".pq":
		return FormatParquet
	}
	return ""
}

func (s *Service) filesDir() string { return filepath.Join(s.dir, "files") }

// SaveFile stores an uploaded input file: streamed to a temp file under the size cap, fsynced, renamed to its
// id. Nothing is recorded for an upload that fails.
func (s *Service) SaveFile(ctx context.Context, name string, r io.Reader, by string) (*slipway.UploadedFile, error) {
	if err := os.MkdirAll(s.filesDir(), 0o755); err != nil {
		return nil, fmt.Errorf("batch: create files folder: %w", err)
	}
	f := &slipway.UploadedFile{ID: newID("f-"), Name: safeName(name), CreatedBy: by}
	h := sha256.New()
	var n int64
	err := writeAtomic(filepath.Join(s.filesDir(), f.ID), func(w io.Writer) error {
		var err error
		n, err = io.Copy(io.MultiWriter(w, h), io.LimitReader(contextReader{ctx, r}, s.maxUpload+1))
		if err == nil && n > s.maxUpload {
			return slipway.Errorf(slipway.ETOOLARGE, "file larger than the upload limit of %d bytes (server flag --max-upload-bytes)", s.maxUpload)
		}
		return err
	})
	if err != nil {
		var se *slipway.Error
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, fmt.Errorf("batch: store uploaded file: %w", err)
	}
	f.Size, f.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	if err := s.store.CreateUploadedFile(ctx, f); err != nil {
		if rerr := os.Remove(filepath.Join(s.filesDir(), f.ID)); rerr != nil {
			s.log.Warn("remove an uploaded file that was not recorded", "file_id", f.ID, "error", rerr)
		}
		return nil, err
	}
	return f, nil
}

type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Files lists uploaded files.
func (s *Service) Files(ctx context.Context) ([]*slipway.UploadedFile, error) {
	return s.store.FindUploadedFiles(ctx)
}

// File returns one uploaded file's record.
func (s *Service) File(ctx context.Context, id string) (*slipway.UploadedFile, error) {
	if !fileIDPattern.MatchString(id) {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "file %q not found: file ids look like f-0123456789abcdef0123", id)
	}
	return s.store.FindUploadedFile(ctx, id)
}

// DeleteFile removes an uploaded file.
func (s *Service) DeleteFile(ctx context.Context, id string) error {
	if _, err := s.File(ctx, id); err != nil {
		return err
	}
	if err := s.store.DeleteUploadedFile(ctx, id); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.filesDir(), id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("batch: delete file %s: %w", id, err)
	}
	return nil
}

package batch

import (
	"context"
	"crypto/rand"
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

// SaveFile stores an uploaded input file in the artifact store, streamed under the size cap (the store writes
// it atomically and keys it by its SHA-256). Nothing is recorded for an upload that fails.
func (s *Service) SaveFile(ctx context.Context, name string, r io.Reader, by string) (*slipway.UploadedFile, error) {
	f := &slipway.UploadedFile{ID: newID("f-"), Name: safeName(name), CreatedBy: by}
	digest, n, err := s.blobs.Put(ctx, &cappedReader{r: contextReader{ctx, r}, left: s.maxUpload, limit: s.maxUpload})
	if err != nil {
		var se *slipway.Error
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, fmt.Errorf("batch: store uploaded file: %w", err)
	}
	f.Size, f.SHA256 = n, digest
	if err := s.store.CreateUploadedFile(ctx, f); err != nil {
		s.dropBlob(context.WithoutCancel(ctx), digest, "uploaded file "+f.ID)
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

// DeleteFile removes an uploaded file: its record, and its blob unless another record shares it.
func (s *Service) DeleteFile(ctx context.Context, id string) error {
	f, err := s.File(ctx, id)
	if err != nil {
		return err
	}
	if err := s.store.DeleteUploadedFile(ctx, id); err != nil {
		return err
	}
	s.dropBlob(ctx, f.SHA256, "uploaded file "+id)
	return nil
}

// moveLegacyUploads puts the uploads an earlier version kept in DATA/batch/files/ID into the artifact store
// (verified against their recorded digest), so that every server reads them; the local copies go.
func (s *Service) moveLegacyUploads(ctx context.Context) error {
	entries, err := os.ReadDir(s.filesDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("batch: list %s: %w", s.filesDir(), err)
	}
	for _, e := range entries {
		p := filepath.Join(s.filesDir(), e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") { // an upload interrupted by a crash
			if err := os.Remove(p); err != nil {
				s.log.Warn("remove the temp file of an interrupted upload", "path", p, "error", err)
			}
			continue
		}
		if !fileIDPattern.MatchString(e.Name()) {
			continue
		}
		f, err := s.store.FindUploadedFile(ctx, e.Name())
		if slipway.ErrorCode(err) == slipway.ENOTFOUND {
			continue // deleted through another server: the record is the truth, the file is left alone
		} else if err != nil {
			return err
		}
		digest, _, err := s.blobs.PutFile(ctx, p)
		if err != nil {
			return fmt.Errorf("batch: move uploaded file %s to the artifact store: %w", f.ID, err)
		}
		if digest != f.SHA256 {
			s.log.Warn("an uploaded file's content no longer matches its recorded SHA-256: left in place", "file_id", f.ID, "path", p)
			s.dropBlob(ctx, digest, "uploaded file "+f.ID)
			continue
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("batch: remove %s moved to the artifact store: %w", p, err)
		}
		s.log.Info("moved an uploaded file to the artifact store", "file_id", f.ID)
	}
	return nil
}

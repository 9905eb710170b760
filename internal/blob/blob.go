// Package blob is a content-addressed artifact store: on a local folder (Local) or in an S3-compatible bucket
// (S3), behind one Store interface.
//
// Layout under the store directory:
//
//	sha256/ab/cdef...   blob whose SHA-256 is "abcdef..." (two-character fan-out)
//	tmp/                scratch space on the same filesystem; emptied by OpenLocal
//
// Digests are 64 lowercase hex characters with no "sha256:" prefix. Upper-case
// or prefixed digests are refused with ErrInvalid rather than normalised, so
// that every blob has exactly one spelling (in URLs, database rows and logs).
//
// A Local is safe for concurrent use, also by several Local values on the same
// directory, except that OpenLocal empties tmp/: open the store once, at
// startup, before anything writes to it.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

var (
	// ErrNotFound: no blob with that digest.
	ErrNotFound = errors.New("blob: not found")
	// ErrCorrupt: the stored content does not match its digest.
	ErrCorrupt = errors.New("blob: corrupt")
	// ErrInvalid: the digest is not 64 lowercase hex characters.
	ErrInvalid = errors.New("blob: invalid digest")
)

const (
	objectsDir = "sha256"
	tmpDir     = "tmp"
	blobPerm   = 0o444 // blobs are immutable
	dirPerm    = 0o755
)

// Store is what the catalog needs from an artifact store. Every implementation keys blobs by their SHA-256,
// writes atomically (a blob is visible whole or not at all), verifies content on read and reports ErrNotFound,
// ErrCorrupt and ErrInvalid as Local does.
type Store interface {
	Put(ctx context.Context, r io.Reader) (digest string, size int64, err error)
	PutFile(ctx context.Context, path string) (digest string, size int64, err error)
	Open(ctx context.Context, digest string) (io.ReadCloser, error)
	Stat(ctx context.Context, digest string) (size int64, err error)
	Delete(ctx context.Context, digest string) error
	Walk(ctx context.Context, fn func(digest string, size int64) error) error
	// TempDir is local scratch space for spooling uploads; files left there are removed when the store is
	// opened again.
	TempDir() string
}

var _ Store = (*Local)(nil)

// Local stores blobs in a local directory.
type Local struct {
	dir     string
	objects string
	tmp     string
}

// OpenLocal opens (creating if needed) the store in dir, and removes
// anything left in dir/tmp by a crash.
func OpenLocal(dir string) (*Local, error) {
	s := &Local{
		dir:     dir,
		objects: filepath.Join(dir, objectsDir),
		tmp:     filepath.Join(dir, tmpDir),
	}
	for _, d := range []string{s.objects, s.tmp} {
		if err := os.MkdirAll(d, dirPerm); err != nil {
			return nil, fmt.Errorf("blob: open store: %w", err)
		}
	}
	if err := emptyDir(s.tmp); err != nil {
		return nil, err
	}
	return s, nil
}

// emptyDir removes what a crash left in a scratch directory.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("blob: clean tmp: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("blob: clean tmp: %w", err)
		}
	}
	return nil
}

// TempDir returns the store's scratch directory, on the same filesystem as
// the blobs, for callers that spool uploads before Put or PutFile. Files left
// there are removed by the next OpenLocal.
func (s *Local) TempDir() string { return s.tmp }

// checkDigest refuses anything but 64 lowercase hex characters, before a digest becomes a path or a key.
func checkDigest(d string) error {
	if !ValidDigest(d) {
		return fmt.Errorf("%w: %q (want 64 lowercase hex characters)", ErrInvalid, d)
	}
	return nil
}

// ValidDigest reports whether d is 64 lowercase hex characters.
func ValidDigest(d string) bool {
	if len(d) != sha256.Size*2 {
		return false
	}
	for i := range len(d) {
		c := d[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// path returns the blob's file path. It is the only place that builds a
// path from a digest, and it refuses anything not validated.
func (s *Local) path(digest string) (string, error) {
	if err := checkDigest(digest); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, filepath.FromSlash(RelPath(digest))), nil
}

// File returns the path of a stored blob's (read-only) file, for readers that need random access or ranges
// on a local store. Reading it this way does not verify the digest, as reading any local file does not.
func (s *Local) File(digest string) (string, error) {
	p, err := s.path(digest)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, digest)
	} else if err != nil {
		return "", fmt.Errorf("blob: stat: %w", err)
	}
	return p, nil
}

// RelPath is where a blob lives below a store's root: sha256/ab/cdef... The layout is the same on disk, in a
// bucket (below its prefix) and in a backup (below blobs/). The digest must be valid.
func RelPath(digest string) string { return objectsDir + "/" + digest[:2] + "/" + digest[2:] }

// Put stores the content of r and returns its SHA-256 digest and size.
// Content already stored is not written again.
func (s *Local) Put(ctx context.Context, r io.Reader) (digest string, size int64, err error) {
	f, digest, size, err := spool(ctx, s.tmp, r)
	if err != nil {
		return "", 0, err
	}
	if err := s.commit(f, digest, size); err != nil {
		discardTemp(f)
		return "", 0, err
	}
	return digest, size, nil
}

// spool copies r into a new temp file in dir while hashing it: a blob's name is its digest, known only at the
// end. On success the caller owns the open file; on failure nothing is left.
func spool(ctx context.Context, dir string, r io.Reader) (f *os.File, digest string, size int64, err error) {
	f, err = os.CreateTemp(dir, "put-*")
	if err != nil {
		return nil, "", 0, fmt.Errorf("blob: put: %w", err)
	}
	h := sha256.New()
	if size, err = io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r}); err != nil {
		discardTemp(f)
		return nil, "", 0, fmt.Errorf("blob: put: copy: %w", err)
	}
	return f, hex.EncodeToString(h.Sum(nil)), size, nil
}

// discardTemp closes and removes a spooled file whose content is abandoned. Either may fail harmlessly: f may
// be closed already, and a file left behind in the scratch folder is removed when the store is opened again.
func discardTemp(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// commit makes the temp file f durable and moves it into place as digest.
// On success f is closed and gone from tmp/.
func (s *Local) commit(f *os.File, digest string, size int64) error {
	if err := f.Chmod(blobPerm); err != nil {
		return fmt.Errorf("blob: put: chmod: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob: put: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob: put: close: %w", err)
	}
	final, _ := s.path(digest) // digest comes from our own hash
	if st, err := os.Stat(final); err == nil && st.Size() == size {
		return removeTemp(f.Name()) // dedupe
	}
	// Absent, or present with the wrong size (damaged): rename atomically
	// replaces it with the same content.
	if err := s.mkdirFanout(filepath.Dir(final)); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return fmt.Errorf("blob: put: rename: %w", err)
	}
	return syncDir(filepath.Dir(final))
}

func removeTemp(name string) error {
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("blob: put: remove temp: %w", err)
	}
	return nil
}

// mkdirFanout creates sha256/ab/ if needed, durably.
func (s *Local) mkdirFanout(dir string) error {
	err := os.Mkdir(dir, dirPerm)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blob: put: mkdir: %w", err)
	}
	return syncDir(s.objects)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blob: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blob: sync dir %s: %w", dir, err)
	}
	return nil
}

// PutFile stores the content of the file at path.
func (s *Local) PutFile(ctx context.Context, path string) (digest string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("blob: put file: %w", err)
	}
	defer f.Close()
	return s.Put(ctx, f)
}

// Open returns the blob's content. The reader verifies the digest as it
// goes: the Read that reaches the end returns an error wrapping ErrCorrupt
// instead of io.EOF if the content does not match. A caller that stops
// early gets no verification.
func (s *Local) Open(ctx context.Context, digest string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: open: %w", err)
	}
	p, err := s.path(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: open: %w", err)
	}
	return newVerifier(ctx, f, digest), nil
}

// verifier hashes what it reads and checks the digest at EOF.
type verifier struct {
	ctx  context.Context
	r    io.ReadCloser
	h    hash.Hash
	want string
}

func newVerifier(ctx context.Context, r io.ReadCloser, digest string) *verifier {
	return &verifier{ctx: ctx, r: r, h: sha256.New(), want: digest}
}

func (v *verifier) Read(p []byte) (int, error) {
	if err := v.ctx.Err(); err != nil {
		return 0, fmt.Errorf("blob: read: %w", err)
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err != io.EOF {
		return n, err
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
		return n, fmt.Errorf("%w: blob %s has content with digest %s", ErrCorrupt, v.want, got)
	}
	return n, io.EOF
}

func (v *verifier) Close() error { return v.r.Close() }

// Stat returns the blob's size.
func (s *Local) Stat(ctx context.Context, digest string) (size int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("blob: stat: %w", err)
	}
	p, err := s.path(digest)
	if err != nil {
		return 0, err
	}
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return 0, fmt.Errorf("blob: stat: %w", err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, digest)
	}
	return st.Size(), nil
}

// Delete removes the blob. Deleting a missing blob returns ErrNotFound.
func (s *Local) Delete(ctx context.Context, digest string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: delete: %w", err)
	}
	p, err := s.path(digest)
	if err != nil {
		return err
	}
	err = os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return fmt.Errorf("blob: delete: %w", err)
	}
	return nil
}

// Walk calls fn for every stored blob, in digest order, for garbage
// collection. Files that are not blobs are ignored. Blobs deleted during
// the walk may or may not be reported. An error from fn stops the walk and
// is returned unchanged.
func (s *Local) Walk(ctx context.Context, fn func(digest string, size int64) error) error {
	fanouts, err := os.ReadDir(s.objects)
	if err != nil {
		return fmt.Errorf("blob: walk: %w", err)
	}
	for _, d := range fanouts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("blob: walk: %w", err)
		}
		if !d.IsDir() || len(d.Name()) != 2 {
			continue
		}
		if err := s.walkFanout(ctx, d.Name(), fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Local) walkFanout(ctx context.Context, prefix string, fn func(string, int64) error) error {
	entries, err := os.ReadDir(filepath.Join(s.objects, prefix))
	if err != nil {
		return fmt.Errorf("blob: walk: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("blob: walk: %w", err)
		}
		digest := prefix + e.Name()
		if !ValidDigest(digest) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("blob: walk: %w", err)
		}
		if err := fn(digest, info.Size()); err != nil {
			return err
		}
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
)

// kind of a path already claimed in dest.
type kind uint8

const (
	kindFile        kind = iota + 1
	kindDir              // explicit directory entry
	kindImplicitDir      // parent of some entry, no entry of its own yet
)

// extractor holds the state of one Extract call.
type extractor struct {
	ctx     context.Context
	root    *os.Root
	lim     Limits
	ratio   int64 // byte cap derived from MaxRatio and the upload size
	entries int   // entries seen, skipped ones included
	total   int64 // bytes copied so far, skipped data included
	seen    map[string]kind
	files   []Entry
	buf     []byte
}

func newExtractor(ctx context.Context, root *os.Root, lim Limits) *extractor {
	return &extractor{
		ctx:  ctx,
		root: root,
		lim:  lim,
		seen: make(map[string]kind),
		buf:  make([]byte, 32<<10),
	}
}

func (x *extractor) run(src, name string, format Format) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("archive: open upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive: stat upload: %w", err)
	}
	x.ratio = ratioCap(x.lim.MaxRatio, st.Size())
	switch format {
	case FormatZip:
		return x.zip(f, st.Size())
	case FormatTar:
		return x.tar(f)
	case FormatTarGz:
		return x.tarGz(f)
	case FormatFile:
		return x.single(f, name, st.Size())
	}
	return fmt.Errorf("archive: unknown format %q", format)
}

func ratioCap(ratio float64, size int64) int64 {
	c := ratio * float64(size)
	if c >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(int64(c), RatioGraceBytes)
}

// single handles FormatFile: the upload itself is the one file. Its size
// comes from our own stat, so it is used to refuse early like a header size.
func (x *extractor) single(f *os.File, name string, size int64) error {
	if why := validBaseName(name); why != "" {
		return unsafeEntry(name, why)
	}
	if err := x.count(); err != nil {
		return err
	}
	return x.file(name, 0o644, size, f)
}

// cleanup removes everything under dest. dest was empty when Extract
// started, so everything in it was written by this call.
func (x *extractor) cleanup() error {
	dir, err := x.root.Open(".")
	if err != nil {
		return fmt.Errorf("archive: cleanup: %w", err)
	}
	names, err := dir.Readdirnames(-1)
	_ = dir.Close() // opened only to list it
	if err != nil {
		return fmt.Errorf("archive: cleanup: %w", err)
	}
	var errs []error
	for _, n := range names {
		if err := x.root.RemoveAll(n); err != nil {
			errs = append(errs, fmt.Errorf("archive: cleanup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// count registers one more archive entry and checks ctx and MaxFiles.
func (x *extractor) count() error {
	if err := x.ctx.Err(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	x.entries++
	if x.entries > x.lim.MaxFiles {
		return tooLarge("MaxFiles", float64(x.lim.MaxFiles), "")
	}
	return nil
}

// dir creates the directory entry name (already cleaned).
func (x *extractor) dir(name string) error {
	if name == "." {
		return nil // the archive root is dest itself
	}
	switch x.seen[name] {
	case kindFile, kindDir:
		return unsafeEntry(name, "duplicate path")
	}
	if err := x.claimParents(name); err != nil {
		return err
	}
	x.seen[name] = kindDir
	if err := x.root.MkdirAll(filepath.FromSlash(name), 0o755); err != nil {
		return fmt.Errorf("archive: entry %q: create directory: %w", name, err)
	}
	return nil
}

// claimParents checks that no parent of name is a file and records them
// as directories.
func (x *extractor) claimParents(name string) error {
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		switch x.seen[p] {
		case kindFile:
			return unsafeEntry(name, fmt.Sprintf("parent %q is a file", p))
		case 0:
			x.seen[p] = kindImplicitDir
		}
	}
	return nil
}

// file writes the regular file name (already cleaned) from r. declared is
// the size claimed by the archive header, or -1; it is only used to refuse
// early, never trusted.
func (x *extractor) file(name string, mode fs.FileMode, declared int64, r io.Reader) error {
	if x.seen[name] != 0 {
		return unsafeEntry(name, "duplicate path")
	}
	if err := x.claimParents(name); err != nil {
		return err
	}
	x.seen[name] = kindFile
	if err := x.checkDeclared(name, declared); err != nil {
		return err
	}
	perm := fileMode(mode)
	n, err := x.write(name, perm, r)
	if err != nil {
		return err
	}
	x.files = append(x.files, Entry{Path: name, Size: n, Mode: perm})
	return nil
}

func fileMode(m fs.FileMode) fs.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

func (x *extractor) write(name string, perm fs.FileMode, r io.Reader) (int64, error) {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
			return 0, fmt.Errorf("archive: entry %q: create directory: %w", name, err)
		}
	}
	f, err := x.root.OpenFile(filepath.FromSlash(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, fmt.Errorf("archive: entry %q: create: %w", name, err)
	}
	n, err := x.copy(name, f, r)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("archive: entry %q: close: %w", name, cerr)
	}
	return n, err
}

// skip drains the data of a skipped entry, counting it against the limits
// so that a skipped entry cannot be used as a decompression bomb.
func (x *extractor) skip(name string, declared int64, r io.Reader) error {
	if err := x.checkDeclared(name, declared); err != nil {
		return err
	}
	_, err := x.copy(name, io.Discard, r)
	return err
}

// checkDeclared refuses early when a header already claims more than the
// limits allow. Passing it proves nothing: copy enforces the real limits.
func (x *extractor) checkDeclared(name string, declared int64) error {
	if declared < 0 {
		return nil
	}
	return x.overLimit(name, x.total, declared)
}

// overLimit reports the first limit that entry name, holding n bytes, would
// exceed when used bytes were already unpacked before it.
func (x *extractor) overLimit(name string, used, n int64) error {
	switch {
	case n > x.lim.MaxFileBytes:
		return tooLarge("MaxFileBytes", float64(x.lim.MaxFileBytes), name)
	case n > x.lim.MaxUnpackedBytes-used:
		return tooLarge("MaxUnpackedBytes", float64(x.lim.MaxUnpackedBytes), name)
	case n > x.ratio-used:
		return tooLarge("MaxRatio", x.lim.MaxRatio, name)
	}
	return nil
}

// budget is how many bytes entry data may still have.
func (x *extractor) budget() int64 {
	return min(x.lim.MaxFileBytes, x.lim.MaxUnpackedBytes-x.total, x.ratio-x.total)
}

// copy copies r to w, counting the bytes actually read against the limits
// and checking ctx between reads. Read errors wrap ErrInvalid.
func (x *extractor) copy(name string, w io.Writer, r io.Reader) (int64, error) {
	used, budget := x.total, x.budget()
	var n int64
	for {
		if err := x.ctx.Err(); err != nil {
			return n, fmt.Errorf("archive: entry %q: %w", name, err)
		}
		m, rerr := r.Read(x.buf)
		n += int64(m)
		x.total += int64(m)
		if n > budget {
			return n, x.overLimit(name, used, n)
		}
		if _, err := w.Write(x.buf[:m]); err != nil {
			return n, fmt.Errorf("archive: entry %q: write: %w", name, err)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("%w: entry %q: read: %w", ErrInvalid, name, rerr)
		}
	}
}

// Package archive safely unpacks untrusted uploads (model artifacts, job
// projects) into an empty directory.
//
// Each entry is validated before it is written, and all file creation
// goes through an [os.Root] opened on the destination, so no entry can escape
// it even if validation had a bug. Sizes in archive headers are only ever used
// to refuse early: the limits are enforced on the bytes actually copied.
//
// On any error Extract removes everything it wrote, leaving dest empty.
//
// Entries skipped on purpose (they still count towards MaxFiles and, for tar,
// their data towards the byte limits):
//   - macOS resource forks under a top-level "__MACOSX/" directory;
//   - the archive root itself ("./" or "." directory entries);
//   - tar PAX global headers (metadata such as the commit id written by
//     git archive, not files).
//
// All links (symbolic and hard) are refused, even ones that would stay inside
// dest: it is the simplest rule that is obviously safe.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// Sentinel errors. Every error returned because of the upload's content wraps
// exactly one of them, so callers can answer with a client error; anything
// else (disk full, permissions) is a server-side failure.
var (
	// ErrUnsafe is wrapped by every refusal due to hostile content (path
	// traversal, links, device files, duplicates...). The message names the
	// entry and the reason.
	ErrUnsafe = errors.New("archive: unsafe content")
	// ErrTooLarge is wrapped by every limit refusal; the concrete error is a
	// *LimitError naming the limit and its value.
	ErrTooLarge = errors.New("archive: too large")
	// ErrInvalid is wrapped when the upload is not a readable archive:
	// corrupt data, encrypted zip entries, unsupported compression.
	ErrInvalid = errors.New("archive: invalid archive")
)

// Limits bounds what Extract will unpack. A zero or negative field means the
// default from DefaultLimits, so a zero Limits{} never disables protection.
type Limits struct {
	MaxFiles         int     // default 10_000; counts every entry, directories included
	MaxUnpackedBytes int64   // default 2 GiB, total of all regular files
	MaxFileBytes     int64   // default 1 GiB, one file
	MaxRatio         float64 // default 200: unpacked bytes / upload bytes (bomb guard), see RatioGraceBytes
}

// RatioGraceBytes is the unpacked size below which MaxRatio is not enforced,
// so that tiny, highly compressible uploads (a 300-byte tar.gz holding 100 KiB
// of text) are not mistaken for bombs.
const RatioGraceBytes = 1 << 20

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxFiles:         10_000,
		MaxUnpackedBytes: 2 << 30,
		MaxFileBytes:     1 << 30,
		MaxRatio:         200,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxUnpackedBytes <= 0 {
		l.MaxUnpackedBytes = d.MaxUnpackedBytes
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = d.MaxRatio
	}
	return l
}

// LimitError reports which limit an upload exceeded. It wraps ErrTooLarge.
type LimitError struct {
	Limit string  // field name in Limits: "MaxFiles", "MaxFileBytes", "MaxUnpackedBytes" or "MaxRatio"
	Value float64 // the limit's value
	Entry string  // entry being processed, "" when not entry specific
}

func (e *LimitError) Error() string {
	var b strings.Builder
	b.WriteString("archive: too large: ")
	if e.Entry != "" {
		fmt.Fprintf(&b, "entry %q: ", e.Entry)
	}
	fmt.Fprintf(&b, "%s (limit %s=%s); an operator can raise this limit with the server's flag",
		limitWhat[e.Limit], e.Limit, formatValue(e.Value))
	return b.String()
}

// Unwrap makes errors.Is(err, ErrTooLarge) true.
func (e *LimitError) Unwrap() error { return ErrTooLarge }

var limitWhat = map[string]string{
	"MaxFiles":         "too many entries",
	"MaxFileBytes":     "file exceeds the per-file size limit in bytes",
	"MaxUnpackedBytes": "total unpacked size exceeds the limit in bytes",
	"MaxRatio":         "unpacked size is too large compared to the upload size (possible archive bomb)",
}

func formatValue(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%f", v), "0"), ".")
}

func tooLarge(limit string, value float64, entry string) error {
	return &LimitError{Limit: limit, Value: value, Entry: entry}
}

func unsafeEntry(name, why string) error {
	return fmt.Errorf("%w: entry %q: %s", ErrUnsafe, name, why)
}

// Entry is one regular file written by Extract.
type Entry struct {
	Path string      // slash-separated, relative to dest, cleaned
	Size int64       // bytes actually written
	Mode fs.FileMode // 0644, or 0755 when the archive marked it executable
}

// Extract unpacks the file at src into dest, which must be an existing, empty
// directory. The format is found with Detect. name is the uploaded file name;
// it is only used for FormatFile, as the single file's name, and must be a
// plain base name. Extract returns the regular files written, sorted by Path.
func Extract(ctx context.Context, src, name, dest string, lim Limits) ([]Entry, error) {
	format, err := Detect(src)
	if err != nil {
		return nil, err
	}
	return extractAs(ctx, src, name, dest, lim, format)
}

func extractAs(ctx context.Context, src, name, dest string, lim Limits, format Format) ([]Entry, error) {
	if err := checkEmptyDir(dest); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("archive: open destination: %w", err)
	}
	defer root.Close()
	x := newExtractor(ctx, root, lim.withDefaults())
	if err := x.run(src, name, format); err != nil {
		return nil, errors.Join(err, x.cleanup())
	}
	slices.SortFunc(x.files, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return x.files, nil
}

func checkEmptyDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("archive: open destination: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("archive: read destination: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("archive: destination %s is not empty", dir)
	}
	return nil
}

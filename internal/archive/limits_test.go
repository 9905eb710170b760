package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// zeroBombTarGz returns a tar.gz holding one file of size zero bytes,
// built from repeated gzip members (a valid multistream gzip) so that the
// test never compresses the full size: ~1 KiB per MiB of zeros.
func zeroBombTarGz(t *testing.T, size int64) []byte {
	t.Helper()
	const chunk = 1 << 20
	if size%chunk != 0 {
		t.Fatalf("size must be a multiple of %d", chunk)
	}
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if hdr.Len() != 512 { // WriteHeader writes through; no Flush, the data is faked below
		t.Fatalf("tar header is %d bytes", hdr.Len())
	}
	zeros := gzipBytes(t, make([]byte, chunk))
	var out bytes.Buffer
	out.Write(gzipBytes(t, hdr.Bytes()))
	for range size / chunk {
		out.Write(zeros)
	}
	out.Write(gzipBytes(t, make([]byte, 1024))) // end-of-archive marker
	return out.Bytes()
}

func TestZeroBombIsValid(t *testing.T) {
	// The generator itself must produce an archive that a permissive
	// reader accepts, or TestExtractBomb would prove nothing.
	data := zeroBombTarGz(t, 4<<20)
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, tr)
	if err != nil || n != 4<<20 || hdr.Size != n {
		t.Fatalf("copied %d (header %d): %v", n, hdr.Size, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("want clean end of archive, got %v", err)
	}
}

func TestExtractBomb(t *testing.T) {
	data := zeroBombTarGz(t, 1<<30)
	if len(data) > 2<<20 {
		t.Fatalf("bomb is %d bytes, want it small", len(data))
	}
	s := newSandbox(t, "bomb.tar.gz", data)
	_, err := Extract(context.Background(), s.src, "bomb.tar.gz", s.dest, DefaultLimits())
	var le *LimitError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &le) || le.Limit != "MaxRatio" {
		t.Fatalf("err = %v, want MaxRatio LimitError", err)
	}
	if !strings.Contains(err.Error(), "limit MaxRatio=200") {
		t.Errorf("message does not name the limit and value: %v", err)
	}
	t.Log(err)
	s.assertDestEmpty(t)
	s.assertNothingOutside(t)
}

// TestCopyEnforcesLimits drives the byte counter directly, with no header
// size to refuse early (declared = -1), as when headers lie.
func TestCopyEnforcesLimits(t *testing.T) {
	tests := []struct {
		name    string
		lim     Limits
		srcSize int64
		files   []int64
		want    string
	}{
		{"per file", Limits{MaxFileBytes: 1000}, 1 << 30, []int64{5000}, "MaxFileBytes"},
		{"total", Limits{MaxUnpackedBytes: 1000}, 1 << 30, []int64{600, 600}, "MaxUnpackedBytes"},
		{"ratio", Limits{MaxRatio: 3}, 1 << 20, []int64{2 << 20, 2 << 20}, "MaxRatio"},
		{"ratio grace", Limits{MaxRatio: 1}, 10, []int64{RatioGraceBytes + 1}, "MaxRatio"},
		{"within limits", Limits{MaxFileBytes: 1000, MaxUnpackedBytes: 2000}, 1 << 30, []int64{1000, 1000}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			root, err := os.OpenRoot(dest)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			x := newExtractor(context.Background(), root, tt.lim.withDefaults())
			x.ratio = ratioCap(x.lim.MaxRatio, tt.srcSize)
			for i, size := range tt.files {
				err = x.file(fmt.Sprintf("f%d", i), 0o644, -1, io.LimitReader(zeroReader{}, size))
				if err != nil {
					break
				}
			}
			var le *LimitError
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (!errors.As(err, &le) || le.Limit != tt.want):
				t.Fatalf("err = %v, want %s", err, tt.want)
			}
			limit := min(x.lim.MaxUnpackedBytes, x.ratio)
			if x.total > limit+int64(len(x.buf)) {
				t.Errorf("read %d bytes, limit %d: counter not enforced while copying", x.total, limit)
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestExtractByteLimits(t *testing.T) {
	kb := strings.Repeat("k", 1024)
	tests := []struct {
		name, upload string
		data         []byte
		lim          Limits
		want         string
	}{
		{"tar per file", "p.tar", buildTar(t, tarEnt{Name: "a", Body: "ok"}, tarEnt{Name: "b", Body: kb + kb}), Limits{MaxFileBytes: 1024}, "MaxFileBytes"},
		{"tar total", "p.tar", buildTar(t, tarEnt{Name: "a", Body: kb}, tarEnt{Name: "b", Body: kb}), Limits{MaxUnpackedBytes: 1500}, "MaxUnpackedBytes"},
		{"zip per file", "p.zip", buildZip(t, zipEnt{Name: "a", Body: "ok"}, zipEnt{Name: "b", Body: kb + kb}), Limits{MaxFileBytes: 1024}, "MaxFileBytes"},
		{"zip total", "p.zip", buildZip(t, zipEnt{Name: "a", Body: kb}, zipEnt{Name: "b", Body: kb}), Limits{MaxUnpackedBytes: 1500}, "MaxUnpackedBytes"},
		{"single file per file", "model.onnx", []byte(kb + kb), Limits{MaxFileBytes: 1024}, "MaxFileBytes"},
		{"single file total", "model.onnx", []byte(kb + kb), Limits{MaxUnpackedBytes: 1024}, "MaxUnpackedBytes"},
		{"skipped entry counts", "p.tar", buildTar(t, tarEnt{Name: "a", Body: "ok"}, tarEnt{Name: "__MACOSX/big", Body: kb + kb}), Limits{MaxUnpackedBytes: 1024}, "MaxUnpackedBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t, tt.upload, tt.data)
			_, err := Extract(context.Background(), s.src, tt.upload, s.dest, tt.lim)
			var le *LimitError
			if !errors.Is(err, ErrTooLarge) || !errors.As(err, &le) || le.Limit != tt.want {
				t.Fatalf("err = %v, want %s", err, tt.want)
			}
			if !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "=1") {
				t.Errorf("message lacks limit and value: %v", err)
			}
			t.Log(err)
			s.assertDestEmpty(t)
			s.assertNothingOutside(t)
		})
	}
}

func manyFilesZip(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range n {
		if _, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("f/%d", i), Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func manyFilesTarGz(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for i := range n {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f/%d", i), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractMaxFiles(t *testing.T) {
	tests := []struct {
		name, upload string
		data         []byte
		lim          Limits
	}{
		{"zip 100k", "p.zip", manyFilesZip(t, 100_000), Limits{}},
		// Streaming tar writes the first MaxFiles entries before it can
		// refuse; a lower limit keeps the test quick on slow filesystems.
		{"tar.gz 100k", "p.tgz", manyFilesTarGz(t, 100_000), Limits{MaxFiles: 1_000}},
		{"dirs count", "p.tar", buildTar(t, tarEnt{Name: "a/", Type: tar.TypeDir}, tarEnt{Name: "b/", Type: tar.TypeDir}, tarEnt{Name: "a/x", Body: "x"}), Limits{MaxFiles: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t, tt.upload, tt.data)
			_, err := Extract(context.Background(), s.src, tt.upload, s.dest, tt.lim)
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != "MaxFiles" {
				t.Fatalf("err = %v, want MaxFiles", err)
			}
			t.Log(err)
			s.assertDestEmpty(t)
			s.assertNothingOutside(t)
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	if got := (Limits{}).withDefaults(); got != DefaultLimits() {
		t.Fatalf("zero Limits = %+v, want defaults", got)
	}
	custom := Limits{MaxFiles: 1, MaxUnpackedBytes: 2, MaxFileBytes: 3, MaxRatio: 4}
	if got := custom.withDefaults(); got != custom {
		t.Fatalf("custom Limits changed: %+v", got)
	}
}

// cancelAfter is a context whose Err reports Canceled after n calls, to
// cancel deterministically in the middle of an extraction.
type cancelAfter struct {
	context.Context
	n atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestExtractCanceled(t *testing.T) {
	data := happyTar(t)
	for _, calls := range []int64{0, 3, 6} {
		t.Run(fmt.Sprintf("after %d checks", calls), func(t *testing.T) {
			ctx := &cancelAfter{Context: context.Background()}
			ctx.n.Store(calls)
			s := newSandbox(t, "p.tar", data)
			_, err := Extract(ctx, s.src, "p.tar", s.dest, Limits{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			s.assertDestEmpty(t)
			s.assertNothingOutside(t)
		})
	}
}

func TestExtractDestination(t *testing.T) {
	data := buildTar(t, tarEnt{Name: "a", Body: "a"})
	tests := []struct {
		name  string
		setup func(t *testing.T, dest string) string
	}{
		{"not empty", func(t *testing.T, dest string) string {
			mustWrite(t, filepath.Join(dest, "keep"), []byte("mine"))
			return dest
		}},
		{"missing", func(t *testing.T, dest string) string { return filepath.Join(dest, "missing") }},
		{"is a file", func(t *testing.T, dest string) string {
			p := filepath.Join(dest, "file")
			mustWrite(t, p, nil)
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t, "p.tar", data)
			dest := tt.setup(t, s.dest)
			if _, err := Extract(context.Background(), s.src, "p.tar", dest, Limits{}); err == nil {
				t.Fatal("want error")
			}
			if _, err := os.Stat(filepath.Join(s.dest, "a")); err == nil {
				t.Fatal("extracted into an unusable destination")
			}
			if b, err := os.ReadFile(filepath.Join(s.dest, "keep")); err == nil && string(b) != "mine" {
				t.Fatal("existing file modified")
			}
		})
	}
}

func TestExtractSingleFileName(t *testing.T) {
	for _, name := range []string{"", ".", "..", "../model.onnx", "a/model.onnx", `a\model.onnx`, "/model.onnx", "C:model.onnx", "m\x00.onnx"} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			s := newSandbox(t, "upload.bin", []byte("weights"))
			_, err := Extract(context.Background(), s.src, name, s.dest, Limits{})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("err = %v, want ErrUnsafe", err)
			}
			s.assertDestEmpty(t)
			s.assertNothingOutside(t)
		})
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string // want "" means refused
	}{
		{"a.txt", "a.txt"},
		{"./a.txt", "a.txt"},
		{"dir/", "dir"},
		{"./", "."},
		{".", "."},
		{"a/b/c", "a/b/c"},
		{"..a/b..", "..a/b.."},
		{"C", "C"},
		{"ab:c", "ab:c"},
		{"a:b", ""},
		{"././a", ""},
		{"../a", ""},
		{"a/..", ""},
		{"a/../b", ""},
		{"/a", ""},
		{"//a", ""},
		{`a\b`, ""},
		{"C:/a", ""},
		{"c:", ""},
		{"a\x00", ""},
		{"", ""},
		{"a//b", ""},
		{"a/./b", ""},
		{strings.Repeat("n", 255), strings.Repeat("n", 255)},
		{strings.Repeat("n", 256), ""},
		{strings.Repeat("n/", 2048) + "n", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			got, err := cleanName(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("cleanName = %q, %v; want ErrUnsafe", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("cleanName = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

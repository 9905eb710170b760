package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// tarEnt describes one entry of a test tar. Type defaults to TypeReg and
// Size to len(Body).
type tarEnt struct {
	Name     string
	Type     byte
	Body     string
	Linkname string
	Mode     int64
}

func buildTar(tb testing.TB, ents ...tarEnt) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{
			Name:     e.Name,
			Typeflag: e.Type,
			Linkname: e.Linkname,
			Mode:     e.Mode,
			Size:     int64(len(e.Body)),
		}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Name: e.Name, Typeflag: e.Type, PAXRecords: map[string]string{"comment": e.Body}}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatalf("tar header %q: %v", e.Name, err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				tb.Fatalf("tar body %q: %v", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatalf("tar close: %v", err)
	}
	return buf.Bytes()
}

func gzipBytes(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// zipEnt describes one entry of a test zip. Mode 0 means 0644 (or a
// directory when Name ends in "/").
type zipEnt struct {
	Name  string
	Body  string
	Mode  fs.FileMode
	Flags uint16
}

func buildZip(tb testing.TB, ents ...zipEnt) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		fh := &zip.FileHeader{Name: e.Name, Method: zip.Deflate, Flags: e.Flags}
		if e.Mode != 0 {
			fh.SetMode(e.Mode)
		}
		w, err := zw.CreateHeader(fh)
		if err != nil {
			tb.Fatalf("zip header %q: %v", e.Name, err)
		}
		if _, err := w.Write([]byte(e.Body)); err != nil {
			tb.Fatalf("zip body %q: %v", e.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		tb.Fatalf("zip close: %v", err)
	}
	return buf.Bytes()
}

// sandbox is the on-disk layout of one extraction test:
//
//	parent/upload/<name>       the upload
//	parent/d1/d2/dest/         the (empty) destination
//	parent/outside/sentinel    must never change
//
// dest is nested so that "../../x" still lands inside parent, where
// assertNothingOutside can see it.
type sandbox struct {
	parent, src, dest string
}

const sentinel = "do not touch"

func newSandbox(tb testing.TB, name string, data []byte) sandbox {
	tb.Helper()
	parent := tb.TempDir()
	s := sandbox{
		parent: parent,
		src:    filepath.Join(parent, "upload", name),
		dest:   filepath.Join(parent, "d1", "d2", "dest"),
	}
	for _, d := range []string{filepath.Dir(s.src), s.dest, filepath.Join(parent, "outside")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	mustWrite(tb, s.src, data)
	mustWrite(tb, filepath.Join(parent, "outside", "sentinel"), []byte(sentinel))
	return s
}

func mustWrite(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// outsidePaths lists every path under parent that is not dest or below it,
// minus the sandbox's own files. It must always be empty.
func (s sandbox) outsidePaths(tb testing.TB) []string {
	tb.Helper()
	expected := []string{".", "upload", "upload/" + filepath.Base(s.src), "d1", "d1/d2", "d1/d2/dest", "outside", "outside/sentinel"}
	var extra []string
	err := filepath.WalkDir(s.parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.parent, p)
		rel = filepath.ToSlash(rel)
		if rel == "d1/d2/dest" && d.IsDir() {
			return filepath.SkipDir
		}
		if !slices.Contains(expected, rel) {
			extra = append(extra, rel)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.parent, "outside", "sentinel"))
	if err != nil || string(got) != sentinel {
		extra = append(extra, "outside/sentinel modified")
	}
	return extra
}

func (s sandbox) assertNothingOutside(tb testing.TB) {
	tb.Helper()
	if extra := s.outsidePaths(tb); len(extra) > 0 {
		tb.Fatalf("written outside dest: %q", extra)
	}
}

func (s sandbox) assertDestEmpty(tb testing.TB) {
	tb.Helper()
	names, err := os.ReadDir(s.dest)
	if err != nil {
		tb.Fatal(err)
	}
	if len(names) > 0 {
		tb.Fatalf("dest not empty after refusal: %v", names)
	}
}

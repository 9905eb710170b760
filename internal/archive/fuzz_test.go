package archive

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// FuzzExtractTar feeds arbitrary bytes to the tar extractor and checks the
// safety invariants: nothing is ever written outside dest, a refused
// archive leaves dest empty, and an accepted one holds only regular files
// and directories.
func FuzzExtractTar(f *testing.F) {
	for _, data := range hostileTars(f) {
		f.Add(data)
	}
	f.Add(happyTar(f))
	f.Add(buildTar(f, tarEnt{Name: "a/b/c.txt", Body: "abc"}, tarEnt{Name: "a/b/", Type: 0x35}))
	lim := Limits{MaxFiles: 100, MaxFileBytes: 1 << 20, MaxUnpackedBytes: 4 << 20, MaxRatio: 1000}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t, "p.tar", data)
		entries, err := extractAs(context.Background(), s.src, "p.tar", s.dest, lim, FormatTar)
		s.assertNothingOutside(t)
		assertNoAbsEvil(t)
		if err != nil {
			s.assertDestEmpty(t)
			return
		}
		assertOnlyPlainFiles(t, s.dest, entries)
	})
}

func assertOnlyPlainFiles(t *testing.T, dest string, entries []Entry) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type().IsRegular():
			files++
		case !d.IsDir():
			return errors.New(p + ": not a regular file or directory: " + d.Type().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != len(entries) {
		t.Fatalf("%d files on disk, %d entries returned", files, len(entries))
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(e.Path))); err != nil {
			t.Fatalf("returned entry %q: %v", e.Path, err)
		}
	}
}

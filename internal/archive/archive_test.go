package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	tarData := buildTar(t, tarEnt{Name: "a.txt", Body: "a"})
	tests := []struct {
		name string
		data []byte
		want Format
	}{
		{"zip", buildZip(t, zipEnt{Name: "a.txt", Body: "a"}), FormatZip},
		{"empty zip", buildZip(t), FormatZip},
		{"tar", tarData, FormatTar},
		{"tar.gz", gzipBytes(t, tarData), FormatTarGz},
		{"gzip of non-tar", gzipBytes(t, []byte("just text")), FormatFile},
		{"gzip magic then garbage", []byte{0x1f, 0x8b, 0xff, 0xff}, FormatFile},
		{"onnx-like binary", []byte{0x08, 0x07, 0x12, 0x04}, FormatFile},
		{"python", []byte("print('hi')\n"), FormatFile},
		{"empty", nil, FormatFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			mustWrite(t, p, tt.data)
			got, err := Detect(p)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Detect = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDetectMissing(t *testing.T) {
	if _, err := Detect(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("want error for missing file")
	}
}

// happyTar is a typical project archive as written by `tar -C dir -cf - .`,
// plus the metadata entries Extract must skip.
func happyTar(t testing.TB) []byte {
	long := strings.Repeat("d", 120) + "/file.txt"
	return buildTar(t,
		tarEnt{Name: "pax_global_header", Type: tar.TypeXGlobalHeader, Body: "commit 1234"},
		tarEnt{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		tarEnt{Name: "./train.py", Body: "print('train')\n"},
		tarEnt{Name: "./bin/", Type: tar.TypeDir, Mode: 0o755},
		tarEnt{Name: "./bin/run.sh", Body: "#!/bin/sh\n", Mode: 0o700},
		tarEnt{Name: "./empty/", Type: tar.TypeDir},
		tarEnt{Name: "./" + long, Body: "long"},
		tarEnt{Name: "__MACOSX/._train.py", Body: "resource fork"},
	)
}

func happyWant() map[string]Entry {
	long := strings.Repeat("d", 120) + "/file.txt"
	return map[string]Entry{
		"train.py":   {Path: "train.py", Size: 15, Mode: 0o644},
		"bin/run.sh": {Path: "bin/run.sh", Size: 10, Mode: 0o755},
		long:         {Path: long, Size: 4, Mode: 0o644},
	}
}

func TestExtractHappy(t *testing.T) {
	zipData := buildZip(t,
		zipEnt{Name: "train.py", Body: "print('train')\n"},
		zipEnt{Name: "bin/", Mode: fs.ModeDir | 0o755},
		zipEnt{Name: "bin/run.sh", Body: "#!/bin/sh\n", Mode: 0o755},
		zipEnt{Name: "./empty/"},
		zipEnt{Name: strings.Repeat("d", 120) + "/file.txt", Body: "long"},
		zipEnt{Name: "__MACOSX/._train.py", Body: "resource fork"},
		zipEnt{Name: "__MACOSX/../../evil", Body: "skipped, never written"},
	)
	tests := []struct {
		name   string
		upload string
		data   []byte
		want   map[string]Entry
		dirs   []string
	}{
		{"zip", "project.zip", zipData, happyWant(), []string{"empty"}},
		{"tar", "project.tar", happyTar(t), happyWant(), []string{"empty"}},
		{"tar.gz", "project.tgz", gzipBytes(t, happyTar(t)), happyWant(), []string{"empty"}},
		{"empty zip", "e.zip", buildZip(t), map[string]Entry{}, nil},
		{"single file", "model.onnx", []byte("onnx bytes"), map[string]Entry{
			"model.onnx": {Path: "model.onnx", Size: 10, Mode: 0o644},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t, tt.upload, tt.data)
			got, err := Extract(context.Background(), s.src, tt.upload, s.dest, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, s.dest, got, tt.want)
			for _, d := range tt.dirs {
				if st, err := os.Stat(filepath.Join(s.dest, d)); err != nil || !st.IsDir() {
					t.Errorf("directory %s missing: %v", d, err)
				}
			}
			if _, err := os.Stat(filepath.Join(s.dest, "__MACOSX")); !os.IsNotExist(err) {
				t.Errorf("__MACOSX was extracted")
			}
			s.assertNothingOutside(t)
		})
	}
}

func checkEntries(t *testing.T, dest string, got []Entry, want map[string]Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(got), got, len(want))
	}
	for i, e := range got {
		if i > 0 && got[i-1].Path >= e.Path {
			t.Errorf("entries not sorted: %q before %q", got[i-1].Path, e.Path)
		}
		if w := want[e.Path]; e != w {
			t.Errorf("entry %+v, want %+v", e, w)
		}
		st, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(e.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if !st.Mode().IsRegular() || st.Size() != e.Size {
			t.Errorf("%s on disk: mode %v size %d", e.Path, st.Mode(), st.Size())
		}
		if exec := st.Mode()&0o100 != 0; exec != (e.Mode == 0o755) {
			t.Errorf("%s: on-disk mode %v, entry mode %v", e.Path, st.Mode(), e.Mode)
		}
	}
}

// absEvil is where the "absolute" cases would write if they were obeyed.
const absEvil = "/tmp/slipway-archive-test-evil-abs"

// hostileTars are refused with ErrUnsafe. They target parent/outside and
// /etc so that a bug would be visible to the outside-dest check.
func hostileTars(tb testing.TB) map[string][]byte {
	ok := tarEnt{Name: "ok.txt", Body: "fine"}
	return map[string][]byte{
		"slip":                buildTar(tb, ok, tarEnt{Name: "../evil", Body: "x"}),
		"deep slip":           buildTar(tb, ok, tarEnt{Name: "a/../../../../evil", Body: "x"}),
		"dot slash slip":      buildTar(tb, ok, tarEnt{Name: "./../evil", Body: "x"}),
		"absolute":            buildTar(tb, ok, tarEnt{Name: absEvil, Body: "x"}),
		"backslash":           buildTar(tb, ok, tarEnt{Name: `..\..\evil`, Body: "x"}),
		"drive letter":        buildTar(tb, ok, tarEnt{Name: "C:/evil", Body: "x"}),
		"drive relative":      buildTar(tb, ok, tarEnt{Name: "c:evil", Body: "x"}),
		"non canonical":       buildTar(tb, ok, tarEnt{Name: "a//b", Body: "x"}),
		"long name slip":      buildTar(tb, ok, tarEnt{Name: "../" + strings.Repeat("x", 200), Body: "x"}),
		"symlink to passwd":   buildTar(tb, ok, tarEnt{Name: "passwd", Type: tar.TypeSymlink, Linkname: "/etc/passwd"}, tarEnt{Name: "passwd", Body: "root::0:0::/:/bin/sh\n"}),
		"symlink dir escape":  buildTar(tb, ok, tarEnt{Name: "out", Type: tar.TypeSymlink, Linkname: "../../../outside"}, tarEnt{Name: "out/sentinel", Body: "pwned"}),
		"symlink inside":      buildTar(tb, ok, tarEnt{Name: "l", Type: tar.TypeSymlink, Linkname: "ok.txt"}),
		"hard link escape":    buildTar(tb, ok, tarEnt{Name: "hl", Type: tar.TypeLink, Linkname: "../../../outside/sentinel"}, tarEnt{Name: "hl", Body: "pwned"}),
		"hard link to passwd": buildTar(tb, ok, tarEnt{Name: "hl", Type: tar.TypeLink, Linkname: "/etc/passwd"}),
		"char device":         buildTar(tb, ok, tarEnt{Name: "null", Type: tar.TypeChar}),
		"block device":        buildTar(tb, ok, tarEnt{Name: "sda", Type: tar.TypeBlock}),
		"fifo":                buildTar(tb, ok, tarEnt{Name: "pipe", Type: tar.TypeFifo}),
		"duplicate file":      buildTar(tb, ok, tarEnt{Name: "./ok.txt", Body: "again"}),
		"dir over file":       buildTar(tb, ok, tarEnt{Name: "ok.txt/", Type: tar.TypeDir}),
		"file under file":     buildTar(tb, ok, tarEnt{Name: "ok.txt/x", Body: "x"}),
		"duplicate dir":       buildTar(tb, ok, tarEnt{Name: "d/", Type: tar.TypeDir}, tarEnt{Name: "d", Type: tar.TypeDir}),
		"file as root":        buildTar(tb, ok, tarEnt{Name: ".", Body: "x"}),
		"unsupported type":    buildTar(tb, ok, tarEnt{Name: "cont", Type: tar.TypeCont}),
	}
}

func TestExtractHostileTar(t *testing.T) {
	for name, tarData := range hostileTars(t) {
		for _, gz := range []bool{false, true} {
			upload, data := "p.tar", tarData
			if gz {
				upload, data = "p.tar.gz", gzipBytes(t, tarData)
			}
			t.Run(fmt.Sprintf("%s/%s", upload, name), func(t *testing.T) {
				s := newSandbox(t, upload, data)
				_, err := Extract(context.Background(), s.src, upload, s.dest, Limits{})
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("err = %v, want ErrUnsafe", err)
				}
				t.Log(err)
				s.assertDestEmpty(t)
				s.assertNothingOutside(t)
				assertNoAbsEvil(t)
			})
		}
	}
}

func assertNoAbsEvil(t *testing.T) {
	t.Helper()
	if _, err := os.Lstat(absEvil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists or cannot be checked: %v", absEvil, err)
	}
}

func hostileZips(tb testing.TB) map[string][]byte {
	ok := zipEnt{Name: "ok.txt", Body: "fine"}
	return map[string][]byte{
		"zip slip":         buildZip(tb, ok, zipEnt{Name: "../evil", Body: "x"}),
		"deep slip":        buildZip(tb, ok, zipEnt{Name: "../../../evil", Body: "x"}),
		"absolute":         buildZip(tb, ok, zipEnt{Name: absEvil, Body: "x"}),
		"backslash":        buildZip(tb, ok, zipEnt{Name: `..\..\evil`, Body: "x"}),
		"drive letter":     buildZip(tb, ok, zipEnt{Name: "C:/evil", Body: "x"}),
		"nul":              buildZip(tb, ok, zipEnt{Name: "ok.txt\x00../../evil", Body: "x"}),
		"symlink escape":   buildZip(tb, ok, zipEnt{Name: "out", Mode: fs.ModeSymlink | 0o777, Body: "../../../outside"}, zipEnt{Name: "out/sentinel", Body: "pwned"}),
		"symlink passwd":   buildZip(tb, ok, zipEnt{Name: "passwd", Mode: fs.ModeSymlink | 0o777, Body: "/etc/passwd"}, zipEnt{Name: "passwd", Body: "pwned"}),
		"device":           buildZip(tb, ok, zipEnt{Name: "sda", Mode: fs.ModeDevice | 0o600}),
		"char device":      buildZip(tb, ok, zipEnt{Name: "null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600}),
		"fifo":             buildZip(tb, ok, zipEnt{Name: "pipe", Mode: fs.ModeNamedPipe | 0o600}),
		"socket":           buildZip(tb, ok, zipEnt{Name: "sock", Mode: fs.ModeSocket | 0o600}),
		"duplicate":        buildZip(tb, ok, zipEnt{Name: "ok.txt", Body: "again"}),
		"dot duplicate":    buildZip(tb, ok, zipEnt{Name: "./ok.txt", Body: "again"}),
		"file under file":  buildZip(tb, ok, zipEnt{Name: "ok.txt/x", Body: "x"}),
		"non canonical":    buildZip(tb, ok, zipEnt{Name: "a/./b", Body: "x"}),
		"dot dot dir only": buildZip(tb, ok, zipEnt{Name: "../"}),
		"file as root":     buildZip(tb, ok, zipEnt{Name: ".", Body: "x"}),
	}
}

func TestExtractHostileZip(t *testing.T) {
	for name, data := range hostileZips(t) {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t, "p.zip", data)
			_, err := Extract(context.Background(), s.src, "p.zip", s.dest, Limits{})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("err = %v, want ErrUnsafe", err)
			}
			t.Log(err)
			s.assertDestEmpty(t)
			s.assertNothingOutside(t)
			assertNoAbsEvil(t)
		})
	}
}

// rawZip writes one entry with caller-chosen header fields, for archives
// that lie or use unsupported features.
func rawZip(t *testing.T, fh *zip.FileHeader, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	ok, err := zw.Create("ok.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ok.Write([]byte("fine")); err != nil {
		t.Fatal(err)
	}
	w, err := zw.CreateRaw(fh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// deflated returns the raw deflate stream of data, as stored in a zip.
func deflated(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "x", Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.File[0].OpenRaw()
	if err != nil {
		t.Fatal(err)
	}
	raw := new(bytes.Buffer)
	if _, err := raw.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	return raw.Bytes()
}

func TestExtractInvalid(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 64<<10)
	raw := deflated(t, big)
	lyingZip := func(claimed uint64) []byte {
		return rawZip(t, &zip.FileHeader{
			Name: "lies.bin", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(big),
			CompressedSize64: uint64(len(raw)), UncompressedSize64: claimed,
		}, raw)
	}
	okTar := buildTar(t, tarEnt{Name: "ok.txt", Body: "fine"}, tarEnt{Name: "big.bin", Body: string(big)})
	hdrEnd := len(okTar) - len(big) - 1024 // start of big.bin's data (before the 1024-byte trailer)
	truncated := okTar[:hdrEnd+10]
	zeroSize := bytes.Clone(okTar)
	// Claim size 0 for big.bin: its data is then parsed as the next header.
	copy(zeroSize[hdrEnd-512+124:], "00000000000\x00")
	fixTarChecksum(zeroSize[hdrEnd-512 : hdrEnd])
	tests := []struct {
		name, upload string
		data         []byte
	}{
		{"zip header claims fewer bytes", "p.zip", lyingZip(10)},
		{"zip header claims more bytes", "p.zip", lyingZip(uint64(len(big)) + 1)},
		{"zip encrypted", "p.zip", buildZip(t, zipEnt{Name: "ok.txt", Body: "x"}, zipEnt{Name: "secret", Body: "x", Flags: 0x1})},
		{"zip unsupported method", "p.zip", rawZip(t, &zip.FileHeader{Name: "bz", Method: 12, UncompressedSize64: 3, CompressedSize64: 3}, []byte("BZh"))},
		{"zip truncated", "p.zip", buildZip(t, zipEnt{Name: "ok.txt", Body: "x"})[:40]},
		{"tar truncated inside data", "p.tar", truncated},
		{"tar.gz truncated inside data", "p.tgz", gzipBytes(t, truncated)},
		{"tar header claims 0 bytes", "p.tar", zeroSize},
		{"gzip corrupt after header", "p.tgz", corruptGzip(t, okTar)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t, tt.upload, tt.data)
			f, err := Detect(s.src)
			if err != nil {
				t.Fatal(err)
			}
			if f == FormatFile {
				t.Fatalf("test archive detected as a plain file")
			}
			_, err = Extract(context.Background(), s.src, tt.upload, s.dest, Limits{})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			t.Log(err)
			s.assertDestEmpty(t)
			s.assertNothingOutside(t)
		})
	}
}

func fixTarChecksum(hdr []byte) {
	copy(hdr[148:156], "        ")
	var sum int
	for _, b := range hdr {
		sum += int(b)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// corruptGzip keeps the gzip header and the first compressed bytes intact
// (so Detect still sees a tar) and garbles the rest.
func corruptGzip(t *testing.T, data []byte) []byte {
	t.Helper()
	gz := gzipBytes(t, data)
	for i := len(gz) / 2; i < len(gz); i++ {
		gz[i] ^= 0x5a
	}
	return gz
}

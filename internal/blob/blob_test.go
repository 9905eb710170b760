package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func open(t *testing.T) (*Local, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s Store, data []byte) string {
	t.Helper()
	d, n, err := s.Put(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || d != sum(data) {
		t.Fatalf("Put = %s, %d; want %s, %d", d, n, sum(data), len(data))
	}
	return d
}

func readAll(s Store, digest string) ([]byte, error) {
	rc, err := s.Open(context.Background(), digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func assertTmpEmpty(t *testing.T, s Store) {
	t.Helper()
	entries, err := os.ReadDir(s.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Fatalf("tmp not empty: %v", entries)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello")},
		{"1 MiB", randomBytes(1 << 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := open(t)
			d := put(t, s, tt.data)
			if _, err := os.Stat(filepath.Join(dir, "sha256", d[:2], d[2:])); err != nil {
				t.Fatalf("blob not at fan-out path: %v", err)
			}
			got, err := readAll(s, d)
			if err != nil || !bytes.Equal(got, tt.data) {
				t.Fatalf("read back %d bytes, err %v", len(got), err)
			}
			size, err := s.Stat(context.Background(), d)
			if err != nil || size != int64(len(tt.data)) {
				t.Fatalf("Stat = %d, %v", size, err)
			}
			assertTmpEmpty(t, s)
		})
	}
}

func TestPutFile(t *testing.T) {
	s, _ := open(t)
	data := []byte("model weights")
	p := filepath.Join(s.TempDir(), "upload")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	d, n, err := s.PutFile(context.Background(), p)
	if err != nil || d != sum(data) || n != int64(len(data)) {
		t.Fatalf("PutFile = %s, %d, %v", d, n, err)
	}
	if _, _, err := s.PutFile(context.Background(), filepath.Join(s.TempDir(), "missing")); err == nil {
		t.Fatal("want error for missing file")
	}
}

func TestDedupe(t *testing.T) {
	s, dir := open(t)
	data := []byte("same content")
	d := put(t, s, data)
	p := filepath.Join(dir, "sha256", d[:2], d[2:])
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, data)
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("second Put replaced the stored blob")
	}
	assertTmpEmpty(t, s)
}

func TestPutRepairsWrongSize(t *testing.T) {
	s, dir := open(t)
	data := []byte("content that gets truncated")
	d := put(t, s, data)
	p := filepath.Join(dir, "sha256", d[:2], d[2:])
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(s, d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated blob: err = %v, want ErrCorrupt", err)
	}
	put(t, s, data)
	if got, err := readAll(s, d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after re-Put: %q, %v", got, err)
	}
}

func TestCorruptDetectedOnRead(t *testing.T) {
	s, dir := open(t)
	data := randomBytes(100_000)
	d := put(t, s, data)
	p := filepath.Join(dir, "sha256", d[:2], d[2:])
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{data[50_000] ^ 0xff}, 50_000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(s, d)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if len(got) != len(data) {
		t.Fatalf("read %d bytes before the error, want %d", len(got), len(data))
	}
	// Stat only checks presence and size.
	if size, err := s.Stat(context.Background(), d); err != nil || size != int64(len(data)) {
		t.Fatalf("Stat = %d, %v", size, err)
	}
}

func TestInvalidDigest(t *testing.T) {
	s, _ := open(t)
	valid := put(t, s, []byte("x"))
	tests := []string{
		"",
		"../x",
		"abc",
		valid[:63],
		valid + "0",
		strings.ToUpper(valid), // refused, not normalised: one spelling per blob
		"sha256:" + valid,
		strings.Repeat("../", 21) + "a",
		valid[:62] + "/x",
		valid[:63] + "g",
		valid[:63] + "\x00",
		valid[:61] + "é",
	}
	ctx := context.Background()
	for _, d := range tests {
		t.Run(fmt.Sprintf("%q", d), func(t *testing.T) {
			if _, err := s.Open(ctx, d); !errors.Is(err, ErrInvalid) {
				t.Errorf("Open: err = %v, want ErrInvalid", err)
			}
			if _, err := s.Stat(ctx, d); !errors.Is(err, ErrInvalid) {
				t.Errorf("Stat: err = %v, want ErrInvalid", err)
			}
			if err := s.Delete(ctx, d); !errors.Is(err, ErrInvalid) {
				t.Errorf("Delete: err = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := s.Stat(ctx, valid); err != nil {
		t.Fatalf("valid blob affected: %v", err)
	}
}

func TestNotFoundAndDelete(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	d := put(t, s, []byte("to delete"))
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	missing := sum([]byte("never stored"))
	for _, digest := range []string{d, missing} {
		if _, err := s.Open(ctx, digest); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Stat(ctx, digest); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat: err = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, digest); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete: err = %v, want ErrNotFound", err)
		}
	}
}

func TestOpenLocalRemovesStaleTemp(t *testing.T) {
	s, dir := open(t)
	d := put(t, s, []byte("keep me"))
	for _, p := range []string{"put-123", "upload-456", "spool/nested/file"} {
		full := filepath.Join(s.TempDir(), p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s2.TempDir() != filepath.Join(dir, "tmp") {
		t.Fatalf("TempDir = %s", s2.TempDir())
	}
	assertTmpEmpty(t, s2)
	if got, err := readAll(s2, d); err != nil || string(got) != "keep me" {
		t.Fatalf("blob lost: %q, %v", got, err)
	}
}

func TestConcurrentPuts(t *testing.T) {
	s, dir := open(t)
	same := randomBytes(256 << 10)
	const n = 16
	var wg sync.WaitGroup
	digests := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			data := same
			if i%4 == 3 {
				data = []byte(fmt.Sprintf("different %d", i))
			}
			digests[i], _, errs[i] = s.Put(context.Background(), bytes.NewReader(data))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		if i%4 != 3 && digests[i] != sum(same) {
			t.Fatalf("Put %d: digest %s", i, digests[i])
		}
	}
	d := sum(same)
	entries, err := os.ReadDir(filepath.Join(dir, "sha256", d[:2]))
	if err != nil {
		t.Fatal(err)
	}
	matches := 0
	for _, e := range entries {
		if e.Name() == d[2:] {
			matches++
		}
	}
	if matches != 1 {
		t.Fatalf("%d copies of the blob", matches)
	}
	if got, err := readAll(s, d); err != nil || !bytes.Equal(got, same) {
		t.Fatalf("read back: %v", err)
	}
	assertTmpEmpty(t, s)
}

// cancelingReader cancels its context after the first chunk, so Put fails
// in the middle of the copy with a temp file already written.
type cancelingReader struct {
	cancel context.CancelFunc
	calls  int
}

func (r *cancelingReader) Read(p []byte) (int, error) {
	r.calls++
	if r.calls > 1 {
		r.cancel()
	}
	clear(p)
	return len(p), nil
}

func TestPutCanceled(t *testing.T) {
	s, dir := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, err := s.Put(ctx, &cancelingReader{cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertTmpEmpty(t, s)
	fanouts, err := os.ReadDir(filepath.Join(dir, "sha256"))
	if err != nil || len(fanouts) != 0 {
		t.Fatalf("something was stored: %v, %v", fanouts, err)
	}
}

func TestWalk(t *testing.T) {
	s, dir := open(t)
	ctx := context.Background()
	want := map[string]int64{}
	for _, c := range []string{"a", "bb", "ccc"} {
		want[put(t, s, []byte(c))] = int64(len(c))
	}
	// Things that are not blobs are ignored.
	junk := []string{"sha256/zz/notablob", "sha256/README", "sha256/ab/short", "tmp/put-1"}
	for _, j := range junk {
		p := filepath.Join(dir, filepath.FromSlash(j))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int64{}
	var order []string
	err := s.Walk(ctx, func(d string, size int64) error {
		got[d] = size
		order = append(order, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Walk = %v, want %v", got, want)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Fatalf("not in digest order: %v", order)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err = s.Walk(ctx, func(string, int64) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("Walk with failing fn: err %v after %d calls", err, calls)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Walk(canceled, func(string, int64) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Walk: %v", err)
	}
}

func TestValidDigest(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{sum(nil), true},
		{strings.Repeat("0", 64), true},
		{strings.Repeat("f", 64), true},
		{strings.Repeat("F", 64), false},
		{strings.Repeat("0", 63), false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ValidDigest(tt.in); got != tt.want {
				t.Fatalf("ValidDigest(%q) = %v", tt.in, got)
			}
		})
	}
}

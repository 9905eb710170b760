package onnx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("lib"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLibraryPath(t *testing.T) {
	home := t.TempDir()
	cached := filepath.Join(home, ".cache", "slipway", "onnxruntime-1.30.0", "libonnxruntime.so.1")
	explicit := touch(t, filepath.Join(t.TempDir(), "custom.so"))
	tests := []struct {
		name    string
		env     string
		cache   bool
		want    string
		wantErr string
	}{
		{"env wins", explicit, true, explicit, ""},
		{"env must exist", "/nonexistent/libonnxruntime.so.1", true, "", "SLIPWAY_ORT_LIB=/nonexistent/libonnxruntime.so.1 is not a file"},
		{"install-ort cache", "", true, cached, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOME", home)
			t.Setenv("SLIPWAY_ORT_LIB", tt.env)
			os.Remove(cached)
			if tt.cache {
				touch(t, cached)
			}
			got, err := LibraryPath()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestLibraryNotFound(t *testing.T) {
	dir := t.TempDir()
	_, err := firstFile([]string{filepath.Join(dir, "a.so"), dir}) // a directory is not a library
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	const want = "ONNX Runtime not found: run scripts/install-ort.sh (or make ort), or set SLIPWAY_ORT_LIB=/path/to/libonnxruntime.so.1"
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err, want)
	}
	lib := touch(t, filepath.Join(dir, "b.so"))
	if got, err := firstFile([]string{filepath.Join(dir, "a.so"), lib}); err != nil || got != lib {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		version string
		ok      bool
	}{
		{"1.30.0", true}, {"1.24.1", true}, {"1.24", true}, {"2.0.0", true},
		{"1.23.2", false}, {"1.16.3", false}, {"0.99.0", false}, {"", false}, {"garbage", false},
	}
	for _, tt := range tests {
		err := checkVersion("/lib/x.so", tt.version)
		if (err == nil) != tt.ok {
			t.Errorf("checkVersion(%q) = %v, want ok=%v", tt.version, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "needs ONNX Runtime ≥ 1.24") || err != nil && !strings.Contains(err.Error(), "scripts/install-ort.sh") {
			t.Errorf("error does not say what is needed and how to fix it: %v", err)
		}
	}
}

//go:build cgo

package onnx

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const fakeORT = `
#include <stdint.h>
#include <stddef.h>
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} OrtApiBase;
static const void *get_api(uint32_t v) { return NULL; }
static const char *version(void) { return "1.16.3"; }
static const OrtApiBase base = { get_api, version };
const OrtApiBase *OrtGetApiBase(void) { return &base; }
`

// buildSharedLib compiles C source into a shared library with the cgo C compiler.
func buildSharedLib(t *testing.T, src string) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	dir := t.TempDir()
	c := filepath.Join(dir, "lib.c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(dir, "lib.so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", so, c).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot build a shared library with %s: %v\n%s", cc, err, out)
	}
	return so
}

func TestLibraryVersion(t *testing.T) {
	old := buildSharedLib(t, fakeORT)
	v, err := libraryVersion(old)
	if err != nil || v != "1.16.3" {
		t.Fatalf("libraryVersion = %q, %v", v, err)
	}
	err = checkVersion(old, v)
	if err == nil || !strings.Contains(err.Error(), "ONNX Runtime 1.16.3 at "+old+" is too old") {
		t.Fatalf("checkVersion: %v", err)
	}

	other := buildSharedLib(t, "int unrelated(void) { return 1; }")
	if _, err := libraryVersion(other); err == nil || !strings.Contains(err.Error(), "not an ONNX Runtime library") {
		t.Fatalf("unrelated library: %v", err)
	}
	if _, err := libraryVersion(filepath.Join(t.TempDir(), "missing.so")); err == nil {
		t.Fatal("missing library: no error")
	}
}

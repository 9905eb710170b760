// Package onnx runs ONNX models in-process with ONNX Runtime through
// github.com/yalue/onnxruntime_go (cgo). The shared library is loaded at run time:
// LibraryPath finds it, Init loads it once per process, Load opens a model.
//
// Built without cgo, the package compiles but Init and Load return an error.
package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotFound is returned by LibraryPath when no ONNX Runtime library can be found.
var ErrNotFound = errors.New("ONNX Runtime not found: run scripts/install-ort.sh (or make ort), or set SLIPWAY_ORT_LIB=/path/to/libonnxruntime.so.1")

// ortVersion is the ONNX Runtime version scripts/install-ort.sh installs.
const ortVersion = "1.30.0"

// minMajor and minMinor: onnxruntime_go v1.27 asks for C API version 24 (ORT 1.24).
const minMajor, minMinor = 1, 24

// LibraryPath finds libonnxruntime: $SLIPWAY_ORT_LIB if set (the file must exist),
// else $HOME/.cache/slipway/onnxruntime-1.30.0/libonnxruntime.so.1, else
// libonnxruntime.so.1 or libonnxruntime.so in /usr/lib, then /usr/local/lib.
func LibraryPath() (string, error) {
	if p := os.Getenv("SLIPWAY_ORT_LIB"); p != "" {
		if !isFile(p) {
			return "", fmt.Errorf("ONNX Runtime not found: SLIPWAY_ORT_LIB=%s is not a file", p)
		}
		return p, nil
	}
	return firstFile(defaultCandidates())
}

func defaultCandidates() []string {
	var c []string
	if home, err := os.UserHomeDir(); err == nil {
		c = append(c, filepath.Join(home, ".cache", "slipway", "onnxruntime-"+ortVersion, "libonnxruntime.so.1"))
	}
	for _, dir := range []string{"/usr/lib", "/usr/local/lib"} {
		c = append(c, filepath.Join(dir, "libonnxruntime.so.1"), filepath.Join(dir, "libonnxruntime.so"))
	}
	return c
}

func firstFile(candidates []string) (string, error) {
	for _, p := range candidates {
		if isFile(p) {
			return p, nil
		}
	}
	return "", ErrNotFound
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// checkVersion accepts ONNX Runtime version strings ("1.30.0") at or above 1.24.
func checkVersion(path, version string) error {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) >= 2 {
		major, err1 := strconv.Atoi(parts[0])
		minor, err2 := strconv.Atoi(parts[1])
		if err1 == nil && err2 == nil && (major > minMajor || major == minMajor && minor >= minMinor) {
			return nil
		}
	}
	return tooOld(path, version)
}

func tooOld(path, version string) error {
	return fmt.Errorf("onnx: ONNX Runtime %s at %s is too old: Slipway needs ONNX Runtime ≥ %d.%d; "+
		"run scripts/install-ort.sh (or make ort) to install %s, or set SLIPWAY_ORT_LIB=/path/to/libonnxruntime.so.1",
		version, path, minMajor, minMinor, ortVersion)
}

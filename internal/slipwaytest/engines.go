package slipwaytest

import (
	"os"
	"path/filepath"
	"testing"
)

// EnginesDir is where scripts/engines.sh builds the engines the tests start.
func EnginesDir() string {
	if d := os.Getenv("SLIPWAY_ENGINES"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "slipway", "engines")
}

// Engine returns the folder of an engine built by `scripts/engines.sh NAME`. A missing engine fails the test
// rather than skipping it: `make test` builds every engine first, so absence is a setup defect, not a reason
// for a test to pass without running.
func Engine(tb testing.TB, name string) string {
	tb.Helper()
	dir := filepath.Join(EnginesDir(), name)
	if _, err := os.Stat(filepath.Join(dir, ".built")); err != nil {
		tb.Fatalf("engine %s is not built: run scripts/engines.sh %s (make test does it)", name, name)
	}
	return dir
}

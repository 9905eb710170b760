package catalog

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway/internal/archive"
)

// An MLflow model directory one level down in an archive becomes the version's top; several, or files beside
// it, are refused with the paths named; anything else is left alone.
func TestHoistMLflowFolder(t *testing.T) {
	cases := []struct {
		name  string
		files []string
		want  []string // the entries after, sorted; nil with err
		err   string
	}{
		{"one folder", []string{"model/MLmodel", "model/model.pkl", "model/code/loader.py"},
			[]string{"MLmodel", "code/loader.py", "model.pkl"}, ""},
		{"a folder holding its own name", []string{"model/MLmodel", "model/model/weights.bin"},
			[]string{"MLmodel", "model/weights.bin"}, ""},
		{"MLmodel at the top", []string{"MLmodel", "model.pkl", "extra/MLmodel"},
			[]string{"MLmodel", "extra/MLmodel", "model.pkl"}, ""},
		{"score.py at the top", []string{"score.py", "sub/MLmodel"}, []string{"score.py", "sub/MLmodel"}, ""},
		{"two levels down is not looked at", []string{"a/b/MLmodel"}, []string{"a/b/MLmodel"}, ""},
		{"several models", []string{"a/MLmodel", "b/MLmodel"}, nil, "several MLflow models (a/MLmodel, b/MLmodel)"},
		{"files beside the folder", []string{"model/MLmodel", "README.md"}, nil, "an MLflow model in model/ and also files outside it (README.md)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var entries []archive.Entry
			for _, f := range tc.files {
				path := filepath.Join(dir, filepath.FromSlash(f))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(f), 0o644); err != nil {
					t.Fatal(err)
				}
				entries = append(entries, archive.Entry{Path: f, Size: int64(len(f)), Mode: 0o644})
			}
			got, err := hoistMLflowFolder(dir, entries)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, e := range got {
				paths = append(paths, e.Path)
				// Each entry is where its path says, with the content it had under its old path.
				body, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(e.Path)))
				if err != nil || !strings.HasSuffix(string(body), e.Path) {
					t.Fatalf("%s: %q %v", e.Path, body, err)
				}
			}
			slices.Sort(paths)
			if !slices.Equal(paths, tc.want) {
				t.Fatalf("entries %v, want %v", paths, tc.want)
			}
			left, _ := os.ReadDir(dir)
			for _, l := range left {
				if strings.HasPrefix(l.Name(), ".hoist-") {
					t.Fatalf("%s left behind", l.Name())
				}
			}
		})
	}
}

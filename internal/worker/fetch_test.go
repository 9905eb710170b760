package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileServer serves files by path like the server's replica-files route, checking the replica token.
func fileServer(t *testing.T, secret []byte, files map[string][]byte, downloads *atomic.Int32) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, ok := workerproto.ParseReplicaToken(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		if !ok || scope.Verify(secret, time.Now()) != nil {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		seg := r.URL.EscapedPath()[strings.LastIndexByte(r.URL.EscapedPath(), '/')+1:]
		name, _ := url.PathUnescape(seg)
		b, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		downloads.Add(1)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchModelVerifiesCachesAndStaysInside(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	files := map[string][]byte{"model.onnx": []byte("the model"), "sub/extra.txt": []byte("extra")}
	var downloads atomic.Int32
	srv := fileServer(t, secret, files, &downloads)
	api := &apiClient{spec: slipway.ReplicaSpec{Server: srv.URL, Deployment: "d", Version: 1, Secret: secret}, http: srv.Client()}
	m := &versionManifest{Runtime: "onnx"}
	for p, b := range files {
		m.Files = append(m.Files, slipway.File{Path: p, Size: int64(len(b)), SHA256: digest(b)})
	}
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	if err := fetchModel(ctx, api, m, dir, log); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "sub", "extra.txt")); string(got) != "extra" || downloads.Load() != 2 {
		t.Fatalf("after the first fetch: %q, %d downloads", got, downloads.Load())
	}
	// Cached and intact: nothing is downloaded.
	if err := fetchModel(ctx, api, m, dir, log); err != nil || downloads.Load() != 2 {
		t.Fatalf("second fetch: %v, %d downloads", err, downloads.Load())
	}
	// Tampered with: downloaded again.
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("evil model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fetchModel(ctx, api, m, dir, log); err != nil || downloads.Load() != 3 {
		t.Fatalf("fetch over a tampered file: %v, %d downloads", err, downloads.Load())
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "model.onnx")); string(got) != "the model" {
		t.Fatalf("model.onnx = %q", got)
	}
	// The server sends other bytes than the manifest says: refused, nothing is left in place.
	bad := &versionManifest{Files: []slipway.File{{Path: "model.onnx", Size: 9, SHA256: digest([]byte("other one"))}}}
	if err := os.Remove(filepath.Join(dir, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := fetchModel(ctx, api, bad, dir, log); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("digest mismatch: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); !os.IsNotExist(err) {
		t.Errorf("a file that failed its digest was left in place: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".part-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
	// Paths that leave the folder are refused before anything is written.
	for _, p := range []string{"../escape", "/etc/passwd", "a/../../x"} {
		esc := &versionManifest{Files: []slipway.File{{Path: p, Size: 1, SHA256: digest([]byte("x"))}}}
		if err := fetchModel(ctx, api, esc, dir, log); err == nil || !strings.Contains(err.Error(), "not a path inside") {
			t.Errorf("path %q: %v", p, err)
		}
	}
	// A wrong secret: the server's refusal is the error.
	wrong := &apiClient{spec: api.spec, http: srv.Client()}
	wrong.spec.Secret = []byte("another secret, 32 bytes long!!!")
	if err := os.Remove(filepath.Join(dir, "sub", "extra.txt")); err != nil {
		t.Fatal(err)
	}
	err := fetchModel(ctx, wrong, m, dir, log)
	if !refused(err) {
		t.Errorf("wrong secret: %v, want a refusal", err)
	}
}

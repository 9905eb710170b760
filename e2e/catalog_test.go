package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func assertReady(t *testing.T, v *slipway.ModelVersion) {
	t.Helper()
	if v.State != slipway.VersionReady {
		t.Fatalf("version %s:%d is %s, want READY; checks: %+v", v.Model, v.Version, v.State, v.Checks)
	}
	for _, c := range v.Checks {
		if !c.Passed {
			t.Fatalf("check %s failed: %s", c.ID, c.Message)
		}
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// The README's path: push both examples with the CLI, see them READY, alias, pull, compare digests.
func TestCatalogEndToEnd(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--alias", "champion")
	if code != 0 {
		t.Fatalf("push sklearn: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"READY", "model.sample_prediction", "python.environment"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	out, errOut, code = s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json"))
	if code != 0 {
		t.Fatalf("push onnx: exit %d\n%s\n%s", code, out, errOut)
	}

	c := s.Client()
	ctx := context.Background()
	sk, err := c.GetVersion(ctx, "churn", "@champion")
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, sk)
	if sk.Version != 1 || sk.Runtime != "python" || sk.Environment == nil || sk.Environment.Packages["scikit-learn"] == "" {
		t.Fatalf("sklearn version: %+v", sk)
	}
	on, err := c.GetVersion(ctx, "churn-onnx", "1")
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, on)
	if on.Runtime != "onnx" || on.InputSchema == nil || on.InputSchema.Columns[0].Name != "features" {
		t.Fatalf("onnx version schema: %+v", on.InputSchema)
	}

	models, total, err := c.ListModels(ctx, client.ListModelsOptions{Limit: 10})
	if err != nil || total != 2 || len(models) != 2 {
		t.Fatalf("list: %v models (total %d), %v", len(models), total, err)
	}

	// A second push is version 2; the alias moves atomically and keeps history.
	if _, _, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatal("second push failed")
	}
	if out, errOut, code := s.cli("models", "alias", "churn", "2", "champion"); code != 0 {
		t.Fatalf("alias: %s %s", out, errOut)
	}
	alias, err := c.GetAlias(ctx, "churn", "champion")
	if err != nil || alias.Version != 2 || len(alias.History) != 2 {
		t.Fatalf("alias: %+v, %v", alias, err)
	}

	// Pull verifies every file; the pulled files equal the local ones byte for byte.
	dest := filepath.Join(t.TempDir(), "pulled")
	if out, errOut, code := s.cli("models", "pull", "churn@champion", dest); code != 0 {
		t.Fatalf("pull: %s %s", out, errOut)
	}
	for _, f := range sk.Files {
		local := examplePath("sklearn-churn", filepath.FromSlash(f.Path))
		if got := sha256File(t, filepath.Join(dest, filepath.FromSlash(f.Path))); got != f.SHA256 || got != sha256File(t, local) {
			t.Errorf("%s: pulled %s, catalog %s", f.Path, got, f.SHA256)
		}
	}

	// The same bytes, stored once: the second version's files have the same digests.
	v2, err := c.GetVersion(ctx, "churn", "2")
	if err != nil {
		t.Fatal(err)
	}
	if v2.Digest != sk.Digest {
		t.Errorf("identical artifacts got different manifest digests %s vs %s", v2.Digest, sk.Digest)
	}
}

// tarGz builds a tar.gz from name → content.
func tarGz(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

const goodScore = `
import os
def load_model():
    return {"bias": 1}
def predict(data, model=None):
    rows = data["data"]
    return {"prediction": [model["bias"] + len(r) for r in rows]}
`

func pythonArtifact(score string, extra map[string]string) map[string]string {
	files := map[string]string{"score.py": score, "runtime.yaml": "MODEL_ARTIFACT_VERSION: '3.0'\nMODEL_DEPLOYMENT:\n  INFERENCE_PYTHON_VERSION: '3.11'\n"}
	for k, v := range extra {
		if v == "" {
			delete(files, k)
		} else {
			files[k] = v
		}
	}
	return files
}

func pythonMeta(extra string) *slipway.VersionMetadata {
	var m slipway.VersionMetadata
	body := `{"runtime": "python", "sample_input": {"data": [[1, 2], [3, 4]]},
		"output_schema": {"columns": [{"name": "prediction", "dtype": "int64"}]}` + extra + `}`
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		panic(err)
	}
	return &m
}

func push(t *testing.T, c *client.Client, model string, artifact []byte, filename string, meta *slipway.VersionMetadata) (*slipway.ModelVersion, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return c.PushVersion(ctx, model, bytes.NewReader(artifact), filename, meta, nil, int64(len(artifact)))
}

// Each introspection check, failing on purpose, names itself and says what to do.
func TestIntrospectionChecksFail(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	tests := []struct {
		name     string
		files    map[string]string
		meta     *slipway.VersionMetadata
		check    string
		message  string
		wantPass bool
	}{
		{"good", pythonArtifact(goodScore, nil), pythonMeta(""), "", "", true},
		{"no score.py", pythonArtifact(goodScore, map[string]string{"score.py": "", "model.pkl": "x"}), pythonMeta(""), "artifact.files", "score.py is missing", false},
		{"no runtime.yaml nor requirements", pythonArtifact(goodScore, map[string]string{"runtime.yaml": ""}), pythonMeta(""), "artifact.files", "neither runtime.yaml nor requirements.txt", false},
		{"runtime.yaml not yaml", pythonArtifact(goodScore, map[string]string{"runtime.yaml": "a: [unclosed"}), pythonMeta(""), "python.runtime_yaml", "not valid YAML", false},
		{"runtime.yaml without version", pythonArtifact(goodScore, map[string]string{"runtime.yaml": "MODEL_DEPLOYMENT: {}\n"}), pythonMeta(""), "python.runtime_yaml", "MODEL_ARTIFACT_VERSION", false},
		{"score.py syntax error", pythonArtifact("def load_model(:\n", nil), pythonMeta(""), "python.score_py", "does not parse", false},
		{"score.py without predict", pythonArtifact("def load_model():\n    return 1\n", nil), pythonMeta(""), "python.score_py", "predict()", false},
		{"package version mismatch", pythonArtifact(goodScore, map[string]string{"requirements.txt": "numpy==0.0.1\n"}), pythonMeta(""), "python.environment", "numpy 0.0.1 declared, server has", false},
		{"package missing", pythonArtifact(goodScore, nil), pythonMeta(`, "environment": {"packages": {"no-such-package": "1.0"}}`), "python.environment", "no-such-package 1.0 declared, not installed", false},
		{"python version mismatch", pythonArtifact(goodScore, nil), pythonMeta(`, "environment": {"python": "2.7"}`), "python.environment", "python 2.7 declared", false},
		{"mismatch allowed", pythonArtifact(goodScore, nil), pythonMeta(`, "environment": {"python": "2.7"}, "allow_environment_mismatch": true`), "", "", true},
		{"load_model raises", pythonArtifact("def load_model():\n    raise RuntimeError('weights file corrupt')\ndef predict(d, model=None):\n    return d\n", nil), pythonMeta(""), "model.load", "weights file corrupt", false},
		{"predict raises on sample", pythonArtifact("def load_model():\n    return 1\ndef predict(d, model=None):\n    raise ValueError('bad column x')\n", nil), pythonMeta(""), "model.sample_prediction", "bad column x", false},
		{"output does not match schema", pythonArtifact("def load_model():\n    return 1\ndef predict(d, model=None):\n    return {'score': [0.5]}\n", nil), pythonMeta(""), "model.sample_prediction", `output column "prediction" is missing`, false},
		{"output wrong dtype", pythonArtifact("def load_model():\n    return 1\ndef predict(d, model=None):\n    return {'prediction': ['yes']}\n", nil), pythonMeta(""), "model.sample_prediction", "expected an integer", false},
		{"corrupt onnx", map[string]string{"model.onnx": "this is not a protobuf"}, &slipway.VersionMetadata{Runtime: "onnx"}, "model.load", "", false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			model := "check-" + string(rune('a'+i))
			v, err := push(t, c, model, tarGz(t, tc.files), "artifact.tar.gz", tc.meta)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantPass {
				assertReady(t, v)
				return
			}
			if v.State != slipway.VersionFailed {
				t.Fatalf("state %s, want FAILED; checks %+v", v.State, v.Checks)
			}
			for _, ch := range v.Checks {
				if ch.ID == tc.check && !ch.Passed {
					if !strings.Contains(ch.Message, tc.message) {
						t.Fatalf("check %s message %q lacks %q", ch.ID, ch.Message, tc.message)
					}
					return
				}
			}
			t.Fatalf("no failing check %s in %+v", tc.check, v.Checks)
		})
	}
}

// blobState lists what the artifact store holds: blobs and temp files.
func blobState(t *testing.T, dataDir string) (blobs, temps []string) {
	t.Helper()
	filepath.Walk(filepath.Join(dataDir, "blobs"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if strings.Contains(p, string(filepath.Separator)+"tmp"+string(filepath.Separator)) {
				temps = append(temps, p)
			} else {
				blobs = append(blobs, p)
			}
		}
		return nil
	})
	staging, _ := os.ReadDir(filepath.Join(dataDir, "work", "staging"))
	for _, e := range staging {
		temps = append(temps, e.Name())
	}
	return blobs, temps
}

func zipWith(t *testing.T, name, body string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create(name)
	w.Write([]byte(body))
	zw.Close()
	return buf.Bytes()
}

func tarWith(t *testing.T, hdrs []*tar.Header, bodies []string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, h := range hdrs {
		tw.WriteHeader(h)
		if bodies[i] != "" {
			tw.Write([]byte(bodies[i]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func bombTarGz(t *testing.T) []byte {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	const size = 256 << 20
	tw.WriteHeader(&tar.Header{Name: "zeros.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
	zeros := make([]byte, 1<<20)
	for i := 0; i < size/len(zeros); i++ {
		tw.Write(zeros)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func manyFilesTar(t *testing.T, n int) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for i := 0; i < n; i++ {
		tw.WriteHeader(&tar.Header{Name: "f/" + strings.Repeat("x", 3) + string(rune('a'+i%26)) + "/" + strconv.Itoa(i), Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Replace(string(rune(0))+json.Number(jsonInt(i)).String(), "\x00", "", 1))
}

func jsonInt(i int) string { b, _ := json.Marshal(i); return string(b) }

// Hostile archives are refused with a clear error and leave nothing behind: no version, no blob, no temp file.
func TestHostileUploadsLeaveNoTrace(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	tests := []struct {
		name     string
		body     []byte
		filename string
		status   int
		detail   string
	}{
		{"zip slip", zipWith(t, "../../evil.py", "x"), "a.zip", 400, "evil.py"},
		{"tar slip", tarWith(t, []*tar.Header{{Name: "../evil.py", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}}, []string{"x"}), "a.tar", 400, "evil.py"},
		{"absolute path", tarWith(t, []*tar.Header{{Name: "/etc/evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}}, []string{"x"}), "a.tar", 400, "/etc/evil"},
		{"symlink escape", tarWith(t, []*tar.Header{
			{Name: "link", Linkname: "/etc", Typeflag: tar.TypeSymlink},
			{Name: "link/passwd", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}}, []string{"", "x"}), "a.tar", 400, "link"},
		{"hard link", tarWith(t, []*tar.Header{{Name: "h", Linkname: "/etc/passwd", Typeflag: tar.TypeLink}}, []string{""}), "a.tar", 400, "link"},
		{"device file", tarWith(t, []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}, []string{""}), "a.tar", 400, "dev"},
		{"bomb", bombTarGz(t), "bomb.tar.gz", 413, "--max-compression-ratio"},
		{"100k tiny files", manyFilesTar(t, 100_000), "many.tar.gz", 413, "--max-files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := push(t, c, "hostile", tc.body, tc.filename, &slipway.VersionMetadata{Runtime: "onnx"})
			var ce *client.Error
			if err == nil {
				t.Fatal("upload accepted")
			}
			if !asClientError(err, &ce) || ce.Status != tc.status {
				t.Fatalf("err %v, want status %d", err, tc.status)
			}
			if !strings.Contains(ce.Problem.Detail, tc.detail) {
				t.Fatalf("detail %q lacks %q", ce.Problem.Detail, tc.detail)
			}
			blobs, temps := blobState(t, s.dataDir)
			if len(blobs) != 0 || len(temps) != 0 {
				t.Fatalf("left behind: blobs %v temps %v", blobs, temps)
			}
			if _, total, err := c.ListVersions(context.Background(), "hostile", 0, 10); err == nil && total != 0 {
				t.Fatalf("%d versions visible", total)
			}
		})
	}
}

func asClientError(err error, target **client.Error) bool {
	ce, ok := err.(*client.Error)
	if !ok {
		return false
	}
	*target = ce
	return true
}

// Auth: every /api/v1 call needs a valid, unrevoked token with the right role.
func TestAuth(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	admin := s.Client()
	ctx := context.Background()
	viewer, err := admin.CreateToken(ctx, "viewer-1", slipway.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	predictor, err := admin.CreateToken(ctx, "predict-1", slipway.RolePredict)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := admin.CreateToken(ctx, "gone", slipway.RoleEditor)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeToken(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	upload := func(token string) (*http.Response, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		w, _ := mw.CreateFormFile("artifact", "model.onnx")
		w.Write([]byte("x"))
		mw.Close()
		return s.do(t, "POST", "/api/v1/models/m/versions", token, &buf, mw.FormDataContentType())
	}
	tests := []struct {
		name   string
		do     func() (*http.Response, []byte)
		status int
		detail string
	}{
		{"no token", func() (*http.Response, []byte) { return s.do(t, "GET", "/api/v1/models", "", nil, "") }, 401, "missing bearer token"},
		{"wrong token", func() (*http.Response, []byte) { return s.do(t, "GET", "/api/v1/models", "slw_wrong", nil, "") }, 401, "invalid token"},
		{"revoked token", func() (*http.Response, []byte) { return s.do(t, "GET", "/api/v1/models", revoked.Secret, nil, "") }, 401, "revoked"},
		{"viewer reads", func() (*http.Response, []byte) { return s.do(t, "GET", "/api/v1/models", viewer.Secret, nil, "") }, 200, ""},
		{"viewer registers", func() (*http.Response, []byte) { return upload(viewer.Secret) }, 403, "needs role editor"},
		{"viewer lists tokens", func() (*http.Response, []byte) { return s.do(t, "GET", "/api/v1/tokens", viewer.Secret, nil, "") }, 403, "needs role admin"},
		{"predict reads catalog", func() (*http.Response, []byte) { return s.do(t, "GET", "/api/v1/models", predictor.Secret, nil, "") }, 403, "needs role viewer"},
		{"health is public", func() (*http.Response, []byte) { return s.do(t, "GET", "/healthz", "", nil, "") }, 200, ""},
		{"openapi is public", func() (*http.Response, []byte) { return s.do(t, "GET", "/api/v1/openapi.json", "", nil, "") }, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.do()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status >= 400 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("content type %q", ct)
				}
				if !strings.Contains(string(body), tc.detail) {
					t.Fatalf("body %s lacks %q", body, tc.detail)
				}
			}
		})
	}
	// Use is recorded.
	list, err := admin.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range list {
		if tok.Name == "viewer-1" && tok.LastUsedAt == nil {
			t.Fatal("last_used_at not recorded for a token that was used")
		}
	}
	// The token file is private, and only a hash of the secret is stored.
	info, err := os.Stat(filepath.Join(s.dataDir, "admin.token"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode %v, %v", info.Mode(), err)
	}
	db, _ := os.ReadFile(filepath.Join(s.dataDir, "slipway.db"))
	wal, _ := os.ReadFile(filepath.Join(s.dataDir, "slipway.db-wal"))
	if bytes.Contains(db, []byte(s.Token)) || bytes.Contains(wal, []byte(s.Token)) || bytes.Contains(wal, []byte(viewer.Secret)) {
		t.Fatal("a token secret is stored in the database in clear")
	}
}

// SIGKILL in the middle of an upload: after restart no half version is visible and no temp file is left.
func TestKillDuringUpload(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	s := startServer(t, dataDir)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() { // ends when the server dies and the pipe breaks
		mw.WriteField("metadata", `{"runtime": "onnx"}`)
		w, _ := mw.CreateFormFile("artifact", "big.tar.gz")
		chunk := bytes.Repeat([]byte("slipway!"), 8192)
		for {
			if _, err := w.Write(chunk); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	req, _ := http.NewRequest("POST", s.URL+"/api/v1/models/big/versions", pr)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	done := make(chan struct{})
	go func() { http.DefaultClient.Do(req); close(done) }()
	// Wait until the upload is being spooled, then crash the server.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, temps := blobState(t, dataDir); len(temps) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upload never reached the server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	<-done
	pr.Close()

	s2 := startServer(t, dataDir)
	if _, total, err := s2.Client().ListModels(context.Background(), client.ListModelsOptions{Limit: 10}); err != nil || total != 0 {
		t.Fatalf("after restart: %d models, %v", total, err)
	}
	if blobs, temps := blobState(t, dataDir); len(blobs) != 0 || len(temps) != 0 {
		t.Fatalf("after restart: blobs %v temps %v", blobs, temps)
	}
}

func TestSecondServerRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	cmd := exec_(binary, "server", "--data-dir", s.dataDir, "--addr", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("second server started on the same data folder")
	}
	if !strings.Contains(string(out), "in use by another slipway server (pid") {
		t.Fatalf("message: %s", out)
	}
}

// slowScore takes a few seconds in load_model(), like a large model.
const slowScore = `
import time
def load_model():
    time.sleep(3)
    return {"bias": 1}
def predict(data, model=None):
    return {"prediction": [model["bias"] + len(r) for r in data["data"]]}
`

// TestAsyncRegistration: `models push --no-wait` answers once the files are stored, with the version
// REGISTERING, and the checks finish on the server. A registration that a crash (kill -9) or a shutdown
// interrupts is checked again at the next start instead of being lost.
func TestAsyncRegistration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	artifact := filepath.Join(t.TempDir(), "slow.tar.gz")
	if err := os.WriteFile(artifact, tarGz(t, pythonArtifact(slowScore, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(t.TempDir(), "meta.json")
	if err := os.WriteFile(meta, mustJSON(pythonMeta("")), 0o644); err != nil {
		t.Fatal(err)
	}
	pushNoWait := func(s *server) int {
		t.Helper()
		out, errOut, code := s.cli("models", "push", artifact, "--model", "slow", "--metadata", meta, "--no-wait", "-o", "json")
		var v slipway.ModelVersion
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.State != slipway.VersionRegistering || v.Digest == "" {
			t.Fatalf("push --no-wait: exit %d %s %s", code, out, errOut)
		}
		return v.Version
	}
	waitReady := func(s *server, version int) *slipway.ModelVersion {
		t.Helper()
		var v *slipway.ModelVersion
		waitFor(t, "version "+itoa(version)+" READY", 2*time.Minute, func() bool {
			var err error
			v, err = s.Client().GetVersion(context.Background(), "slow", itoa(version))
			return err == nil && v.State != slipway.VersionRegistering
		})
		assertReady(t, v)
		return v
	}

	v1 := pushNoWait(s)
	// Not READY yet: a deployment of it is refused with the state.
	if out, errOut, code := s.cli("deploy", "early", "--model", "slow:"+itoa(v1), "--no-wait"); code == 0 || !strings.Contains(errOut, "REGISTERING") {
		t.Errorf("deploying a REGISTERING version: exit %d %s %s", code, out, errOut)
	}
	waitReady(s, v1)
	if out, errOut, code := s.cli("models", "push", artifact, "--model", "slow", "--no-wait", "--alias", "x"); code == 0 || !strings.Contains(errOut, "--alias needs the checks") {
		t.Errorf("--no-wait --alias: exit %d %s %s", code, out, errOut)
	}
	if resp, body := s.do(t, "POST", "/api/v1/models/slow/versions?wait=maybe", s.Token, strings.NewReader(""), "multipart/form-data; boundary=x"); resp.StatusCode != 400 || !strings.Contains(string(body), "wait must be true or false") {
		t.Errorf("wait=maybe: %d %s", resp.StatusCode, body)
	}

	// kill -9 while the checks run: the next server checks the version again.
	v2 := pushNoWait(s)
	s.Kill()
	s = startServer(t, dir)
	waitReady(s, v2)
	// A graceful shutdown while the checks run: the same.
	v3 := pushNoWait(s)
	s.Stop()
	s = startServer(t, dir)
	if got := waitReady(s, v3); got.Version != 3 {
		t.Errorf("version numbers: %d, %d, %d", v1, v2, got.Version)
	}
	if !strings.Contains(s.Log(), "checking a version whose registration was interrupted") {
		t.Errorf("the restart did not say it checks the interrupted version:\n%s", s.Log())
	}
}

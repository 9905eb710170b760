package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestMain(m *testing.M) {
	time.Local = time.UTC // table output shows local times
	os.Exit(m.Run())
}

// fakeAPI is a small in-memory stand-in for the API: enough routes for the CLI tests, with real problem+json
// errors.
type fakeAPI struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	auth     []string // Authorization headers received
	queries  []string // raw queries of GET /api/v1/models
	models   []*slipway.Model
	pushed   map[string][]byte // files of the last pushed archive, by name
	filename string            // artifact file name of the last push
	meta     *slipway.VersionMetadata
	pushResp *slipway.ModelVersion
	aliases  map[string]int
	version  *slipway.ModelVersion // served by GET .../versions/{version}
	archive  []byte                // served by GET .../artifact
}

func newFakeAPI(tb testing.TB) *fakeAPI {
	f := &fakeAPI{t: tb, aliases: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, slipway.Token{ID: "t1", Name: "admin", Role: slipway.RoleAdmin})
	})
	mux.HandleFunc("GET /api/v1/models", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.queries = append(f.queries, r.URL.RawQuery)
		ms := f.models
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"items": ms, "total": len(ms) + 5, "offset": 0, "limit": 100})
	})
	mux.HandleFunc("GET /api/v1/models/{model}", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, 404, slipway.ENOTFOUND, fmt.Sprintf("model %q not found", r.PathValue("model")))
	})
	mux.HandleFunc("POST /api/v1/models/{model}/versions", f.handlePush)
	mux.HandleFunc("PUT /api/v1/models/{model}/aliases/{alias}", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Version int }
		json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		f.aliases[r.PathValue("alias")] = in.Version
		f.mu.Unlock()
		writeJSON(w, 200, slipway.AliasMove{Model: r.PathValue("model"), Alias: r.PathValue("alias"), Version: in.Version})
	})
	mux.HandleFunc("GET /api/v1/models/{model}/versions/{version}", func(w http.ResponseWriter, r *http.Request) {
		if f.version == nil {
			writeProblem(w, 404, slipway.ENOTFOUND, "version not found")
			return
		}
		writeJSON(w, 200, f.version)
	})
	mux.HandleFunc("GET /api/v1/models/{model}/versions/{version}/artifact", func(w http.ResponseWriter, r *http.Request) {
		if want := fmt.Sprint(f.version.Version); r.PathValue("version") != want {
			writeProblem(w, 400, slipway.EINVALID, "the CLI must pin the version number, got "+r.PathValue("version"))
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(f.archive)
	})
	mux.HandleFunc("POST /api/v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string       `json:"name"`
			Role slipway.Role `json:"role"`
		}
		json.NewDecoder(r.Body).Decode(&in)
		writeJSON(w, 201, slipway.Token{ID: "t2", Name: in.Name, Role: in.Role, Secret: "slw_secret"})
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if !strings.HasPrefix(r.Header.Get("User-Agent"), "slipway-cli/") {
			writeProblem(w, 400, slipway.EINVALID, "bad User-Agent "+r.Header.Get("User-Agent"))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	tb.Cleanup(f.srv.Close)
	return f
}

// handlePush reads the multipart upload and the tar.gz inside it, as the server would.
func (f *fakeAPI) handlePush(w http.ResponseWriter, r *http.Request) {
	mr, err := r.MultipartReader()
	if err != nil {
		writeProblem(w, 400, slipway.EINVALID, err.Error())
		return
	}
	var meta *slipway.VersionMetadata
	var raw []byte
	var filename string
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			writeProblem(w, 400, slipway.EINVALID, err.Error())
			return
		}
		switch part.FormName() {
		case "metadata":
			meta = new(slipway.VersionMetadata)
			if err := json.NewDecoder(part).Decode(meta); err != nil {
				writeProblem(w, 400, slipway.EINVALID, "metadata: "+err.Error())
				return
			}
		case "artifact":
			filename = part.FileName()
			raw, _ = io.ReadAll(part)
		}
	}
	files := map[string][]byte{"(raw)": raw}
	if strings.HasSuffix(filename, ".tar.gz") {
		if files, err = readTarGz(raw); err != nil {
			writeProblem(w, 400, slipway.EINVALID, "artifact: "+err.Error())
			return
		}
	}
	f.mu.Lock()
	f.pushed, f.filename, f.meta = files, filename, meta
	resp := f.pushResp
	f.mu.Unlock()
	writeJSON(w, 201, resp)
}

func readTarGz(b []byte) (map[string][]byte, error) {
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("entry %s has type %c", hdr.Name, hdr.Typeflag)
		}
		out[hdr.Name], _ = io.ReadAll(tr)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "https://slipway.dev/problems/" + code,
		"title": http.StatusText(status), "status": status, "detail": detail, "code": code, "request_id": "req-42"})
}

// cliRun runs the CLI with env as its whole environment and returns stdout, stderr and the exit code.
func cliRun(tb testing.TB, env map[string]string, args ...string) (string, string, int) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return env[k] }}
	code := a.execute(context.Background(), args)
	return stdout.String(), stderr.String(), code
}

// env returns an environment pointing the CLI at api with a token.
func (f *fakeAPI) env() map[string]string {
	return map[string]string{"SLIPWAY_URL": f.srv.URL, "SLIPWAY_TOKEN": "tok"}
}

func writeFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestPushDirectory(t *testing.T) {
	api := newFakeAPI(t)
	api.pushResp = &slipway.ModelVersion{Model: "churn", Version: 3, State: slipway.VersionReady,
		VersionMetadata: slipway.VersionMetadata{Runtime: "python"}, Files: make([]slipway.File, 3), Size: 1234,
		Checks: []slipway.Check{{ID: "load_model", Passed: true, Message: "loaded in 0.2s"}, {ID: "sample_input", Passed: true, Message: "predicted 1 row"}}}
	dir := t.TempDir()
	model := filepath.Join(dir, "churn-model")
	writeFiles(t, model, map[string]string{
		"score.py":              "def predict(x): return x\n",
		"model.pkl":             "pickle",
		"sub/dir/config.json":   "{}",
		"__pycache__/score.pyc": "compiled",
		"sub/__pycache__/x.pyc": "compiled",
		"old.pyc":               "compiled",
		".git/HEAD":             "ref: refs/heads/main",
		"requirements.txt":      "scikit-learn==1.5.0\n",
	})
	metaFile := filepath.Join(dir, "metadata.json")
	writeFiles(t, dir, map[string]string{"metadata.json": `{"runtime": "python", "description": "churn v3"}`})

	stdout, stderr, code := cliRun(t, api.env(), "models", "push", model, "--model", "churn", "--metadata", metaFile, "--alias", "champion")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	want := map[string]string{"score.py": "def predict(x): return x\n", "model.pkl": "pickle", "sub/dir/config.json": "{}",
		"requirements.txt": "scikit-learn==1.5.0\n"}
	if len(api.pushed) != len(want) {
		t.Errorf("server received %v, want %v", slices.Sorted(mapKeys(api.pushed)), slices.Sorted(mapKeys(want)))
	}
	for name, content := range want {
		if got, ok := api.pushed[name]; !ok || string(got) != content {
			t.Errorf("server received %s = %q (present %v), want %q", name, got, ok, content)
		}
	}
	if api.filename != "churn-model.tar.gz" {
		t.Errorf("artifact file name = %q", api.filename)
	}
	if api.meta == nil || api.meta.Description != "churn v3" {
		t.Errorf("metadata = %+v", api.meta)
	}
	if api.aliases["champion"] != 3 {
		t.Errorf("aliases = %v, want champion → 3", api.aliases)
	}
	for _, s := range []string{"Version:  3", "State:    READY", "Aliases:  champion", "ID            PASSED  MESSAGE", "load_model    yes     loaded in 0.2s"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, stdout)
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestPushFailedVersion(t *testing.T) {
	api := newFakeAPI(t)
	api.pushResp = &slipway.ModelVersion{Model: "churn", Version: 4, State: slipway.VersionFailed,
		Checks: []slipway.Check{{ID: "load_model", Passed: true, Message: "ok"}, {ID: "sample_input", Passed: false, Message: "KeyError: 'age'"}}}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"model.onnx": "onnx-bytes"})

	stdout, stderr, code := cliRun(t, api.env(), "models", "push", filepath.Join(dir, "model.onnx"), "--model", "churn", "--alias", "champion")
	if code != 1 {
		t.Errorf("exit %d, want 1 for a FAILED version", code)
	}
	if !strings.Contains(stdout, "sample_input  no      KeyError: 'age'") {
		t.Errorf("the failing check is not printed:\n%s", stdout)
	}
	if want := "Error: version 4 of churn is FAILED: 1 of 2 checks failed; alias \"champion\" was not moved\n"; stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
	if len(api.aliases) != 0 {
		t.Errorf("alias moved to a FAILED version: %v", api.aliases)
	}
	// A single file goes as is, under its own name.
	if api.filename != "model.onnx" || string(api.pushed["(raw)"]) != "onnx-bytes" {
		t.Errorf("server received %q = %q", api.filename, api.pushed["(raw)"])
	}
}

func TestPushRefusesLinks(t *testing.T) {
	api := newFakeAPI(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"score.py": "x"})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	_, stderr, code := cliRun(t, api.env(), "models", "push", dir, "--model", "churn")
	if code != 1 || !strings.Contains(stderr, "is a symbolic link") {
		t.Errorf("exit %d, stderr %q: want a refused link", code, stderr)
	}
}

var testModels = []*slipway.Model{
	{Name: "churn", Description: "d", Tags: map[string]string{"team": "risk", "env": "prod"}, LatestVersion: 3,
		Aliases: map[string]int{"champion": 3, "challenger": 2}, UpdatedAt: time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC)},
	{Name: "fraud", Tags: map[string]string{}, Aliases: map[string]int{}, UpdatedAt: time.Date(2026, 2, 3, 4, 5, 0, 0, time.UTC)},
}

func TestModelsList(t *testing.T) {
	api := newFakeAPI(t)
	api.models = testModels

	t.Run("table", func(t *testing.T) {
		stdout, stderr, code := cliRun(t, api.env(), "models", "list", "--tag", "team=risk", "--name", "ch", "--limit", "2")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		want := "" +
			"NAME   LATEST  ALIASES                  TAGS                UPDATED\n" +
			"churn  3       challenger=2,champion=3  env=prod,team=risk  2026-01-02 15:04\n" +
			"fraud  -       -                        -                   2026-02-03 04:05\n"
		if stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
		}
		if stderr != "1-2 of 7 models: use --offset 2 for more\n" {
			t.Errorf("stderr = %q", stderr)
		}
		if q := api.queries[len(api.queries)-1]; q != "limit=2&name=ch&tag=team%3Drisk" {
			t.Errorf("query = %q", q)
		}
	})

	t.Run("json", func(t *testing.T) {
		stdout, stderr, code := cliRun(t, api.env(), "models", "list", "-o", "json", "--offset", "10")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got struct {
			Items         []*slipway.Model
			Total, Offset int
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
		}
		if len(got.Items) != 2 || got.Items[0].Aliases["champion"] != 3 || got.Total != 7 || got.Offset != 10 {
			t.Errorf("json = %+v", got)
		}
		if q := api.queries[len(api.queries)-1]; q != "limit=100&offset=10" {
			t.Errorf("query = %q", q)
		}
	})
}

// entry is one member of a test archive.
type entry struct {
	name, content string
	typeflag      byte
	linkname      string
}

// tarGz builds a tar.gz of entries, in order.
func tarGz(tb testing.TB, entries ...entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typeflag
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.linkname, Mode: 0o644}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		io.WriteString(tw, e.content)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func manifestOf(files map[string]string) []slipway.File {
	var out []slipway.File
	for _, name := range slices.Sorted(mapKeys(files)) {
		sum := sha256.Sum256([]byte(files[name]))
		out = append(out, slipway.File{Path: name, Size: int64(len(files[name])), SHA256: hex.EncodeToString(sum[:]), Mode: 0o644})
	}
	return out
}

func TestPull(t *testing.T) {
	files := map[string]string{"score.py": "def predict(x): return x\n", "sub/model.pkl": "pickle bytes"}
	good := []entry{{name: "score.py", content: files["score.py"]}, {name: "sub/model.pkl", content: files["sub/model.pkl"]}}
	tests := []struct {
		name    string
		archive []byte
		wantErr string // empty: success
	}{
		{name: "verified", archive: tarGz(t, good...)},
		{name: "tampered file", archive: tarGz(t, good[0], entry{name: "sub/model.pkl", content: "pickle bytez"}),
			wantErr: "Error: pull churn version 3: sha256 mismatch for sub/model.pkl: the manifest says"},
		{name: "truncated file", archive: tarGz(t, good[0], entry{name: "sub/model.pkl", content: "pickle"}),
			wantErr: "size mismatch for sub/model.pkl"},
		{name: "missing file", archive: tarGz(t, good[0]),
			wantErr: "sub/model.pkl is in the version's manifest but missing from the download"},
		{name: "file not in the manifest", archive: tarGz(t, append(good, entry{name: "extra.sh", content: "rm -rf /"})...),
			wantErr: `refusing "extra.sh": it is not in the version's manifest`},
		{name: "dot-dot", archive: tarGz(t, entry{name: "../evil", content: "x"}),
			wantErr: `refusing "../evil": the path leaves the destination`},
		{name: "absolute", archive: tarGz(t, entry{name: "/tmp/evil", content: "x"}),
			wantErr: `refusing "/tmp/evil": absolute path`},
		{name: "symlink", archive: tarGz(t, entry{name: "score.py", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}),
			wantErr: `refusing "score.py": entry type '2' is not a regular file`},
		{name: "not gzip", archive: []byte("<html>"), wantErr: "the download is not a tar.gz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t)
			api.version = &slipway.ModelVersion{Model: "churn", Version: 3, State: slipway.VersionReady, Files: manifestOf(files), Size: 37}
			api.archive = tc.archive
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			stdout, stderr, code := cliRun(t, api.env(), "models", "pull", "churn@champion", dest)
			if tc.wantErr == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				for name, content := range files {
					b, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(name)))
					if err != nil || string(b) != content {
						t.Errorf("%s = %q, %v; want %q", name, b, err, content)
					}
				}
				if !strings.Contains(stdout, "all sha256 digests verified") {
					t.Errorf("stdout = %q", stdout)
				}
				return
			}
			if code != 1 || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.wantErr)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("a failed pull left %v behind", left)
			}
		})
	}

	t.Run("into an existing empty directory", func(t *testing.T) {
		api := newFakeAPI(t)
		api.version = &slipway.ModelVersion{Model: "churn", Version: 3, State: slipway.VersionReady, Files: manifestOf(files)}
		api.archive = tarGz(t, good...)
		dest := t.TempDir()
		t.Chdir(dest)
		if _, stderr, code := cliRun(t, api.env(), "models", "pull", "churn", "."); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		entries, _ := os.ReadDir(dest)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"score.py", "sub"}) {
			t.Errorf("pulled %v", names)
		}
	})

	t.Run("refuses a non-empty directory", func(t *testing.T) {
		api := newFakeAPI(t)
		dest := t.TempDir()
		writeFiles(t, dest, map[string]string{"keep.txt": "mine"})
		_, stderr, code := cliRun(t, api.env(), "models", "pull", "churn:3", dest)
		if code != 1 || !strings.Contains(stderr, "is not empty") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestTokenDiscovery(t *testing.T) {
	api := newFakeAPI(t)
	dataDir := t.TempDir()
	writeFiles(t, dataDir, map[string]string{"admin.token": "  slw_from_data_dir \n"})
	cwd := t.TempDir()
	writeFiles(t, cwd, map[string]string{"slipway-data/admin.token": "slw_from_cwd\n"})
	emptyCwd := t.TempDir()

	tests := []struct {
		name    string
		cwd     string
		env     map[string]string
		args    []string
		want    string // Authorization header
		wantErr string
	}{
		{name: "flag wins", cwd: cwd, env: map[string]string{"SLIPWAY_TOKEN": "slw_env", "SLIPWAY_DATA_DIR": dataDir},
			args: []string{"--token", "slw_flag"}, want: "Bearer slw_flag"},
		{name: "env", cwd: cwd, env: map[string]string{"SLIPWAY_TOKEN": "slw_env", "SLIPWAY_DATA_DIR": dataDir}, want: "Bearer slw_env"},
		{name: "data dir file, trimmed", cwd: cwd, env: map[string]string{"SLIPWAY_DATA_DIR": dataDir}, want: "Bearer slw_from_data_dir"},
		{name: "default data dir in the working directory", cwd: cwd, env: map[string]string{}, want: "Bearer slw_from_cwd"},
		{name: "data dir without a token falls back", cwd: cwd, env: map[string]string{"SLIPWAY_DATA_DIR": emptyCwd}, want: "Bearer slw_from_cwd"},
		{name: "none", cwd: emptyCwd, env: map[string]string{}, wantErr: "Error: no API token: pass --token, set SLIPWAY_TOKEN, or run where the server's admin.token is (slipway-data/admin.token)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(tc.cwd)
			tc.env["SLIPWAY_URL"] = api.srv.URL
			api.auth = nil
			stdout, stderr, code := cliRun(t, tc.env, append(tc.args, "whoami")...)
			if tc.wantErr != "" {
				if code != 1 || stderr != tc.wantErr {
					t.Errorf("exit %d, stderr %q; want %q", code, stderr, tc.wantErr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if len(api.auth) != 1 || api.auth[0] != tc.want {
				t.Errorf("Authorization = %q, want %q", api.auth, tc.want)
			}
			if !strings.HasPrefix(stdout, "Token admin (id t1, role admin) on http://127.0.0.1:") {
				t.Errorf("stdout = %q", stdout)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	api := newFakeAPI(t)
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantStderr string
	}{
		{name: "problem detail", env: api.env(), args: []string{"models", "get", "nope"},
			wantStderr: "Error: model \"nope\" not found\n"},
		{name: "invalid reference", env: api.env(), args: []string{"models", "get", "Churn@x"},
			wantStderr: "Error: invalid model name \"Churn\": use 1-64 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit\n"},
		{name: "wrong arguments", env: api.env(), args: []string{"models", "get"},
			wantStderr: "Error: slipway models get takes one model reference (got 0 arguments)\nRun 'slipway models get --help' for usage.\n"},
		{name: "unknown flag", env: api.env(), args: []string{"models", "list", "--colour"},
			wantStderr: "Error: unknown flag: --colour\nRun 'slipway models list --help' for usage.\n"},
		{name: "missing required flag", env: api.env(), args: []string{"models", "push", "."},
			wantStderr: "Error: required flag(s) \"model\" not set\nRun 'slipway models push --help' for usage.\n"},
		{name: "bad output", env: api.env(), args: []string{"-o", "yaml", "models", "list"},
			wantStderr: "Error: invalid --output \"yaml\": use table or json\nRun 'slipway models list --help' for usage.\n"},
		{name: "bad role", env: api.env(), args: []string{"tokens", "create", "ci", "--role", "root"},
			wantStderr: "Error: invalid role \"root\": use admin, editor, viewer or predict\n"},
		{name: "invalid url", env: map[string]string{"SLIPWAY_URL": "127.0.0.1:8080", "SLIPWAY_TOKEN": "x"}, args: []string{"models", "list"},
			wantStderr: "Error: invalid server URL \"127.0.0.1:8080\" (--url or SLIPWAY_URL): use http://HOST:PORT or https://HOST\n"},
		{name: "server down", env: map[string]string{"SLIPWAY_URL": "http://127.0.0.1:1", "SLIPWAY_TOKEN": "x"}, args: []string{"models", "list"},
			wantStderr: "Error: cannot reach the Slipway server at http://127.0.0.1:1: connection refused (is `slipway server` running? set --url or SLIPWAY_URL)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := cliRun(t, tc.env, tc.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stderr != tc.wantStderr {
				t.Errorf("stderr\n got %q\nwant %q", stderr, tc.wantStderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestTokensCreate(t *testing.T) {
	api := newFakeAPI(t)
	stdout, stderr, code := cliRun(t, api.env(), "tokens", "create", "ci", "--role", "editor")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "\n    slw_secret\n") || !strings.Contains(stdout, "shown only once") {
		t.Errorf("stdout = %q", stdout)
	}
}

func TestHooks(t *testing.T) {
	var got []string
	var stdout, stderr bytes.Buffer
	hooks := Hooks{Server: func(ctx context.Context, args []string) error {
		got = args
		return errors.New("address already in use")
	}}
	code := Execute(t.Context(), []string{"server", "--data-dir", "/tmp/x", "--help"}, &stdout, &stderr, hooks)
	if want := []string{"--data-dir", "/tmp/x", "--help"}; !slices.Equal(got, want) {
		t.Errorf("server hook got %q, want %q", got, want)
	}
	if code != 1 || stderr.String() != "Error: address already in use\n" {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}

	// A connection the server itself could not make is reported as it is, not as "cannot reach the server".
	stderr.Reset()
	storeDown := Hooks{Server: func(context.Context, []string) error {
		return fmt.Errorf("artifact store s3://b/p/: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	}}
	if code := Execute(t.Context(), []string{"server"}, &stdout, &stderr, storeDown); code != 1 ||
		stderr.String() != "Error: artifact store s3://b/p/: dial tcp: connection refused\n" {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}

	stderr.Reset()
	if code := Execute(t.Context(), []string{"worker"}, &stdout, &stderr, Hooks{}); code != 1 || !strings.Contains(stderr.String(), "built without the worker") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestVersion(t *testing.T) {
	stdout, _, code := cliRun(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "slipway dev (go") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

// The server is found through SLIPWAY_URL_FILE first (a job run's pointer that follows the server across
// restarts), then SLIPWAY_URL, then the server.url its data folder holds.
func TestServerURLResolution(t *testing.T) {
	api := newFakeAPI(t)
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "server.url")
	os.WriteFile(urlFile, []byte(api.srv.URL+"\n"), 0o600)
	const dead = "http://127.0.0.1:1"
	cases := []struct {
		name string
		env  map[string]string
	}{
		{"the URL file wins over a stale SLIPWAY_URL", map[string]string{"SLIPWAY_URL_FILE": urlFile, "SLIPWAY_URL": dead}},
		{"a missing URL file falls back to SLIPWAY_URL", map[string]string{"SLIPWAY_URL_FILE": filepath.Join(dir, "gone"), "SLIPWAY_URL": api.srv.URL}},
		{"the data folder's server.url", map[string]string{"SLIPWAY_DATA_DIR": dir}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SLIPWAY_TOKEN"] = "tok"
			if _, stderr, code := cliRun(t, tc.env, "models", "list"); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
		})
	}
	if _, stderr, code := cliRun(t, map[string]string{"SLIPWAY_URL": dead, "SLIPWAY_DATA_DIR": dir, "SLIPWAY_TOKEN": "tok"}, "models", "list"); code == 0 || !strings.Contains(stderr, dead) {
		t.Fatalf("SLIPWAY_URL must win over the data folder's file: exit %d %s", code, stderr)
	}
}

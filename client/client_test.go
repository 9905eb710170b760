package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// newServer starts a fake API and returns a client of it authenticated with token "secret".
func newServer(tb testing.TB, h http.HandlerFunc) *client.Client {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return client.New(srv.URL+"/", "secret")
}

// writeProblem writes a real problem+json body, as internal/httpapi does.
func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"type": "https://slipway.dev/problems/" + code, "title": http.StatusText(status), "status": status,
		"detail": detail, "instance": "/api/v1/models/x", "code": code, "request_id": "req-1",
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantCode   string
		wantDetail string // substring
		wantString string // exact Error(), when set
	}{
		{
			name:       "problem json",
			handler:    func(w http.ResponseWriter, r *http.Request) { writeProblem(w, 404, "not_found", `model "x" not found`) },
			wantStatus: 404, wantCode: slipway.ENOTFOUND, wantDetail: `model "x" not found`,
			wantString: `404 not_found: model "x" not found`,
		},
		{
			name: "html from a proxy",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
			},
			wantStatus: 502, wantCode: slipway.EUNAVAILABLE, wantDetail: "HTML page",
		},
		{
			name: "plain text",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "upstream\ntimed out", http.StatusGatewayTimeout)
			},
			wantStatus: 504, wantCode: slipway.EUNAVAILABLE, wantDetail: "GET /api/v1/models/x: upstream timed out",
		},
		{
			name:       "empty body",
			handler:    func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) },
			wantStatus: 500, wantCode: slipway.EINTERNAL, wantDetail: "Internal Server Error",
		},
		{
			name: "json that is not a problem",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusConflict, map[string]string{"message": "nope"})
			},
			wantStatus: 409, wantCode: slipway.ECONFLICT, wantDetail: `{"message":"nope"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newServer(t, tc.handler)
			_, err := c.GetModel(t.Context(), "x")
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *client.Error", err, err)
			}
			if e.Status != tc.wantStatus || e.Problem.Status != tc.wantStatus || e.Problem.Code != tc.wantCode {
				t.Errorf("status %d / problem status %d / code %q, want %d / %q", e.Status, e.Problem.Status, e.Problem.Code, tc.wantStatus, tc.wantCode)
			}
			if !strings.Contains(e.Problem.Detail, tc.wantDetail) {
				t.Errorf("detail %q does not contain %q", e.Problem.Detail, tc.wantDetail)
			}
			if tc.wantString != "" && err.Error() != tc.wantString {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.wantString)
			}
			if got := slipway.ErrorCode(err); got != tc.wantCode {
				t.Errorf("slipway.ErrorCode = %q, want %q", got, tc.wantCode)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	var got http.Header
	c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		writeJSON(w, 200, slipway.Token{ID: "t1", Name: "admin", Role: slipway.RoleAdmin})
	})
	tok, err := c.Whoami(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name != "admin" || tok.Role != slipway.RoleAdmin {
		t.Errorf("whoami = %+v", tok)
	}
	if a := got.Get("Authorization"); a != "Bearer secret" {
		t.Errorf("Authorization = %q", a)
	}
	if ua := got.Get("User-Agent"); ua != "slipway-cli/"+client.Version {
		t.Errorf("User-Agent = %q", ua)
	}

	t.Run("no token, no header", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := r.Header["Authorization"]; ok {
				t.Errorf("Authorization sent without a token: %q", r.Header.Get("Authorization"))
			}
			writeProblem(w, 401, "unauthorized", "missing bearer token")
		}))
		defer srv.Close()
		_, err := client.New(srv.URL, "").Whoami(t.Context())
		if slipway.ErrorCode(err) != slipway.EUNAUTHORIZED {
			t.Errorf("err = %v", err)
		}
	})
}

func TestContextCancels(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.GetModel(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
}

func TestRequests(t *testing.T) {
	type seen struct{ method, path, query, body string }
	tests := []struct {
		name string
		call func(ctx context.Context, c *client.Client) error
		resp any
		want seen
	}{
		{
			name: "list models with filters and paging",
			call: func(ctx context.Context, c *client.Client) error {
				items, total, err := c.ListModels(ctx, client.ListModelsOptions{Name: "ch urn", Tag: "team=risk", Offset: 20, Limit: 10})
				if err == nil && (total != 42 || len(items) != 1 || items[0].Name != "churn") {
					err = fmt.Errorf("got %d items, total %d", len(items), total)
				}
				return err
			},
			resp: map[string]any{"items": []any{map[string]any{"name": "churn"}}, "total": 42, "offset": 20, "limit": 10},
			want: seen{"GET", "/api/v1/models", "limit=10&name=ch+urn&offset=20&tag=team%3Drisk", ""},
		},
		{
			name: "list models without options sends no query",
			call: func(ctx context.Context, c *client.Client) error {
				_, _, err := c.ListModels(ctx, client.ListModelsOptions{})
				return err
			},
			resp: map[string]any{"items": []any{}, "total": 0},
			want: seen{"GET", "/api/v1/models", "", ""},
		},
		{
			name: "list versions paging",
			call: func(ctx context.Context, c *client.Client) error {
				vs, total, err := c.ListVersions(ctx, "churn", 5, 2)
				if err == nil && (total != 7 || len(vs) != 2 || vs[1].Version != 4) {
					err = fmt.Errorf("got %d versions, total %d", len(vs), total)
				}
				return err
			},
			resp: map[string]any{"items": []any{map[string]any{"version": 5}, map[string]any{"version": 4}}, "total": 7},
			want: seen{"GET", "/api/v1/models/churn/versions", "limit=2&offset=5", ""},
		},
		{
			name: "create model",
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.CreateModel(ctx, "churn", "d", map[string]string{"team": "risk"})
				return err
			},
			resp: map[string]any{"name": "churn"},
			want: seen{"POST", "/api/v1/models", "", `{"name":"churn","description":"d","tags":{"team":"risk"}}`},
		},
		{
			name: "update model leaves nil fields out of the change",
			call: func(ctx context.Context, c *client.Client) error {
				d := "new"
				_, err := c.UpdateModel(ctx, "churn", slipway.ModelUpdate{Description: &d})
				return err
			},
			resp: map[string]any{"name": "churn"},
			want: seen{"PATCH", "/api/v1/models/churn", "", `{"description":"new","tags":null}`},
		},
		{
			name: "version by alias",
			call: func(ctx context.Context, c *client.Client) error {
				v, err := c.GetVersion(ctx, "churn", "@champion")
				if err == nil && v.Version != 3 {
					err = fmt.Errorf("version %d", v.Version)
				}
				return err
			},
			resp: map[string]any{"model": "churn", "version": 3, "state": "READY"},
			want: seen{"GET", "/api/v1/models/churn/versions/@champion", "", ""},
		},
		{
			name: "path segments are escaped",
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.ListFiles(ctx, "a/b", "1?x")
				return err
			},
			resp: map[string]any{"items": []any{}, "total": 0},
			want: seen{"GET", "/api/v1/models/a%2Fb/versions/1%3Fx/files", "", ""},
		},
		{
			name: "set alias",
			call: func(ctx context.Context, c *client.Client) error {
				m, err := c.SetAlias(ctx, "churn", "@champion", 3)
				if err == nil && (m.FromVersion == nil || *m.FromVersion != 2) {
					err = fmt.Errorf("move %+v", m)
				}
				return err
			},
			resp: map[string]any{"model": "churn", "alias": "champion", "version": 3, "from_version": 2},
			want: seen{"PUT", "/api/v1/models/churn/aliases/champion", "", `{"version":3}`},
		},
		{
			name: "get alias",
			call: func(ctx context.Context, c *client.Client) error {
				a, err := c.GetAlias(ctx, "churn", "champion")
				if err == nil && (a.Version != 3 || len(a.History) != 2) {
					err = fmt.Errorf("alias %+v", a)
				}
				return err
			},
			resp: map[string]any{"model": "churn", "alias": "champion", "version": 3,
				"history": []any{map[string]any{"version": 2}, map[string]any{"version": 3, "from_version": 2}}},
			want: seen{"GET", "/api/v1/models/churn/aliases/champion", "", ""},
		},
		{
			name: "revoke token",
			call: func(ctx context.Context, c *client.Client) error { return c.RevokeToken(ctx, "abc") },
			want: seen{"DELETE", "/api/v1/tokens/abc", "", ""},
		},
		{
			name: "create token",
			call: func(ctx context.Context, c *client.Client) error {
				tok, err := c.CreateToken(ctx, "ci", slipway.RoleEditor)
				if err == nil && tok.Secret != "slw_x" {
					err = fmt.Errorf("token %+v", tok)
				}
				return err
			},
			resp: map[string]any{"id": "t2", "name": "ci", "role": "editor", "token": "slw_x"},
			want: seen{"POST", "/api/v1/tokens", "", `{"name":"ci","role":"editor"}`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got seen
			c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got = seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(bytes.TrimSpace(b))}
				if tc.resp == nil {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				writeJSON(w, 200, tc.resp)
			})
			if err := tc.call(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("request\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// gatedReader returns first, then blocks until gate is closed before returning rest: a client that buffered
// the whole body before sending would never get past the gate.
type gatedReader struct {
	first, rest []byte
	gate        <-chan struct{}
	step        int
}

func (g *gatedReader) Read(p []byte) (int, error) {
	switch g.step {
	case 0:
		g.step++
		return copy(p, g.first), nil
	case 1:
		select {
		case <-g.gate:
		case <-time.After(5 * time.Second):
			return 0, errors.New("the server never received the first chunk: the upload was buffered, not streamed")
		}
		g.step++
		return copy(p, g.rest), nil
	}
	return 0, io.EOF
}

func TestPushVersionStreams(t *testing.T) {
	first := bytes.Repeat([]byte("a"), 1000)
	rest := bytes.Repeat([]byte("b"), 500)
	gate := make(chan struct{})
	var gotMeta slipway.VersionMetadata
	var gotFile string
	var gotArtifact []byte
	c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/api/v1/models/churn/versions" {
			writeProblem(w, 404, "not_found", "no route")
			return
		}
		mr, err := r.MultipartReader()
		if err != nil {
			writeProblem(w, 400, "invalid", err.Error())
			return
		}
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			} else if err != nil {
				writeProblem(w, 400, "invalid", err.Error())
				return
			}
			switch part.FormName() {
			case "metadata":
				if ct := part.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("metadata Content-Type = %q", ct)
				}
				if err := json.NewDecoder(part).Decode(&gotMeta); err != nil {
					t.Errorf("metadata: %v", err)
				}
			case "artifact":
				gotFile = part.FileName()
				head := make([]byte, len(first))
				if _, err := io.ReadFull(part, head); err != nil {
					writeProblem(w, 400, "invalid", err.Error())
					return
				}
				close(gate) // the first chunk arrived while the client still holds the rest
				tail, err := io.ReadAll(part)
				if err != nil {
					writeProblem(w, 400, "invalid", err.Error())
					return
				}
				gotArtifact = append(head, tail...)
			}
		}
		w.Header().Set("Location", "/api/v1/models/churn/versions/1")
		writeJSON(w, http.StatusCreated, slipway.ModelVersion{Model: "churn", Version: 1, State: slipway.VersionReady})
	})

	var lastSent, lastTotal int64
	calls := 0
	total := int64(len(first) + len(rest))
	meta := &slipway.VersionMetadata{Runtime: slipway.RuntimeONNX, Description: "d"}
	v, err := c.PushVersion(t.Context(), "churn", &gatedReader{first: first, rest: rest, gate: gate}, "model.onnx", meta,
		func(sent, total int64) { calls++; lastSent, lastTotal = sent, total }, total)
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != 1 || v.State != slipway.VersionReady {
		t.Errorf("version = %+v", v)
	}
	if gotMeta.Runtime != slipway.RuntimeONNX || gotMeta.Description != "d" {
		t.Errorf("server got metadata %+v", gotMeta)
	}
	if gotFile != "model.onnx" {
		t.Errorf("server got file name %q", gotFile)
	}
	if !bytes.Equal(gotArtifact, append(append([]byte{}, first...), rest...)) {
		t.Errorf("server got %d artifact bytes, want %d", len(gotArtifact), total)
	}
	if calls < 2 || lastSent != total || lastTotal != total {
		t.Errorf("progress: %d calls, last (%d, %d), want ≥ 2 calls ending at (%d, %d)", calls, lastSent, lastTotal, total, total)
	}
}

func TestPushVersionWithoutMetadata(t *testing.T) {
	var parts []string
	c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mr, err := r.MultipartReader()
		if err != nil {
			writeProblem(w, 400, "invalid", err.Error())
			return
		}
		for {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			parts = append(parts, part.FormName())
			io.Copy(io.Discard, part)
		}
		writeJSON(w, http.StatusCreated, slipway.ModelVersion{Model: "churn", Version: 2, State: slipway.VersionFailed,
			Checks: []slipway.Check{{ID: "load", Passed: false, Message: "boom"}}})
	})
	v, err := c.PushVersion(t.Context(), "churn", strings.NewReader("x"), "score.py", nil, nil, -1)
	if err != nil {
		t.Fatalf("a FAILED version is not an error: %v", err)
	}
	if v.State != slipway.VersionFailed || len(v.Checks) != 1 {
		t.Errorf("version = %+v", v)
	}
	if fmt.Sprint(parts) != "[artifact]" {
		t.Errorf("parts = %v, want only the artifact", parts)
	}
}

type failingReader struct{ n int }

var errDisk = errors.New("disk on fire")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return copy(p, bytes.Repeat([]byte("x"), len(p))), nil
	}
	return 0, errDisk
}

func TestPushVersionArtifactReadError(t *testing.T) {
	c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return // the client aborted the body, as it should
		}
		writeProblem(w, 400, "invalid", "upload interrupted or malformed")
	})
	_, err := c.PushVersion(t.Context(), "churn", &failingReader{n: 3}, "a.tar.gz", nil, nil, -1)
	if !errors.Is(err, errDisk) {
		t.Fatalf("err = %v, want the artifact's read error", err)
	}
}

// zeros is an endless artifact: only a server that refuses it early ends the upload.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestPushVersionRefusedEarly(t *testing.T) {
	c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, 1<<20)
		w.Header().Set("Connection", "close")
		writeProblem(w, http.StatusRequestEntityTooLarge, "too_large", "upload larger than the limit of 1048576 bytes")
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.PushVersion(t.Context(), "churn", zeros{}, "big.bin", nil, nil, -1)
		done <- err
	}()
	select {
	case err := <-done:
		// Depending on timing the transport reports the response or the broken connection; it must end.
		var e *client.Error
		if errors.As(err, &e) && e.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d", e.Status)
		}
		if err == nil {
			t.Error("no error for a refused upload")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PushVersion kept sending after the server refused the upload")
	}
}

func TestDownloadArtifact(t *testing.T) {
	c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.EscapedPath() {
		case "/api/v1/models/churn/versions/3/artifact":
			w.Header().Set("Content-Type", "application/gzip")
			io.WriteString(w, "tarball")
		default:
			writeProblem(w, 409, "conflict", "version 4 of churn is REGISTERING: its files are not complete yet")
		}
	})
	rc, err := c.DownloadArtifact(t.Context(), "churn", "3")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "tarball" {
		t.Errorf("body = %q", b)
	}
	if _, err := c.DownloadArtifact(t.Context(), "churn", "4"); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Errorf("err = %v, want conflict", err)
	}
}

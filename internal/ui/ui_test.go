package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func notFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
	})
}

func get(t *testing.T, h http.Handler, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	h := Handler(notFound())
	index := assets["index.html"].body
	tests := []struct {
		path   string
		status int
		ctype  string
		body   []byte // nil: not checked
	}{
		{"/ui/", 200, "text/html; charset=utf-8", index},
		{"/ui/deployments/churn", 200, "text/html; charset=utf-8", index}, // a page of the app: bookmarkable
		{"/ui/models/churn/versions/3", 200, "text/html; charset=utf-8", index},
		{"/ui/app.js", 200, "text/javascript; charset=utf-8", assets["app.js"].body},
		{"/ui/style.css", 200, "text/css; charset=utf-8", assets["style.css"].body},
		{"/ui/favicon.svg", 200, "image/svg+xml", nil},
		{"/ui/missing.js", 404, "application/problem+json", nil},
		{"/ui/static/app.js", 404, "application/problem+json", nil}, // the embed folder is not a path
		{"/ui/ui.go", 404, "application/problem+json", nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			rec := get(t, h, tc.path)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if tc.body != nil && rec.Body.String() != string(tc.body) {
				t.Errorf("body is not the asset")
			}
			if rec.Code == 200 {
				for k, v := range securityHeaders {
					if rec.Header().Get(k) != v {
						t.Errorf("%s = %q, want %q", k, rec.Header().Get(k), v)
					}
				}
			}
		})
	}
}

// The browser asks again every time (no-cache) and gets 304 while the embedded file is the same.
func TestHandlerRevalidates(t *testing.T) {
	h := Handler(notFound())
	first := get(t, h, "/ui/app.js")
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, first.Header().Get("Cache-Control"))
	}
	if rec := get(t, h, "/ui/app.js", "If-None-Match", etag); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("revalidation: %d with %d bytes", rec.Code, rec.Body.Len())
	}
	if rec := get(t, h, "/ui/app.js", "If-None-Match", `"other"`); rec.Code != http.StatusOK {
		t.Fatalf("stale ETag: %d", rec.Code)
	}
	if get(t, h, "/ui/style.css").Header().Get("ETag") == etag {
		t.Fatal("two files share an ETag")
	}
}

// Every file the page loads is embedded, under the prefix the handler serves.
func TestIndexReferencesEmbeddedAssets(t *testing.T) {
	refs := regexp.MustCompile(`(?:src|href)="(/ui/[^"]*)"`).FindAllStringSubmatch(string(assets["index.html"].body), -1)
	if len(refs) < 3 {
		t.Fatalf("index.html references %d files", len(refs))
	}
	for _, m := range refs {
		name := strings.TrimPrefix(m[1], Prefix)
		if name == "" || !strings.Contains(name, ".") {
			continue // a page link
		}
		if _, ok := assets[name]; !ok {
			t.Errorf("index.html loads %s, which is not embedded", m[1])
		}
	}
}

// The script builds the page with text nodes only: no API value can become markup.
func TestScriptNeverWritesHTML(t *testing.T) {
	js := string(assets["app.js"].body)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
}

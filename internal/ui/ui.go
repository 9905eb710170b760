// Package ui serves Slipway's browser UI: one page of plain JavaScript, embedded in the binary, that reads the
// same /api/v1 as the CLI with the user's bearer token. The server renders nothing for it and grants it nothing:
// the assets are public, every piece of data comes through the API's own authentication and roles.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Prefix is where the UI is mounted.
const Prefix = "/ui/"

// securityHeaders lock the page to its own origin: scripts and styles only from the embedded files (no inline
// code, so injected markup cannot run), API calls only to this server, and no framing.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
	"X-Frame-Options":        "DENY",
}

type asset struct {
	body  []byte
	etag  string
	ctype string
}

// Handler serves the UI under Prefix. Paths with a file extension are assets (unknown ones go to notFound);
// any other path is a page of the single-page app and gets index.html, so that /ui/deployments/churn can be
// bookmarked and reloaded.
func Handler(notFound http.Handler) http.Handler {
	index := assets["index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		a := index
		if path.Ext(name) != "" {
			var ok bool
			if a, ok = assets[name]; !ok {
				notFound.ServeHTTP(w, r)
				return
			}
		}
		serve(w, r, a)
	})
}

// assets are the embedded files by path under static/, loaded once: they are part of the binary, so a failure
// is a build defect (the package's tests load them).
var assets = func() map[string]asset {
	a, err := loadAssets()
	if err != nil {
		panic(err)
	}
	return a
}()

func loadAssets() (map[string]asset, error) {
	assets := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		assets[strings.TrimPrefix(p, "static/")] = asset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load embedded UI: %w", err)
	}
	if _, ok := assets["index.html"]; !ok {
		return nil, fmt.Errorf("load embedded UI: index.html missing")
	}
	return assets, nil
}

// serve answers with the asset, or 304 when the browser has it: the ETag is the content's hash, and no-cache
// makes the browser ask every time, so an upgraded server never runs against a stale script.
func serve(w http.ResponseWriter, r *http.Request, a asset) {
	h := w.Header()
	for k, v := range securityHeaders {
		h.Set(k, v)
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Content-Length", fmt.Sprint(len(a.body)))
	if r.Method != http.MethodHead {
		w.Write(a.body)
	}
}

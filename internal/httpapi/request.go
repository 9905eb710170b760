package httpapi

// Reading requests: JSON bodies (strict), paging, path and query parameters, the media type, and multipart
// uploads (the artifact spooled to disk, removed once the request is done with it).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// decodeJSON reads a JSON body of at most limit bytes into v, refusing unknown fields (a misspelt field is a
// bug the client wants to hear about) and trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	return decodeStrict(body, v, "request body")
}

func decodeStrict(body io.Reader, v any, what string) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, what)
	}
	if dec.More() {
		return slipway.Errorf(slipway.EINVALID, "%s: unexpected data after the JSON value", what)
	}
	return nil
}

func jsonError(err error, what string) error {
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return slipway.Errorf(slipway.ETOOLARGE, "%s larger than the limit of %d bytes", what, mbe.Limit)
	case errors.Is(err, io.EOF):
		return slipway.Wrap(slipway.EINVALID, io.EOF, "%s is empty: send a JSON object", what)
	case errors.As(err, &syn):
		return slipway.Errorf(slipway.EINVALID, "%s is not valid JSON at byte %d: %v", what, syn.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return slipway.Errorf(slipway.EINVALID, "%s must be %s, not %s", what, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return slipway.Errorf(slipway.EINVALID, "%s: field %q must be %s, not %s", what, typ.Field, jsonKind(typ.Type), typ.Value)
	}
	return slipway.Errorf(slipway.EINVALID, "%s: %v", what, err)
}

// jsonKind names the JSON value a Go type is read from, for a client that knows the JSON and not the Go types.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// pageParams reads ?limit= (1..1000, default 100) and ?offset= (≥ 0).
func pageParams(r *http.Request) (offset, limit int, err error) {
	limit, offset = 100, 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return 0, 0, slipway.Errorf(slipway.EINVALID, "limit must be a number from 1 to 1000, got %q", v)
		}
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, slipway.Errorf(slipway.EINVALID, "offset must be a number ≥ 0, got %q", v)
		}
	}
	return offset, limit, nil
}

// newPage is one page of list response; nil items become [] (clients iterate without a check).
func newPage[T any](items []T, total, offset, limit int) slipway.Page[T] {
	if items == nil {
		items = []T{}
	}
	return slipway.Page[T]{Items: items, Total: total, Offset: offset, Limit: limit}
}

// decodeOptionalJSON is decodeJSON for a body that may be left out: no body, or an empty one, leaves v as it is.
func decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if r.ContentLength == 0 {
		return nil
	}
	if err := decodeJSON(w, r, v, limit); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// mediaType is the request's Content-Type without parameters ("" when absent or malformed). The common
// exact values (curl -d's default among them) skip the parser, which allocates: this runs on every prediction.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "application/json" || ct == "text/csv" || ct == "" || ct == "application/x-www-form-urlencoded" {
		return ct
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt
}

// pathName returns the {key} path value after checking it is a valid name of that kind.
func pathName(r *http.Request, key, kind string) (string, error) {
	name := r.PathValue(key)
	if err := slipway.ValidateName(kind, name); err != nil {
		return "", err
	}
	return name, nil
}

// parseTimeParam reads an RFC 3339 time, or a duration meaning that long ago ("90m", "24h"); "" is zero.
func parseTimeParam(r *http.Request, key string, now time.Time) (time.Time, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, slipway.Errorf(slipway.EINVALID, "%s=%q: give an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (30m, 24h)", key, v)
}

// timeRange reads ?from= and ?to= (see parseTimeParam); missing ones are zero.
func timeRange(r *http.Request) (from, to time.Time, err error) {
	now := time.Now()
	if from, err = parseTimeParam(r, "from", now); err != nil {
		return
	}
	to, err = parseTimeParam(r, "to", now)
	return
}

// timeRangeOr is timeRange where a missing to is now and a missing from is span before to.
func timeRangeOr(r *http.Request, span time.Duration) (from, to time.Time, err error) {
	if from, to, err = timeRange(r); err != nil {
		return
	}
	if to.IsZero() {
		to = time.Now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-span)
	}
	return
}

func durationParam(r *http.Request, key string) (time.Duration, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, slipway.Errorf(slipway.EINVALID, "%s=%q: give a positive duration such as 15m or 1h", key, v)
	}
	return d, nil
}

// artifactUpload is the "artifact" part of a multipart upload, spooled to a temporary file.
type artifactUpload struct{ path, filename string }

// readArtifactForm reads a multipart/form-data body: its "artifact" file part (one at most), spooled to disk
// under the upload cap, and its other parts, which field reads (refusing a name it does not take). parts names
// the parts for the error of a body that is not multipart. cleanup removes the spooled file: call it once the
// upload has been taken, after an error too.
func (s *Server) readArtifactForm(r *http.Request, parts string, field func(*multipart.Part) error) (artifactUpload, func(), error) {
	var art artifactUpload
	cleanup := func() {
		if art.path != "" {
			s.removeTemp(art.path)
		}
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return art, cleanup, slipway.Errorf(slipway.EINVALID, "send multipart/form-data with parts %s: %v", parts, err)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return art, cleanup, nil
		} else if err != nil {
			return art, cleanup, uploadReadError(err)
		}
		if part.FormName() != "artifact" {
			if err := field(part); err != nil {
				return art, cleanup, err
			}
			continue
		}
		if art.path != "" {
			return art, cleanup, slipway.Errorf(slipway.EINVALID, "more than one \"artifact\" part: send one file or archive")
		}
		art.filename = path.Base(part.FileName())
		if art.path, err = s.spool(part); err != nil {
			return art, cleanup, err
		}
	}
}

// spool copies the artifact part into a temp file next to the blob store, refusing it past the upload cap.
func (s *Server) spool(part *multipart.Part) (string, error) {
	f, err := os.CreateTemp(s.tempDir, "upload-*")
	if err != nil {
		return "", fmt.Errorf("httpapi: spool upload: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(part, s.maxUp+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > s.maxUp {
		err = slipway.Errorf(slipway.ETOOLARGE, "artifact larger than the upload limit of %d bytes (server flag --max-upload-bytes)", s.maxUp)
	}
	if err != nil {
		s.removeTemp(f.Name())
		return "", uploadReadError(err)
	}
	return f.Name(), nil
}

func uploadReadError(err error) error {
	var mbe *http.MaxBytesError
	var se *slipway.Error
	switch {
	case errors.As(err, &se):
		return err
	case errors.As(err, &mbe):
		return slipway.Errorf(slipway.ETOOLARGE, "upload larger than the limit of %d bytes (server flag --max-upload-bytes)", mbe.Limit)
	}
	return slipway.Wrap(slipway.EINVALID, err, "upload interrupted or malformed: %v", err)
}

// removeTemp removes a spooled upload once its request is done with it (a store that took it moved it away).
// One that cannot be removed is only a stray file in the temporary folder: the request's outcome stands, and
// the log says which file.
func (s *Server) removeTemp(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("temporary upload not removed", "path", path, "error", err)
	}
}

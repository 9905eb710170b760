package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/slipway-ml/slipway"
)

// statusOf maps a domain error code to an HTTP status. This is the only place that does it.
func statusOf(code string) int {
	switch code {
	case slipway.EINVALID:
		return http.StatusBadRequest
	case slipway.ENOTFOUND:
		return http.StatusNotFound
	case slipway.ECONFLICT:
		return http.StatusConflict
	case slipway.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case slipway.EFORBIDDEN:
		return http.StatusForbidden
	case slipway.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case slipway.EOVERLOADED:
		return http.StatusTooManyRequests
	case slipway.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case slipway.ETIMEOUT:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// problem writes err as application/problem+json. Only internal errors are logged, with their cause.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = slipway.Errorf(slipway.ETOOLARGE, "request body larger than the limit of %d bytes", mbe.Limit)
	}
	code := slipway.ErrorCode(err)
	status := statusOf(code)
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "request_id", requestID(r), "error", err)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="slipway"`)
	}
	writeProblem(w, slipway.Problem{
		Type: "https://slipway.dev/problems/" + code, Title: http.StatusText(status), Status: status,
		Detail: slipway.ErrorMessage(err), Instance: r.URL.Path, Code: code, RequestID: requestID(r),
	})
}

func writeProblem(w http.ResponseWriter, p slipway.Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

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
		return slipway.Errorf(slipway.EINVALID, "%s is empty: send a JSON object", what)
	case errors.As(err, &syn):
		return slipway.Errorf(slipway.EINVALID, "%s is not valid JSON at byte %d: %v", what, syn.Offset, err)
	case errors.As(err, &typ):
		return slipway.Errorf(slipway.EINVALID, "%s: field %q must be %s, not %s", what, typ.Field, typ.Type, typ.Value)
	}
	return slipway.Errorf(slipway.EINVALID, "%s: %v", what, err)
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

// Page is the envelope of list responses.
type Page[T any] struct {
	Items  []T `json:"items"`
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
}

func newPage[T any](items []T, total, offset, limit int) Page[T] {
	if items == nil {
		items = []T{}
	}
	return Page[T]{Items: items, Total: total, Offset: offset, Limit: limit}
}

func pathError(name, value string) error {
	return slipway.Errorf(slipway.EINVALID, "invalid %s %q in the URL", name, value)
}

// apiHandler is a handler that returns its error instead of writing it: s.handle turns the error into the
// problem response. A handler that has started its response (streamed a body, written a status) deals with
// later errors itself and returns nil, since a problem can no longer be sent.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

// handle adapts h to net/http: a returned error becomes s.problem(w, r, err).
func (s *Server) handle(h apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.problem(w, r, err)
		}
	}
}

// reply ends an apiHandler with v as JSON and status.
func reply(w http.ResponseWriter, status int, v any) error {
	writeJSON(w, status, v)
	return nil
}

// noContent ends an apiHandler with 204 No Content.
func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeOptionalJSON is decodeJSON for a body that may be left out: no body, or an empty one, leaves v as it is.
func decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if r.ContentLength == 0 {
		return nil
	}
	if err := decodeJSON(w, r, v, limit); err != nil && !isEmptyBody(err) {
		return err
	}
	return nil
}

func isEmptyBody(err error) bool {
	var se *slipway.Error
	return errors.As(err, &se) && se.Message == "request body is empty: send a JSON object"
}

// pathName returns the {key} path value after checking it is a valid name of that kind.
// mediaType is the request's Content-Type without parameters ("" when absent or malformed). The common
// exact values skip the parser, which allocates: this runs on every prediction.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "application/json" || ct == "text/csv" || ct == "" {
		return ct
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt
}

func pathName(r *http.Request, key, kind string) (string, error) {
	name := r.PathValue(key)
	if err := slipway.ValidateName(kind, name); err != nil {
		return "", err
	}
	return name, nil
}

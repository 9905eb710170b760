package httpapi

// Writing responses: errors as RFC 9457 problem+json (the one mapping of error codes to HTTP statuses), JSON
// replies, and the handler adapter that turns a returned error into a problem.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/slipway-ml/slipway"
)

// problem writes err as application/problem+json. Only internal errors are logged, with their cause.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = slipway.Errorf(slipway.ETOOLARGE, "request body larger than the limit of %d bytes", mbe.Limit)
	}
	code := slipway.ErrorCode(err)
	status := slipway.ProblemStatus(code)
	infoOf(r).problem = code
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "request_id", requestID(r), "error", err)
	}
	setRetryAfter(w.Header(), status)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="slipway"`)
	}
	writeProblem(w, slipway.Problem{
		Type: "https://slipway.dev/problems/" + code, Title: http.StatusText(status), Status: status,
		Detail: slipway.ErrorMessage(err), Instance: r.URL.Path, Code: code, RequestID: requestID(r),
	})
}

// setRetryAfter tells the client of an overloaded or unavailable server to try again in a second.
func setRetryAfter(h http.Header, status int) {
	if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1")
	}
}

func writeProblem(w http.ResponseWriter, p slipway.Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p) // strings and numbers always encode: a failure is a client that has gone
}

// writeJSON answers v as JSON with status, for the handlers outside the API (probes, whoami) whose answers
// are fixed shapes that always encode: a failure is a client that has gone.
func writeJSON(w http.ResponseWriter, status int, v any) {
	_ = reply(w, status, v)
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

// reply ends an apiHandler with v as JSON and status. v is encoded before anything is written, so that one
// that cannot be (a NaN) is answered with a problem rather than a body cut short.
func reply(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("httpapi: encode the answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}

// replyCreated ends an apiHandler that created v at location with 201 Created.
func replyCreated(w http.ResponseWriter, location string, v any) error {
	w.Header().Set("Location", location)
	return reply(w, http.StatusCreated, v)
}

// replyOK ends an apiHandler with v as JSON and 200 OK, or with err (from producing v).
func replyOK(w http.ResponseWriter, v any, err error) error {
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, v)
}

// replyAll ends an apiHandler with every item in one page, or with err (from fetching the items).
func replyAll[T any](w http.ResponseWriter, items []T, err error) error {
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, newPage(items, len(items), 0, len(items)))
}

// noContent ends an apiHandler with 204 No Content.
func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

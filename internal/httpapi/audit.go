package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// changesState reports whether a route's calls are recorded in the audit log whatever their outcome: every
// call that may change the installation. The data plane (predictions and feedback, role predict) is traffic,
// not change: only its refusals are recorded.
func changesState(rt route) bool {
	if rt.role == "" || rt.role == slipway.RolePredict {
		return false
	}
	method, _, _ := strings.Cut(rt.pattern, " ")
	return method != http.MethodGet && method != http.MethodHead
}

// operationIDs maps "METHOD /path" to the OpenAPI operationId, the audit log's action names.
func operationIDs() map[string]string {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		panic(err) // the embedded document is checked by the tests
	}
	ids := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			ids[strings.ToUpper(method)+" "+path] = op.OperationID
		}
	}
	return ids
}

// audited records every call of a state-changing route once its handler is done, before the answer
// leaves (small answers are buffered until the handler returns).
func (s *Server) audited(rt route, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next(rec, r)
		if infoOf(r).forwarded {
			return
		}
		e := s.auditEntry(r, rt.pattern, rec.status())
		if loc := w.Header().Get("Location"); loc != "" && rec.status() == http.StatusCreated {
			e.Target = auditTarget(loc)
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		defer cancel()
		if err := s.audit.Record(ctx, e); err != nil {
			s.log.ErrorContext(ctx, "audit: a state-changing call was not recorded", "route", rt.pattern, "request_id", e.RequestID, "error", err)
		}
	}
}

// auditRefusal records a refused call of a route that audited does not wrap (reads, predictions), off the
// request path.
func (s *Server) auditRefusal(r *http.Request, err error) {
	if s.audit == nil {
		return
	}
	code := slipway.ErrorCode(err)
	s.audit.RecordLater(s.auditEntry(r, r.Pattern, slipway.ProblemStatus(code)))
}

func (s *Server) auditEntry(r *http.Request, pattern string, status int) *slipway.AuditEntry {
	info := infoOf(r)
	e := &slipway.AuditEntry{Action: s.actions[pattern], Method: r.Method, Route: pattern, Target: auditTarget(r.URL.Path),
		Status: status, Problem: info.problem, RequestID: info.id, Client: clientAddr(r)}
	if e.Action == "" {
		e.Action = pattern
	}
	if t := info.token; t != nil {
		e.TokenID, e.TokenName, e.Role = t.ID, t.Name, t.RoleIn(info.project)
	}
	if e.Project = info.project; e.Project == "" {
		e.Project = r.Header.Get(slipway.ProjectHeader) // refused before the project was settled: what the call asked for
		if len(e.Project) > 100 {
			e.Project = e.Project[:100]
		}
	}
	return e
}

// auditTarget is an API path as the audit log names targets: below /api/v1/.
func auditTarget(path string) string {
	if i := strings.Index(path, "/api/v1/"); i >= 0 {
		return path[i+len("/api/v1/"):]
	}
	return strings.TrimPrefix(path, "/")
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes, deadlines).
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusRecorder) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// handleAuditList answers the matching entries as a page (oldest first, from the after cursor), or, with
// format=jsonl, streams every matching entry as JSON Lines (the export).
func (s *Server) handleAuditList(w http.ResponseWriter, r *http.Request) error {
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	switch format := r.URL.Query().Get("format"); format {
	case "", "json":
	case "jsonl":
		f.Limit = 0
		return s.streamAudit(w, r, f)
	default:
		return slipway.Errorf(slipway.EINVALID, "unknown format %q: use json or jsonl", format)
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	items := []*slipway.AuditEntry{}
	err = s.audit.Scan(r.Context(), f, func(e *slipway.AuditEntry) error {
		items = append(items, e)
		return nil
	})
	return replyAll(w, items, err)
}

func (s *Server) streamAudit(w http.ResponseWriter, r *http.Request, f slipway.AuditFilter) error {
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", `attachment; filename="slipway-audit.jsonl"`)
	enc := json.NewEncoder(w)
	started := false
	err := s.audit.Scan(r.Context(), f, func(e *slipway.AuditEntry) error {
		started = true
		return enc.Encode(e)
	})
	if err != nil && !started {
		return err
	}
	if err != nil { // the body has started: cut it short so the client sees a truncated export, not a whole one
		s.log.ErrorContext(r.Context(), "audit export cut short", "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func auditFilter(r *http.Request) (slipway.AuditFilter, error) {
	q := r.URL.Query()
	f := slipway.AuditFilter{Actor: q.Get("actor"), Target: strings.Trim(q.Get("target"), "/"), Action: q.Get("action"),
		Project: q.Get("project")}
	var err error
	if f.From, f.To, err = timeRange(r); err != nil {
		return f, err
	}
	if v := q.Get("after"); v != "" {
		if f.After, err = strconv.ParseInt(v, 10, 64); err != nil || f.After < 0 {
			return f, slipway.Errorf(slipway.EINVALID, "invalid after %q: want an entry's seq (the last one you have)", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, slipway.Errorf(slipway.EINVALID, "invalid limit %q: want 1 to 1000 (format=jsonl exports everything)", v)
		}
		f.Limit = n
	}
	return f, nil
}

func (s *Server) handleAuditVerify(w http.ResponseWriter, r *http.Request) error {
	v, err := s.audit.Verify(r.Context())
	return replyOK(w, v, err)
}

// auditRoutes are the audit log's routes; without an audit service they answer 404.
func (s *Server) auditRoutes() []route {
	return []route{
		{"GET /api/v1/audit", s.handle(s.withAudit(s.handleAuditList)), slipway.RoleAdmin},
		{"GET /api/v1/audit/verify", s.handle(s.withAudit(s.handleAuditVerify)), slipway.RoleAdmin},
	}
}

func (s *Server) withAudit(h apiHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.audit == nil {
			return slipway.Errorf(slipway.ENOTFOUND, "this server keeps no audit log")
		}
		return h(w, r)
	}
}

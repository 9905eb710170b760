package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// handleCapturesExport streams a deployment's captured rows with their ground truth, oldest first, a page of
// captures at a time. Errors before the first byte are problems; after it the connection is cut, so that a
// client never takes a truncated export for a complete one (a chunked response then has no final chunk).
func (s *Server) handleCapturesExport(w http.ResponseWriter, r *http.Request, m *monitor.Service, name string) error {
	from, to, err := timeRangeOr(r, 24*time.Hour)
	if err != nil {
		return err
	}
	q := monitor.CaptureExport{Deployment: name, From: from, To: to, Format: r.URL.Query().Get("format")}
	if q.Format == "" {
		q.Format = monitor.ExportJSONL
	}
	if q.Version, err = versionParam(r); err != nil {
		return err
	}
	if err := q.Check(); err != nil {
		return err
	}
	if _, err := s.deployments.Get(r.Context(), name); err != nil {
		return err
	}
	h := w.Header()
	switch q.Format {
	case monitor.ExportCSV:
		h.Set("Content-Type", "text/csv; charset=utf-8")
	case monitor.ExportParquet:
		h.Set("Content-Type", "application/vnd.apache.parquet")
	default:
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-captures.%s"`, name, q.Format))
	rc := http.NewResponseController(w)
	cw := &countingWriter{w: w}
	rows, err := m.ExportCaptures(r.Context(), cw, q, func() { _ = rc.Flush() })
	if err != nil {
		if cw.n == 0 {
			h.Del("Content-Disposition")
			return err
		}
		s.log.ErrorContext(r.Context(), "captures export cut short", "deployment", name, "err", err, "rows", rows)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// versionParam reads the optional ?version= (0 when absent).
func versionParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, slipway.Errorf(slipway.EINVALID, "version=%q: give a version number", v)
	}
	return n, nil
}

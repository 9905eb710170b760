package httpapi

import (
	"net/http"
	"time"

	"github.com/slipway-ml/slipway/internal/monitor"
)

// monitoredWriter records the status and size of a prediction response for the monitor. It is the only
// allocation monitoring adds to a prediction request; everything else the monitor does on the request path is
// atomic counters and non-blocking queue offers.
type monitoredWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	ex     monitor.Exchange
}

func (m *monitoredWriter) WriteHeader(code int) {
	if m.status == 0 {
		m.status = code
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *monitoredWriter) Write(b []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	n, err := m.ResponseWriter.Write(b)
	m.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (m *monitoredWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// monitored runs a prediction handler and reports the exchange to the monitor when it returns.
func (s *Server) monitored(w http.ResponseWriter, r *http.Request, proto string, h func(http.ResponseWriter, *http.Request, *monitor.Exchange)) {
	if s.monitor == nil {
		h(w, r, nil)
		return
	}
	mw := &monitoredWriter{ResponseWriter: w}
	mw.ex = monitor.Exchange{Deployment: r.PathValue("name"), Protocol: proto, Start: time.Now(), RequestID: requestID(r), BytesIn: r.ContentLength}
	h(mw, r, &mw.ex)
	s.monitor.Finish(&mw.ex, mw.status, mw.bytes)
}

package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a ResponseWriter that keeps its header map and discards the body.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkPredictionFraming is the per-request work of the serving path outside the model call and the
// codecs: the request id (withRequestID), the body (readPayload) and the answer's headers (predictHeaders).
func BenchmarkPredictionFraming(b *testing.B) {
	s := &Server{maxPayload: 1 << 20}
	body := []byte(`{"inputs": [[31.0, 29.0, 36.09, 0.0]]}`)
	h := s.withRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.readPayload(w, r); err != nil {
			b.Fatal(err)
		}
		predictHeaders(w, 1, "churn-1")
		setJSONContentType(w.Header())
	}))
	r := httptest.NewRequest(http.MethodPost, "/deployments/churn/invocations", nil)
	rd := bytes.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r.Body, r.ContentLength = io.NopCloser(rd), int64(len(body))
		h.ServeHTTP(&discardWriter{h: make(http.Header, 4)}, r)
	}
}

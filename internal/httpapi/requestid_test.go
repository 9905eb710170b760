package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
)

type testCtxKey struct{}

// withRequestID makes a 32-hex-digit id when the client sends none (or one too long), keeps a client's id,
// echoes it, and gives the handler a context that still carries the request's own values and cancellation.
func TestWithRequestID(t *testing.T) {
	s := &Server{}
	var got []string
	var sawParentValue, sawCancel bool
	h := s.withRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, requestID(r))
		sawCancel = false
		sawParentValue = r.Context().Value(testCtxKey{}) == "parent"
		infoOf(r).project = "p" // the info is the request's own, shared by everything that reads it
		if infoOf(r).project != "p" {
			t.Error("the request info is not shared within the request")
		}
		select {
		case <-r.Context().Done():
			sawCancel = true
		default:
		}
	}))
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for i, sent := range []string{"", "", "client-chosen", string(make([]byte, 129))} {
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), testCtxKey{}, "parent"))
		if i == 1 {
			cancel()
		}
		r := httptest.NewRequest(http.MethodPost, "/deployments/d/invocations", nil).WithContext(ctx)
		if sent != "" {
			r.Header.Set("X-Request-Id", sent)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		cancel()
		id := got[len(got)-1]
		if w.Header().Get("X-Request-Id") != id {
			t.Errorf("request %d: header %q, handler saw %q", i, w.Header().Get("X-Request-Id"), id)
		}
		switch {
		case sent == "client-chosen" && id != sent:
			t.Errorf("the client's id %q was replaced by %q", sent, id)
		case sent != "client-chosen" && !hex32.MatchString(id):
			t.Errorf("request %d: made id %q, want 32 hex digits", i, id)
		}
		if !sawParentValue {
			t.Errorf("request %d: the handler's context lost the request's values", i)
		}
		if sawCancel != (i == 1) {
			t.Errorf("request %d: cancellation seen %v", i, sawCancel)
		}
	}
	if got[0] == got[1] || got[0] == got[3] {
		t.Errorf("made ids repeat: %q", got)
	}
}

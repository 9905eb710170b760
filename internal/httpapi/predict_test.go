package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/slipway-ml/slipway"
)

func TestReadBody(t *testing.T) {
	const limit = 16
	tests := []struct {
		name     string
		body     io.Reader
		declared int64
		want     string
		wantErr  string
	}{
		{"exact length", strings.NewReader(`{"a": 1}`), 8, `{"a": 1}`, ""},
		{"unknown length", strings.NewReader(`{"a": 1}`), -1, `{"a": 1}`, ""},
		{"declared past the limit", strings.NewReader(`{"a": 1}`), 100, `{"a": 1}`, ""},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader(`{"a": 1}`)), 8, `{"a": 1}`, ""},
		{"longer than declared", strings.NewReader(`{"a": 1}xx`), 8, `{"a": 1}xx`, ""},
		{"shorter than declared", strings.NewReader(`{"a"`), 8, "", "4 of the 8 bytes"},
		{"read error", iotest.ErrReader(errors.New("connection reset")), 8, "", "connection reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readBody(tt.body, tt.declared, limit)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// The payload limit holds whatever Content-Length says.
func TestReadBodyLimit(t *testing.T) {
	for _, declared := range []int64{-1, 8, 17} {
		w := httptest.NewRecorder()
		body := http.MaxBytesReader(w, io.NopCloser(bytes.NewReader(make([]byte, 17))), 16)
		_, err := readBody(body, declared, 16)
		var mbe *http.MaxBytesError
		if declared != 8 && !errors.As(err, &mbe) {
			t.Errorf("declared %d: err = %v, want a MaxBytesError", declared, err)
		}
		if declared == 8 && err == nil {
			t.Errorf("declared 8 of 17 bytes: no error")
		}
	}
}

// readPayload gives a body whose declared length is within the limit no limit reader: readBody keeps the limit
// itself when the body holds more than it declared.
func TestReadBodyLimitWithoutLimitReader(t *testing.T) {
	for _, n := range []int{16, 17, 64} {
		got, err := readBody(bytes.NewReader(make([]byte, n)), 8, 16)
		var mbe *http.MaxBytesError
		switch {
		case n <= 16 && (err != nil || len(got) != n):
			t.Errorf("%d bytes declared as 8: got %d bytes, %v; want all of them", n, len(got), err)
		case n > 16 && !errors.As(err, &mbe):
			t.Errorf("%d bytes declared as 8: err = %v, want a MaxBytesError", n, err)
		}
	}
}

// What the prediction endpoints take: JSON under the labels JSON bodies come with, CSV on /invocations only;
// anything else is a 415 whose message names serialized objects as refused by design.
func TestPredictionMediaTypes(t *testing.T) {
	for _, mt := range []string{"application/json", "", "application/x-www-form-urlencoded", "text/plain", "application/vnd.api+json"} {
		if !isJSONMedia(mt) || !isMLflowMedia(mt) {
			t.Errorf("%q refused", mt)
		}
	}
	if isJSONMedia("text/csv") || !isMLflowMedia("text/csv") {
		t.Error("text/csv: want it on /invocations only")
	}
	for _, mt := range []string{"application/x-python-pickle", "application/python-pickle", "application/x-pickle", "application/octet-stream", "application/xml", "multipart/form-data"} {
		if isJSONMedia(mt) || isMLflowMedia(mt) {
			t.Errorf("%q taken", mt)
		}
		for _, p := range []*protocol{&predictProtocol, &invocationsProtocol, &v2Protocol} {
			err := p.refuse(mt)
			if slipway.ErrorCode(err) != slipway.EUNSUPPORTED || slipway.ProblemStatus(slipway.ErrorCode(err)) != http.StatusUnsupportedMediaType {
				t.Errorf("%s %q: %v, want a 415", p.name, mt, err)
			}
			if pickle := strings.Contains(mt, "pickle"); pickle != strings.Contains(err.Error(), "refused by design") {
				t.Errorf("%s %q: %v", p.name, mt, err)
			}
		}
		// MLflow's own words, which clients written against its scoring server match on.
		if msg := slipway.ErrorMessage(invocationsProtocol.refuse(mt)); !strings.HasPrefix(msg, "This predictor only supports the following content types: Types: ['text/csv', 'application/json']. Got '"+mt+"'.") {
			t.Errorf("/invocations %q: %q", mt, msg)
		}
	}
}

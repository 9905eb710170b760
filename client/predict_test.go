package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func TestPredictCalls(t *testing.T) {
	tests := []struct {
		name            string
		call            func(ctx context.Context, c *client.Client) (*client.PredictResponse, error)
		wantPath        string
		wantContentType string
		wantBody        string
	}{
		{
			name: "predict",
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.Predict(ctx, "churn-api", []byte(`{"x": [1, 2]}`))
			},
			wantPath: "/deployments/churn-api/predict", wantContentType: "application/json", wantBody: `{"x": [1, 2]}`,
		},
		{
			name: "invocations json by default",
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.Invocations(ctx, "churn-api", []byte(`{"instances": [[1, 2]]}`), "")
			},
			wantPath: "/deployments/churn-api/invocations", wantContentType: "application/json", wantBody: `{"instances": [[1, 2]]}`,
		},
		{
			name: "invocations csv",
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.Invocations(ctx, "churn-api", []byte("a,b\n1,2\n"), "text/csv")
			},
			wantPath: "/deployments/churn-api/invocations", wantContentType: "text/csv", wantBody: "a,b\n1,2\n",
		},
		{
			name: "v2 infer",
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.InferV2(ctx, "churn-api", []byte(`{"inputs": []}`))
			},
			wantPath: "/v2/models/churn-api/infer", wantContentType: "application/json", wantBody: `{"inputs": []}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if r.Method != "POST" || r.URL.EscapedPath() != tc.wantPath {
					t.Errorf("request %s %s, want POST %s", r.Method, r.URL.EscapedPath(), tc.wantPath)
				}
				if ct := r.Header.Get("Content-Type"); ct != tc.wantContentType {
					t.Errorf("Content-Type = %q, want %q", ct, tc.wantContentType)
				}
				if string(b) != tc.wantBody {
					t.Errorf("body = %q, want %q", b, tc.wantBody)
				}
				if a := r.Header.Get("Authorization"); a != "Bearer secret" {
					t.Errorf("Authorization = %q", a)
				}
				w.Header().Set("X-Request-Id", "req-7")
				w.Header().Set("X-Slipway-Model-Version", "3")
				w.Header().Set("X-Slipway-Replica", "churn-api-v3-1")
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"predictions": [0.25]}`)
			})
			resp, err := tc.call(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			want := client.PredictResponse{Body: []byte(`{"predictions": [0.25]}`), RequestID: "req-7", ModelVersion: "3",
				Replica: "churn-api-v3-1", Status: 200}
			if string(resp.Body) != string(want.Body) || resp.RequestID != want.RequestID || resp.ModelVersion != want.ModelVersion ||
				resp.Replica != want.Replica || resp.Status != want.Status {
				t.Errorf("response %+v, want %+v", resp, want)
			}
		})
	}
}

func TestPredictErrors(t *testing.T) {
	tests := []struct {
		name           string
		handler        http.HandlerFunc
		call           func(ctx context.Context, c *client.Client) (*client.PredictResponse, error)
		wantStatus     int
		wantCode       string
		wantDetail     string
		wantRequestID  string
		wantRetryAfter time.Duration
	}{
		{
			name: "v2 error body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Request-Id", "req-9")
				writeJSON(w, 400, map[string]string{"error": "inputs[0].data[3]: 1.5 is not an INT64"})
			},
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.InferV2(ctx, "churn-api", []byte(`{}`))
			},
			wantStatus: 400, wantCode: slipway.EINVALID, wantDetail: "inputs[0].data[3]: 1.5 is not an INT64", wantRequestID: "req-9",
		},
		{
			name: "queue full",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "2")
				writeProblem(w, 429, slipway.EOVERLOADED, "deployment churn-api is busy: 100 requests queued")
			},
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.Predict(ctx, "churn-api", []byte(`{}`))
			},
			wantStatus: 429, wantCode: slipway.EOVERLOADED, wantDetail: "100 requests queued", wantRequestID: "req-1",
			wantRetryAfter: 2 * time.Second,
		},
		{
			name: "timeout",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeProblem(w, 504, slipway.ETIMEOUT, "the model did not answer within 30000 ms")
			},
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.Invocations(ctx, "churn-api", []byte(`{"instances": []}`), "")
			},
			wantStatus: 504, wantCode: slipway.ETIMEOUT, wantDetail: "30000 ms", wantRequestID: "req-1",
		},
		{
			name: "not serving",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "1")
				w.Header().Set("X-Request-Id", "req-3")
				writeJSON(w, 503, map[string]string{"error": "deployment churn-api is INACTIVE: it is not serving"})
			},
			call: func(ctx context.Context, c *client.Client) (*client.PredictResponse, error) {
				return c.InferV2(ctx, "churn-api", []byte(`{}`))
			},
			wantStatus: 503, wantCode: slipway.EUNAVAILABLE, wantDetail: "INACTIVE", wantRequestID: "req-3", wantRetryAfter: time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newServer(t, tc.handler)
			resp, err := tc.call(t.Context(), c)
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %+v, %v (%T); want a *client.Error", resp, err, err)
			}
			if e.Status != tc.wantStatus || e.Problem.Code != tc.wantCode || slipway.ErrorCode(err) != tc.wantCode {
				t.Errorf("status %d code %q, want %d %q", e.Status, e.Problem.Code, tc.wantStatus, tc.wantCode)
			}
			if !strings.Contains(e.Problem.Detail, tc.wantDetail) {
				t.Errorf("detail %q does not contain %q", e.Problem.Detail, tc.wantDetail)
			}
			if e.Problem.RequestID != tc.wantRequestID {
				t.Errorf("request id %q, want %q", e.Problem.RequestID, tc.wantRequestID)
			}
			if e.RetryAfter != tc.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tc.wantRetryAfter)
			}
		})
	}
}

package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func TestDeploymentRequests(t *testing.T) {
	type seen struct{ method, path, body string }
	three, zero, two := 3, 0, 2
	champion, yes := "champion", true
	deployment := map[string]any{"name": "churn-api", "state": "CREATING", "model": "churn", "version": 3,
		"replicas": 2, "replica_status": []any{},
		"urls": map[string]any{"predict": "/deployments/churn-api/predict", "invocations": "/deployments/churn-api/invocations",
			"v2_infer": "/v2/models/churn-api/infer"}}
	tests := []struct {
		name string
		call func(ctx context.Context, c *client.Client) error
		resp any
		want seen
	}{
		{
			name: "create sends only the fields given",
			call: func(ctx context.Context, c *client.Client) error {
				d, err := c.CreateDeployment(ctx, client.DeploymentSpec{Name: "churn-api", Model: "churn", Alias: &champion,
					FollowAlias: &yes, Replicas: &two, Batching: &slipway.Batching{MaxBatchSize: 32, MaxWaitMS: 5},
					Env: map[string]string{"OMP_NUM_THREADS": "1"}})
				if err == nil && (d.State != slipway.DeploymentCreating || d.URLs == nil || d.URLs.V2Infer != "/v2/models/churn-api/infer") {
					err = fmt.Errorf("deployment %+v", d)
				}
				return err
			},
			resp: deployment,
			want: seen{"POST", "/api/v1/deployments", `{"name":"churn-api","model":"churn","alias":"champion","follow_alias":true,` +
				`"replicas":2,"batching":{"max_batch_size":32,"max_wait_ms":5},"env":{"OMP_NUM_THREADS":"1"}}`},
		},
		{
			name: "create the newest version with defaults",
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.CreateDeployment(ctx, client.DeploymentSpec{Name: "churn-api", Model: "churn"})
				return err
			},
			resp: deployment,
			want: seen{"POST", "/api/v1/deployments", `{"name":"churn-api","model":"churn"}`},
		},
		{
			name: "update sends zero values that were set: batching off, empty env clears it",
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.UpdateDeployment(ctx, "churn-api", client.DeploymentSpec{Version: &three, MaxQueue: &zero,
					Batching: &slipway.Batching{}, Env: map[string]string{}})
				return err
			},
			resp: deployment,
			want: seen{"PATCH", "/api/v1/deployments/churn-api", `{"version":3,"batching":{"max_batch_size":0,"max_wait_ms":0},"max_queue":0,"env":{}}`},
		},
		{
			name: "list",
			call: func(ctx context.Context, c *client.Client) error {
				ds, err := c.ListDeployments(ctx)
				if err == nil && (len(ds) != 1 || ds[0].Name != "churn-api") {
					err = fmt.Errorf("deployments %v", ds)
				}
				return err
			},
			resp: map[string]any{"items": []any{deployment}, "total": 1, "offset": 0, "limit": 1},
			want: seen{"GET", "/api/v1/deployments", ""},
		},
		{
			name: "get escapes the name",
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.GetDeployment(ctx, "a/b")
				return err
			},
			resp: deployment,
			want: seen{"GET", "/api/v1/deployments/a%2Fb", ""},
		},
		{
			name: "activate",
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.ActivateDeployment(ctx, "churn-api")
				return err
			},
			resp: deployment,
			want: seen{"POST", "/api/v1/deployments/churn-api/activate", ""},
		},
		{
			name: "deactivate",
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.DeactivateDeployment(ctx, "churn-api")
				return err
			},
			resp: deployment,
			want: seen{"POST", "/api/v1/deployments/churn-api/deactivate", ""},
		},
		{
			name: "delete",
			call: func(ctx context.Context, c *client.Client) error { return c.DeleteDeployment(ctx, "churn-api") },
			want: seen{"DELETE", "/api/v1/deployments/churn-api", ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got seen
			c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got = seen{r.Method, r.URL.EscapedPath(), string(bytes.TrimSpace(b))}
				if len(b) > 0 && r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
				}
				if tc.resp == nil {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				writeJSON(w, 200, tc.resp)
			})
			if err := tc.call(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("request\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestWaitDeployment(t *testing.T) {
	active := func(d *slipway.Deployment) bool { return d.State == slipway.DeploymentActive }

	t.Run("polls until the condition holds", func(t *testing.T) {
		states := []string{"CREATING", "CREATING", "ACTIVE"}
		var calls atomic.Int32
		c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			n := int(calls.Add(1)) - 1
			writeJSON(w, 200, map[string]any{"name": "churn-api", "state": states[min(n, len(states)-1)]})
		})
		d, err := c.WaitDeployment(t.Context(), "churn-api", active, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != slipway.DeploymentActive || calls.Load() != 3 {
			t.Errorf("state %s after %d polls, want ACTIVE after 3", d.State, calls.Load())
		}
	})

	t.Run("context end returns the last state seen", func(t *testing.T) {
		c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"name": "churn-api", "state": "UPDATING"})
		})
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
		defer cancel()
		d, err := c.WaitDeployment(ctx, "churn-api", active, 5*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if d == nil || d.State != slipway.DeploymentUpdating {
			t.Errorf("last deployment = %+v, want the UPDATING one", d)
		}
	})

	t.Run("an API error ends the wait", func(t *testing.T) {
		c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, 404, slipway.ENOTFOUND, `deployment "churn-api" not found`)
		})
		d, err := c.WaitDeployment(t.Context(), "churn-api", active, time.Millisecond)
		if slipway.ErrorCode(err) != slipway.ENOTFOUND || d != nil {
			t.Errorf("got %+v, %v; want nil and not_found", d, err)
		}
	})
}

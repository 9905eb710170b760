package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// TestWaitFunctions runs every Wait function of the client against a server whose object is "RUNNING" twice and
// then ended: each polls until the end, hands each state seen to its progress callback (when it has one), and
// when its context ends first says what it was waiting for.
func TestWaitFunctions(t *testing.T) {
	type waitFunc func(ctx context.Context, c *client.Client, progress func(state string)) (state string, err error)
	tests := []struct {
		name    string
		running string // the state before the end
		ended   string
		what    string // in the error when the context ends
		wait    waitFunc
	}{
		{"replay", "RUNNING", "SUCCEEDED", "wait for replay r1",
			func(ctx context.Context, c *client.Client, progress func(string)) (string, error) {
				r, err := c.WaitReplay(ctx, "churn-api", "r1", func(r *client.Replay) { progress(string(r.State)) }, time.Millisecond)
				return stateOf(r, err, func() string { return string(r.State) })
			}},
		{"rollout", "RUNNING", "PROMOTED", "wait for rollout r1",
			func(ctx context.Context, c *client.Client, progress func(string)) (string, error) {
				r, err := c.WaitRollout(ctx, "churn-api", "r1", func(r *client.Rollout) { progress(string(r.State)) }, time.Millisecond)
				return stateOf(r, err, func() string { return string(r.State) })
			}},
		{"batch prediction", "RUNNING", "SUCCEEDED", "wait for batch prediction r1",
			func(ctx context.Context, c *client.Client, progress func(string)) (string, error) {
				r, err := c.WaitBatchPrediction(ctx, "r1", func(r *slipway.BatchRun) { progress(string(r.State)) }, time.Millisecond)
				return stateOf(r, err, func() string { return string(r.State) })
			}},
		{"job run", "IN_PROGRESS", "SUCCEEDED", "wait for job run r1",
			func(ctx context.Context, c *client.Client, progress func(string)) (string, error) {
				r, err := c.WaitJobRun(ctx, "r1", time.Millisecond)
				return stateOf(r, err, func() string { return string(r.State) })
			}},
		{"pipeline run", "IN_PROGRESS", "SUCCEEDED", "wait for pipeline run r1",
			func(ctx context.Context, c *client.Client, progress func(string)) (string, error) {
				r, err := c.WaitPipelineRun(ctx, "r1", time.Millisecond)
				return stateOf(r, err, func() string { return string(r.State) })
			}},
		{"deployment", "UPDATING", "ACTIVE", "wait for deployment r1",
			func(ctx context.Context, c *client.Client, progress func(string)) (string, error) {
				d, err := c.WaitDeployment(ctx, "r1", func(d *slipway.Deployment) bool {
					progress(string(d.State))
					return d.State == slipway.DeploymentActive
				}, time.Millisecond)
				return stateOf(d, err, func() string { return string(d.State) })
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" polls until it ends", func(t *testing.T) {
			var calls atomic.Int32
			c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				state := tt.running
				if calls.Add(1) > 2 {
					state = tt.ended
				}
				writeJSON(w, 200, map[string]any{"id": "r1", "name": "r1", "state": state})
			})
			var seen []string
			got, err := tt.wait(t.Context(), c, func(s string) { seen = append(seen, s) })
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.ended || calls.Load() != 3 {
				t.Errorf("state %s after %d polls, want %s after 3", got, calls.Load(), tt.ended)
			}
			takesProgress := tt.name != "job run" && tt.name != "pipeline run" // those two have no callback
			if takesProgress && strings.Join(seen, ",") != strings.Join([]string{tt.running, tt.running, tt.ended}, ",") {
				t.Errorf("progress saw %v, want %s twice then %s", seen, tt.running, tt.ended)
			}
		})
		t.Run(tt.name+" says what it waited for when the context ends", func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var calls atomic.Int32
			c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 2 { // the context ends during the second poll: its answer may or may not arrive
					cancel()
				}
				writeJSON(w, 200, map[string]any{"id": "r1", "name": "r1", "state": tt.running})
			})
			got, err := tt.wait(ctx, c, func(string) {})
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), tt.what) {
				t.Errorf("err = %v, want canceled and %q", err, tt.what)
			}
			if got != tt.running {
				t.Errorf("last state %q, want the %s one seen", got, tt.running)
			}
		})
	}
}

// stateOf is the state of v, or "" when the wait returned nothing.
func stateOf[T any](v *T, err error, state func() string) (string, error) {
	if v == nil {
		return "", err
	}
	return state(), err
}

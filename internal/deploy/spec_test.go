package deploy

import (
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

func TestApplyAndValidateCanary(t *testing.T) {
	base := func() *slipway.Deployment {
		return &slipway.Deployment{Name: "churn", Model: "churn", Version: 1, Replicas: 1, TimeoutMS: 1000, MaxQueue: 10,
			Canary: &slipway.Canary{Version: 2, Weight: 10, Replicas: 2}}
	}
	tests := []struct {
		name string
		spec *slipway.Canary
		want *slipway.Canary // after apply
		err  string          // from validate
	}{
		{"no canary field leaves it", nil, &slipway.Canary{Version: 2, Weight: 10, Replicas: 2}, ""},
		{"weight 0 removes it", &slipway.Canary{}, nil, ""},
		{"weight 0 with a version removes nothing", &slipway.Canary{Version: 3}, &slipway.Canary{Version: 3, Replicas: 1}, "canary weight must be 1-99"},
		{"replicas default to 1", &slipway.Canary{Version: 3, Weight: 25}, &slipway.Canary{Version: 3, Weight: 25, Replicas: 1}, ""},
		{"weight 100", &slipway.Canary{Version: 3, Weight: 100}, &slipway.Canary{Version: 3, Weight: 100, Replicas: 1}, "canary weight must be 1-99"},
		{"no version", &slipway.Canary{Weight: 5}, &slipway.Canary{Weight: 5, Replicas: 1}, "canary needs a version"},
		{"too many replicas", &slipway.Canary{Version: 3, Weight: 5, Replicas: 65}, &slipway.Canary{Version: 3, Weight: 5, Replicas: 65}, "canary replicas must be 1-64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := base()
			apply(d, slipway.DeploymentSpec{Canary: tc.spec})
			if (d.Canary == nil) != (tc.want == nil) || d.Canary != nil && *d.Canary != *tc.want {
				t.Fatalf("canary after apply: %+v, want %+v", d.Canary, tc.want)
			}
			err := d.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("validate: %v, want %q", err, tc.err)
			}
		})
	}
}

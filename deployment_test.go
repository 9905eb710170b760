package slipway

import (
	"strings"
	"testing"
)

func TestDeploymentStateCanMoveTo(t *testing.T) {
	tests := []struct {
		from, to DeploymentState
		ok       bool
	}{
		{DeploymentCreating, DeploymentActive, true},
		{DeploymentCreating, DeploymentCreating, true}, // restored after a restart: a new reason
		{DeploymentUpdating, DeploymentFailed, true},
		{DeploymentActive, DeploymentNeedsAttention, true},
		{DeploymentNeedsAttention, DeploymentActive, true},
		{DeploymentFailed, DeploymentInactive, true},
		{DeploymentInactive, DeploymentDeleting, true},
		{DeploymentInactive, DeploymentActive, false}, // activation goes through UPDATING
		{DeploymentFailed, DeploymentActive, false},
		{DeploymentDeleting, DeploymentActive, false},
		{DeploymentCreating, DeploymentInactive, false},
	}
	for _, tc := range tests {
		if got := tc.from.CanMoveTo(tc.to); got != tc.ok {
			t.Errorf("%s → %s: %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
}

func TestBatchingEnabled(t *testing.T) {
	for _, tc := range []struct {
		b  *Batching
		on bool
	}{{nil, false}, {&Batching{}, false}, {&Batching{MaxBatchSize: 1}, false}, {&Batching{MaxBatchSize: 2}, true}} {
		if got := tc.b.Enabled(); got != tc.on {
			t.Errorf("%+v.Enabled() = %v, want %v", tc.b, got, tc.on)
		}
	}
}

func TestDeploymentValidateAutoscaling(t *testing.T) {
	base := func() Deployment {
		return Deployment{Name: "d", Replicas: 1, TimeoutMS: 1000, MaxQueue: 10,
			Autoscaling: &Autoscaling{MinReplicas: 1, MaxReplicas: 4, TargetInFlight: 2, ScaleDownAfterS: 30}}
	}
	tests := []struct {
		name   string
		change func(d *Deployment)
		want   string // "" = valid; else a part of the message
	}{
		{"valid", func(d *Deployment) {}, ""},
		{"scale to zero starting at zero", func(d *Deployment) { d.Autoscaling.MinReplicas, d.Replicas = 0, 0 }, ""},
		{"lazy", func(d *Deployment) { d.Load = LoadLazy }, ""},
		{"unknown load", func(d *Deployment) { d.Load = "sometimes" }, `load must be "eager" or "lazy"`},
		{"min above max", func(d *Deployment) { d.Autoscaling.MinReplicas = 5 }, "min_replicas <= max_replicas"},
		{"max above the cap", func(d *Deployment) { d.Autoscaling.MaxReplicas = MaxReplicas + 1 }, "max_replicas <= 64"},
		{"starting count outside", func(d *Deployment) { d.Replicas = 6 }, "replicas (the starting count) must be within"},
		{"target zero", func(d *Deployment) { d.Autoscaling.TargetInFlight = 0 }, "target_in_flight"},
		{"scale down after zero", func(d *Deployment) { d.Autoscaling.ScaleDownAfterS = 0 }, "scale_down_after_s"},
		{"zero without a queue", func(d *Deployment) { d.Autoscaling.MinReplicas, d.MaxQueue = 0, 0 }, "max_queue of at least 1"},
		{"zero replicas without autoscaling", func(d *Deployment) { d.Autoscaling, d.Replicas = nil, 0 }, "replicas must be 1-64"},
	}
	for _, tt := range tests {
		d := base()
		tt.change(&d)
		err := d.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want invalid with %q", tt.name, err, tt.want)
		}
	}
}

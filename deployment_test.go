package slipway

import "testing"

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

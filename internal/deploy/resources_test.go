package deploy

import (
	"testing"

	"github.com/slipway-ml/slipway"
)

func TestApplyResources(t *testing.T) {
	half := &slipway.Resources{CPU: 0.5, MemoryMB: 512}
	for _, tc := range []struct {
		name      string
		current   *slipway.Resources
		spec      *slipway.Resources
		want      *slipway.Resources
		rollsOver bool // the change starts new replicas
	}{
		{"set", nil, half, half, true},
		{"left out keeps them", half, nil, half, false},
		{"{} removes them", half, &slipway.Resources{}, nil, true},
		{"changed", half, &slipway.Resources{CPU: 1, MemoryMB: 512}, &slipway.Resources{CPU: 1, MemoryMB: 512}, true},
		{"the same again", half, &slipway.Resources{CPU: 0.5, MemoryMB: 512}, half, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := &slipway.Deployment{Resources: tc.current}
			d := *prev
			apply(&d, slipway.DeploymentSpec{Resources: tc.spec})
			if (d.Resources == nil) != (tc.want == nil) || (d.Resources != nil && *d.Resources != *tc.want) {
				t.Fatalf("resources = %+v, want %+v", d.Resources, tc.want)
			}
			if got := !sameResources(prev.Resources, d.Resources); got != tc.rollsOver {
				t.Errorf("rolls out new replicas = %v, want %v", got, tc.rollsOver)
			}
			if tc.spec != nil && d.Resources == tc.spec {
				t.Error("the deployment shares the request's value")
			}
		})
	}
}

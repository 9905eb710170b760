package slipway

import (
	"math"
	"strings"
	"testing"
)

func TestResourcesValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *Resources
		want string // "" = valid
	}{
		{"nil", nil, ""},
		{"both", &Resources{CPU: 0.5, MemoryMB: 512}, ""},
		{"cpu only", &Resources{CPU: 2}, ""},
		{"memory only", &Resources{MemoryMB: 16}, ""},
		{"the most", &Resources{CPU: MaxResourceCPU, MemoryMB: MaxResourceMemoryMB}, ""},
		{"negative cpu", &Resources{CPU: -1}, "resources.cpu must be > 0 and at most 64"},
		{"too much cpu", &Resources{CPU: 64.5}, "resources.cpu must be > 0 and at most 64"},
		{"NaN cpu", &Resources{CPU: math.NaN()}, "resources.cpu"},
		{"below a millicore", &Resources{CPU: 0.0001}, "resources.cpu"},
		{"negative memory", &Resources{MemoryMB: -5}, "resources.memory_mb must be > 0"},
		{"too little memory", &Resources{MemoryMB: 8}, "resources.memory_mb"},
		{"too much memory", &Resources{MemoryMB: MaxResourceMemoryMB + 1}, "resources.memory_mb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || ErrorCode(err) != EINVALID):
				t.Fatalf("Validate() = %v (%s), want EINVALID naming %q", err, ErrorCode(err), tc.want)
			}
		})
	}
}

func TestResourcesUnits(t *testing.T) {
	for _, tc := range []struct {
		r           *Resources
		milli, byts int64
	}{
		{nil, 0, 0},
		{&Resources{CPU: 0.5, MemoryMB: 512}, 500, 512 << 20},
		{&Resources{CPU: 0.0015}, 2, 0}, // rounded up: a limit is never dropped
		{&Resources{CPU: 3}, 3000, 0},
	} {
		if got := tc.r.MilliCPU(); got != tc.milli {
			t.Errorf("%+v MilliCPU = %d, want %d", tc.r, got, tc.milli)
		}
		if got := tc.r.MemoryBytes(); got != tc.byts {
			t.Errorf("%+v MemoryBytes = %d, want %d", tc.r, got, tc.byts)
		}
	}
}

func TestDeploymentValidateNamesTheResourcesField(t *testing.T) {
	d := &Deployment{Name: "d", Replicas: 1, TimeoutMS: 1000, Resources: &Resources{CPU: 100}}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "resources.cpu") {
		t.Fatalf("Validate() = %v, want resources.cpu named", err)
	}
}

func TestDeploymentValidateRefusesResourcesInProcess(t *testing.T) {
	d := &Deployment{Name: "d", Replicas: 1, TimeoutMS: 1000, Isolation: IsolationInProcess, Resources: &Resources{MemoryMB: 512}}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "resources cannot limit replicas with isolation") {
		t.Fatalf("Validate() = %v, want the in-process refusal", err)
	}
	d.Resources = &Resources{}
	if err := d.Validate(); err != nil {
		t.Fatalf("Validate() with empty resources = %v", err)
	}
}

func TestDeploymentValidateRefusesResourcesOnExternalWorkers(t *testing.T) {
	d := &Deployment{Name: "d", Replicas: 1, TimeoutMS: 1000, Engine: EngineExternal, Resources: &Resources{CPU: 1}}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "resources cannot limit the workers") {
		t.Fatalf("Validate() = %v, want the external refusal", err)
	}
}

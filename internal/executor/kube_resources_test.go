package executor

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/slipway-ml/slipway"
)

// A run's pod asks for and is limited to its resources: cpu in millicores, memory in Mi, the job's
// limits.memory_bytes when it is lower.
func TestJobPodResources(t *testing.T) {
	k := &Kube{namespace: "ml", image: "localhost/slipway:dev"}
	for _, tc := range []struct {
		name        string
		res         *slipway.Resources
		memoryBytes int64
		cpu, memory string // "" = not set
	}{
		{"none", nil, 0, "", ""},
		{"both", &slipway.Resources{CPU: 0.5, MemoryMB: 512}, 0, "500m", "512Mi"},
		{"cores", &slipway.Resources{CPU: 2}, 0, "2", ""},
		{"a fraction of a millicore rounds up", &slipway.Resources{CPU: 0.0015}, 0, "2m", ""},
		{"memory only", &slipway.Resources{MemoryMB: 3072}, 0, "", "3Gi"},
		{"limits.memory_bytes alone", nil, 256 << 20, "", "256Mi"},
		{"the lower memory wins", &slipway.Resources{CPU: 1, MemoryMB: 1024}, 256 << 20, "1", "256Mi"},
		{"memory_mb below limits.memory_bytes", &slipway.Resources{MemoryMB: 128}, 1 << 30, "", "128Mi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := k.jobApply(Spec{ID: "jr-1", Resources: tc.res, Limits: slipway.JobLimits{MemoryBytes: tc.memoryBytes}}, podSpec{})
			c := job.Spec.Template.Spec.Containers[0]
			if tc.cpu == "" && tc.memory == "" {
				if c.Resources != nil {
					t.Fatalf("resources = %+v, want none", c.Resources)
				}
				return
			}
			if c.Resources == nil {
				t.Fatal("no resources on the container")
			}
			for _, list := range []struct {
				name string
				l    corev1.ResourceList
			}{{"requests", *c.Resources.Requests}, {"limits", *c.Resources.Limits}} {
				checkQuantity(t, list.name, list.l, corev1.ResourceCPU, tc.cpu)
				checkQuantity(t, list.name, list.l, corev1.ResourceMemory, tc.memory)
			}
		})
	}
}

func checkQuantity(t *testing.T, list string, l corev1.ResourceList, name corev1.ResourceName, want string) {
	t.Helper()
	q, ok := l[name]
	switch {
	case want == "" && ok:
		t.Errorf("%s %s = %s, want none", list, name, q.String())
	case want != "" && !ok:
		t.Errorf("%s has no %s, want %s", list, name, want)
	case want != "" && q.String() != want:
		t.Errorf("%s %s = %s, want %s", list, name, q.String(), want)
	}
}

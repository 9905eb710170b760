package kubereplica

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/slipway-ml/slipway"
)

// A deployment's resources become its worker pods' requests and limits, and a change of them changes the
// pods' spec hash (new pods roll out); a deployment without resources keeps the hash it had before resources
// existed.
func TestReplicaPodResources(t *testing.T) {
	c := &Controller{cfg: Config{Namespace: "ml", Image: "localhost/slipway:dev"}}
	bare := templateHash(c.cfg, Template{})
	for _, tc := range []struct {
		name        string
		res         *slipway.Resources
		cpu, memory string // "" = not set
	}{
		{"none", nil, "", ""},
		{"half a core and 512 MiB", &slipway.Resources{CPU: 0.5, MemoryMB: 512}, "500m", "512Mi"},
		{"cores only", &slipway.Resources{CPU: 4}, "4", ""},
		{"memory only", &slipway.Resources{MemoryMB: 2048}, "", "2Gi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl := Template{Resources: tc.res}
			d := c.deployment("churn-api", 3, ObjectName("churn-api", 3), 2, templateHash(c.cfg, tpl), tpl)
			ctr := d.Spec.Template.Spec.Containers[0]
			if hashChanged := templateHash(c.cfg, tpl) != bare; hashChanged != (tc.res != nil) {
				t.Errorf("spec hash changed = %v, want %v", hashChanged, tc.res != nil)
			}
			if tc.res == nil {
				if ctr.Resources != nil {
					t.Fatalf("resources = %+v, want none", ctr.Resources)
				}
				return
			}
			if ctr.Resources == nil || ctr.Resources.Requests == nil || ctr.Resources.Limits == nil {
				t.Fatalf("resources = %+v, want requests and limits", ctr.Resources)
			}
			for _, l := range []corev1.ResourceList{*ctr.Resources.Requests, *ctr.Resources.Limits} {
				for name, want := range map[corev1.ResourceName]string{corev1.ResourceCPU: tc.cpu, corev1.ResourceMemory: tc.memory} {
					q, ok := l[name]
					if (want == "") == ok || (ok && q.String() != want) {
						t.Errorf("%s = %v (set %v), want %q", name, q.String(), ok, want)
					}
				}
			}
		})
	}
}

package executor

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/slipway-ml/slipway"
)

// KubeResources is a container's requests and limits from r (cpu in millicores, memory in Mi), with the
// memory lowered to memoryBytes when that is set and lower (a job's limits.memory_bytes); nil when nothing is
// limited. Requests equal limits: what a replica or a run is given is what it may use, and a pod with both
// set for every resource gets the Guaranteed QoS class (the last to be evicted).
func KubeResources(r *slipway.Resources, memoryBytes int64) *corev1ac.ResourceRequirementsApplyConfiguration {
	list := corev1.ResourceList{}
	if m := r.MilliCPU(); m > 0 {
		list[corev1.ResourceCPU] = *resource.NewMilliQuantity(m, resource.DecimalSI)
	}
	mem := r.MemoryBytes()
	if memoryBytes > 0 && (mem == 0 || memoryBytes < mem) {
		mem = memoryBytes
	}
	if mem > 0 {
		list[corev1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
	}
	if len(list) == 0 {
		return nil
	}
	return corev1ac.ResourceRequirements().WithLimits(list).WithRequests(list.DeepCopy())
}

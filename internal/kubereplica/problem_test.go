package kubereplica

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodProblem(t *testing.T) {
	killed := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	pod := func(st corev1.ContainerStatus) *corev1.Pod {
		st.Name, st.Image = "worker", "registry.invalid/slipway:none"
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "slipway-churn-v1-abc"},
			Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "worker",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{st}}}
	}
	waiting := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "rpc error:\n  lookup registry.invalid: no such host"}}}
	}
	for _, tc := range []struct {
		name string
		st   corev1.ContainerStatus
		want []string
	}{
		{"pull back-off", waiting("ImagePullBackOff"), []string{"image registry.invalid/slipway:none", "could not be pulled on node node-1 (ImagePullBackOff)", "rpc error: lookup registry.invalid: no such host"}},
		{"pull error", waiting("ErrImagePull"), []string{"registry.invalid/slipway:none", "(ErrImagePull)"}},
		{"never pull", waiting("ErrImageNeverPull"), []string{"is not on node node-1", "import it on the node"}},
		{"config error", waiting("CreateContainerConfigError"), []string{"could not start on node node-1 (CreateContainerConfigError)"}},
		{"OOM, restarted since", corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137, FinishedAt: killed}}},
			[]string{"replica pod slipway-churn-v1-abc was OOM-killed on node node-1", "resources.memory_mb 64"}},
		{"still loading", corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}, nil},
		{"being created", waiting("ContainerCreating"), nil},
		{"killed, not for memory", corev1.ContainerStatus{LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 137}}}, nil},
	} {
		got, at := podProblem(pod(tc.st))
		if (got == "") != (tc.want == nil) {
			t.Errorf("%s: problem %q", tc.name, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q does not say %q", tc.name, got, w)
			}
		}
		if strings.HasPrefix(tc.name, "OOM") && !at.Equal(killed.Time) {
			t.Errorf("%s: seen at %s, want the kill's time %s", tc.name, at, killed.Time)
		}
	}
}

package kubereplica

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestReconcileKeepsAFollowedVersion: the old version of a rollout, which this server (the host) no longer
// demands, keeps its Deployment while another server's following pool uses its pods, and loses it once none
// does.
func TestReconcileKeepsAFollowedVersion(t *testing.T) {
	two := int32(2)
	old := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: ObjectName("churn", 1), Namespace: "default",
		Labels:      map[string]string{ManagedByLabel: managedBy, ComponentLabel: component, DeploymentLabel: "churn", VersionLabel: "1"},
		Annotations: map[string]string{deploymentAnnotation: "churn"}},
		Spec: appsv1.DeploymentSpec{Replicas: &two}}
	cs := fake.NewClientset(old)
	followed := map[int]bool{1: true}
	c := New(Config{Client: cs, Watch: cs, Namespace: "default",
		Demand: func(string) map[int]int { return map[int]int{} }, // the host's sessions all moved to version 2
		Template: func(_ context.Context, _ string, v int) (Template, error) {
			return Template{}, fmt.Errorf("version %d: %w", v, ErrNotServed)
		},
		Followed: func(context.Context, string) (map[int]bool, error) { return followed, nil }})
	defer c.Stop()
	exists := func() bool {
		_, err := cs.AppsV1().Deployments("default").Get(context.Background(), old.Name, metav1.GetOptions{})
		return err == nil
	}
	if err := c.reconcile(context.Background(), "churn"); err != nil {
		t.Fatal(err)
	}
	if !exists() {
		t.Fatal("the version a following server still uses lost its Deployment")
	}
	if !c.retrying["churn"] {
		t.Error("no look again scheduled while the version is kept")
	}
	followed = map[int]bool{}
	if err := c.reconcile(context.Background(), "churn"); err != nil {
		t.Fatal(err)
	}
	if exists() {
		t.Fatal("the version nobody uses any more kept its Deployment")
	}
}

func TestKeepFollowed(t *testing.T) {
	zero, two := int32(0), int32(2)
	d := func(n *int32) *appsv1.Deployment { return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: n}} }
	for _, c := range []struct {
		want     int
		followed bool
		existing *appsv1.Deployment
		keep     bool
	}{
		{0, true, d(&two), true},
		{0, false, d(&two), false}, // nobody follows: scaled down or deleted as before
		{1, true, d(&two), false},  // the host's own demand decides a version it uses
		{0, true, d(&zero), false}, // already at zero: nothing to keep
		{0, true, nil, false},      // no Deployment: nothing to keep
	} {
		if got := keepFollowed(c.want, c.followed, c.existing); got != c.keep {
			t.Errorf("keepFollowed(%d, %v, %v) = %v, want %v", c.want, c.followed, c.existing != nil, got, c.keep)
		}
	}
}

// TestKeepsSeesTheVersionsPods: a version whose pods run (and are not being deleted) is kept.
func TestKeepsSeesTheVersionsPods(t *testing.T) {
	pod := func(name, version string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels:      map[string]string{ManagedByLabel: managedBy, ComponentLabel: component, DeploymentLabel: "churn", VersionLabel: version},
			Annotations: map[string]string{deploymentAnnotation: "churn"}}}
		if deleting {
			now := metav1.Now()
			p.DeletionTimestamp = &now
			p.Finalizers = []string{"test"} // the fake keeps a deleting pod only with one
		}
		return p
	}
	cs := fake.NewClientset(pod("churn-v1-a", "1", false), pod("churn-v3-a", "3", true))
	c := New(Config{Client: cs, Watch: cs, Namespace: "default", PodLost: func(string) {}, PodReadied: func(string) {}})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for _, k := range []struct {
		deployment string
		version    int
		want       bool
	}{{"churn", 1, true}, {"churn", 2, false}, {"churn", 3, false}, {"other", 1, false}} {
		if got := c.Keeps(k.deployment, k.version); got != k.want {
			t.Errorf("Keeps(%s, %d) = %v, want %v", k.deployment, k.version, got, k.want)
		}
	}
}

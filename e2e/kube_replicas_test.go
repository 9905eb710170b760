package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/kubereplica"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// replicaObjects lists a deployment's replica Deployments and their live pods (by Slipway's labels).
func replicaObjects(t *testing.T, cs kubernetes.Interface, name string) ([]appsv1.Deployment, []corev1.Pod) {
	t.Helper()
	sel := kubereplica.ManagedByLabel + "=slipway," + kubereplica.ComponentLabel + "=replica," + kubereplica.DeploymentLabel + "=" + name
	ds, err := cs.AppsV1().Deployments("default").List(ctxFor(t, time.Minute), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := cs.CoreV1().Pods("default").List(ctxFor(t, time.Minute), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range ps.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	var dlive []appsv1.Deployment
	for _, d := range ds.Items {
		if d.DeletionTimestamp == nil {
			dlive = append(dlive, d)
		}
	}
	return dlive, live
}

func readyPods(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// workerPID finds, on this machine (the test cluster's only node), the `slipway worker serve` process of a
// pod: the test kills it with SIGKILL, as an OOM kill or a crash would.
func workerPID(t *testing.T, pod string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if !bytes.Contains(cmd, []byte("worker\x00serve\x00")) {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return string(kv) == "SLIPWAY_POD_NAME="+pod }) {
			return pid
		}
	}
	t.Fatalf("no worker process of pod %s on this machine", pod)
	return 0
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// connected reports whether deployment name has want announced workers, every one serving a replica slot.
func connected(s *server, name string, want int) bool {
	d, err := s.Client().GetDeployment(context.Background(), name)
	if err != nil || d.State != slipway.DeploymentActive || len(d.RemoteReplicas) != want {
		return false
	}
	for _, r := range d.RemoteReplicas {
		if r.State != "CONNECTED" || r.Pod == "" {
			return false
		}
	}
	return true
}

// TestKubernetesReplicas: with --engine kubernetes a deployment is a Kubernetes Deployment of worker pods
// (server-side apply, Slipway's labels, probes): the ONNX and Python examples with 2 replicas answer exactly as
// local replicas do; a kill -9 of one worker under load fails no request and Kubernetes restarts it; deactivate
// removes the pods and activate brings them back on the same URL; a server restart adopts the Deployment and
// its pods; delete removes them.
func TestKubernetesReplicas(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	dir, addr := t.TempDir(), freePort(t)
	start := func() *server {
		return startKubeServer(t, k, dir, "--replica-network", "host", "--addr", addr)
	}
	s := start()
	local := startServer(t, "")
	pushExamples(t, s)
	pushExamples(t, local)

	raw, err := os.ReadFile(examplePath("onnx-churn", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedONNX
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	cols, rows := churnRows(t, 40)
	cases := []remoteCase{
		{runtime: "onnx", model: "churn-onnx:1", body: mustJSON(map[string]any{"inputs": exp.Features})},
		{runtime: "python", model: "churn:1", body: mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})},
	}
	began := time.Now()
	for _, c := range cases {
		deploy(t, local, "k"+c.runtime, "--model", c.model, "--replicas", "1")
		deploy(t, s, "k"+c.runtime, "--model", c.model, "--replicas", "2", "--no-wait")
	}
	for _, c := range cases {
		name := "k" + c.runtime
		waitActive(t, s, name)
		t.Logf("%s: deploy to ACTIVE on 2 pods: %s", name, time.Since(began).Round(time.Millisecond))
		ds, pods := replicaObjects(t, cs, name)
		if len(ds) != 1 || *ds[0].Spec.Replicas != 2 || ds[0].Name != "slipway-"+name+"-v1" || len(pods) != 2 {
			t.Fatalf("%s: Deployments %v, %d pods: want one slipway-%s-v1 of 2 replicas", name, names(ds), len(pods), name)
		}
		tmpl := ds[0].Spec.Template.Spec
		if !tmpl.HostNetwork || tmpl.Containers[0].Image != k.Image || tmpl.Containers[0].ReadinessProbe == nil ||
			tmpl.Containers[0].LivenessProbe == nil || ds[0].Labels[kubereplica.ManagedByLabel] != "slipway" {
			t.Errorf("%s: pod template %+v, labels %v", name, tmpl, ds[0].Labels)
		}
		if !slices.ContainsFunc(ds[0].ManagedFields, func(f metav1.ManagedFieldsEntry) bool {
			return f.Manager == "slipway" && f.Operation == metav1.ManagedFieldsOperationApply
		}) {
			t.Errorf("%s: not written by server-side apply as slipway: %+v", name, ds[0].ManagedFields)
		}
		waitFor(t, name+": 2 pods' workers connected", 2*time.Minute, func() bool { return connected(s, name, 2) })

		// Same rows, same answers as the local engine's replicas.
		path := "/deployments/" + name + "/invocations"
		lr, lb := local.do(t, "POST", path, local.Token, bytes.NewReader(c.body), "application/json")
		kr, kb := s.do(t, "POST", path, s.Token, bytes.NewReader(c.body), "application/json")
		if lr.StatusCode != 200 || kr.StatusCode != 200 || !bytes.Equal(lb, kb) {
			t.Fatalf("%s: local %d %s\nkubernetes %d %s", name, lr.StatusCode, lb, kr.StatusCode, kb)
		}
	}

	// kill -9 one worker process under load: no request fails, the kubelet restarts the container, and the
	// router takes the restarted worker again.
	name, body := "konnx", cases[0].body
	path := "/deployments/" + name + "/invocations"
	_, pods := replicaObjects(t, cs, name)
	victim := pods[0].Name
	l := startLoad(t, s, path, body, 8)
	waitFor(t, "requests under way", time.Minute, func() bool { return l.count() > 20 })
	killed := time.Now()
	if err := syscall.Kill(workerPID(t, victim), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed worker's container restarted", 2*time.Minute, func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctxFor(t, time.Minute), victim, metav1.GetOptions{})
		return err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	waitFor(t, "both workers connected again", 2*time.Minute, func() bool { return connected(s, name, 2) })
	t.Logf("kill -9 of a worker to its replacement serving: %s", time.Since(killed).Round(time.Millisecond))
	before := l.count()
	waitFor(t, "requests served after the restart", time.Minute, func() bool { return l.count() > before+20 })
	status, errs := l.finish()
	if len(status) != 1 || status[200] == 0 {
		t.Fatalf("statuses %v (want only 200) across a worker kill -9: %v", status, errs)
	}
	if ds, _ := replicaObjects(t, cs, name); len(ds) != 1 || *ds[0].Spec.Replicas != 2 {
		t.Errorf("after the kill: Deployments %v, want the same one at 2 replicas", names(ds))
	}
	t.Logf("%d requests, all 200, across a worker kill -9", status[200])

	// An update to version 2 under load: version 2's Deployment comes up beside version 1's, the router
	// switches once its workers serve, version 1's Deployment goes; no request fails.
	if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx v2: %s %s", out, errOut)
	}
	l = startLoad(t, s, path, body, 8)
	waitFor(t, "requests under way", time.Minute, func() bool { return l.count() > 20 })
	if out, errOut, code := s.cli("deployments", "update", name, "--model-version", "2"); code != 0 {
		t.Fatalf("update to version 2: %s %s", out, errOut)
	}
	waitFor(t, "version 2's Deployment alone", 2*time.Minute, func() bool {
		ds, pods := replicaObjects(t, cs, name)
		return len(ds) == 1 && ds[0].Name == "slipway-"+name+"-v2" && *ds[0].Spec.Replicas == 2 && len(pods) == 2
	})
	before = l.count()
	waitFor(t, "requests served by version 2", time.Minute, func() bool { return l.count() > before+20 })
	if status, errs := l.finish(); len(status) != 1 || status[200] == 0 {
		t.Fatalf("statuses %v (want only 200) across an update: %v", status, errs)
	}

	// Deactivate: the Deployment goes to zero, its pods go; activate: they come back, same URL.
	if out, errOut, code := s.cli("deployments", "deactivate", name); code != 0 {
		t.Fatalf("deactivate: %s %s", out, errOut)
	}
	waitFor(t, "no pods after deactivate", 2*time.Minute, func() bool {
		ds, pods := replicaObjects(t, cs, name)
		return len(ds) == 1 && *ds[0].Spec.Replicas == 0 && len(pods) == 0
	})
	if out, errOut, code := s.cli("deployments", "activate", name); code != 0 {
		t.Fatalf("activate: %s %s", out, errOut)
	}
	waitActive(t, s, name)
	if resp, b := s.do(t, "POST", path, s.Token, bytes.NewReader(body), "application/json"); resp.StatusCode != 200 {
		t.Fatalf("predict after activate: %d %s", resp.StatusCode, b)
	}
	if ds, pods := replicaObjects(t, cs, name); len(ds) != 1 || *ds[0].Spec.Replicas != 2 || readyPods(pods) != 2 {
		t.Fatalf("after activate: Deployments %v, %d ready pods; want one at 2", names(ds), readyPods(pods))
	}

	// Scaling (by hand here; the autoscaler scales the pools the same way) changes the Deployment's count.
	for _, n := range []int{3, 1, 2} {
		if out, errOut, code := s.cli("deployments", "update", name, "--replicas", strconv.Itoa(n)); code != 0 {
			t.Fatalf("scale to %d: %s %s", n, out, errOut)
		}
		waitFor(t, fmt.Sprintf("%d pods serving", n), 2*time.Minute, func() bool {
			ds, pods := replicaObjects(t, cs, name)
			return len(ds) == 1 && int(*ds[0].Spec.Replicas) == n && len(pods) == n && connected(s, name, n)
		})
	}
	if resp, b := s.do(t, "POST", path, s.Token, bytes.NewReader(body), "application/json"); resp.StatusCode != 200 {
		t.Fatalf("predict after scaling: %d %s", resp.StatusCode, b)
	}

	// A server restart adopts the Deployments and their pods: no second Deployment, no new pod. What Slipway
	// left of a deployment that no longer exists (deleted while no server ran: here made by hand) is removed;
	// a Deployment without Slipway's labels is not touched.
	stray := func(name string, labels map[string]string) {
		zero := int32(0)
		sel := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{"slipway.dev/deployment": "ghost"}},
			Spec: appsv1.DeploymentSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: k.Image, ImagePullPolicy: corev1.PullNever}}}}}}
		if _, err := cs.AppsV1().Deployments("default").Create(ctxFor(t, time.Minute), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.AppsV1().Deployments("default").Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	stray("slipway-ghost-v1", map[string]string{kubereplica.ManagedByLabel: "slipway", kubereplica.ComponentLabel: "replica",
		kubereplica.DeploymentLabel: "ghost", kubereplica.VersionLabel: "1"})
	stray("not-slipway", map[string]string{kubereplica.DeploymentLabel: "ghost", kubereplica.VersionLabel: "1"})
	dsBefore, podsBefore := replicaObjects(t, cs, name)
	s.Stop()
	s = start()
	waitFor(t, "the ghost's Deployment removed", time.Minute, func() bool {
		ds, _ := replicaObjects(t, cs, "ghost")
		return len(ds) == 0
	})
	if _, err := cs.AppsV1().Deployments("default").Get(ctxFor(t, time.Minute), "not-slipway", metav1.GetOptions{}); err != nil {
		t.Fatalf("a Deployment without Slipway's labels: %v", err)
	}
	waitFor(t, "the adopted workers connected", 2*time.Minute, func() bool { return connected(s, name, 2) })
	dsAfter, podsAfter := replicaObjects(t, cs, name)
	if len(dsAfter) != 1 || dsAfter[0].UID != dsBefore[0].UID || !slices.Equal(podUIDs(podsAfter), podUIDs(podsBefore)) {
		t.Fatalf("after the restart: Deployments %v (before %v), pods %v (before %v): want the same ones", names(dsAfter), names(dsBefore), podUIDs(podsAfter), podUIDs(podsBefore))
	}
	if resp, b := s.do(t, "POST", path, s.Token, bytes.NewReader(body), "application/json"); resp.StatusCode != 200 {
		t.Fatalf("predict after the restart: %d %s", resp.StatusCode, b)
	}

	// Delete: the Deployments (and with them the pods) go.
	for _, c := range cases {
		if out, errOut, code := s.cli("deployments", "delete", "k"+c.runtime); code != 0 {
			t.Fatalf("delete: %s %s", out, errOut)
		}
	}
	waitFor(t, "no replica Deployments or pods after delete", 2*time.Minute, func() bool {
		for _, c := range cases {
			if ds, pods := replicaObjects(t, cs, "k"+c.runtime); len(ds)+len(pods) != 0 {
				return false
			}
		}
		return true
	})
}

func names(ds []appsv1.Deployment) []string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s(%d)", d.Name, *d.Spec.Replicas))
	}
	return out
}

func podUIDs(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, string(p.UID))
	}
	slices.Sort(out)
	return out
}

// count is how many requests the load has sent so far.
func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.status {
		n += c
	}
	return n
}

// TestKubernetesReplicasScaleToZero: the autoscaler's decisions are the Deployment's replica count. An idle
// deployment with min_replicas 0 has no pod; requests to its URL start one (the cold start waits for the pod's
// worker) and all succeed; idle again, the pod goes.
func TestKubernetesReplicasScaleToZero(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	s := startKubeServer(t, k, "", "--replica-network", "host")
	pushExamples(t, s)
	name := "ksleepy"
	deploy(t, s, name, "--model", "churn-onnx:1", "--min-replicas", "0", "--max-replicas", "2",
		"--target-in-flight", "1", "--scale-down-after", "1s")
	t.Cleanup(func() { s.cli("deployments", "delete", name) })
	body := onnxBody(t)
	for round := range 2 {
		waitFor(t, fmt.Sprintf("round %d: scaled to zero, no pod", round), 3*time.Minute, func() bool {
			d, err := s.Client().GetDeployment(context.Background(), name)
			ds, pods := replicaObjects(t, cs, name)
			return err == nil && d.ScaledToZero && len(ds) == 1 && *ds[0].Spec.Replicas == 0 && len(pods) == 0
		})
		began := time.Now()
		statuses := make([]int, 3)
		var done = make(chan struct{})
		for i := range statuses {
			go func() {
				defer func() { done <- struct{}{} }()
				req, _ := http.NewRequest("POST", s.URL+"/deployments/"+name+"/invocations", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.Token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					statuses[i] = -1
					return
				}
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		for range statuses {
			<-done
		}
		if slices.ContainsFunc(statuses, func(st int) bool { return st != 200 }) {
			t.Fatalf("round %d: statuses %v across a cold start on a pod, want all 200", round, statuses)
		}
		t.Logf("round %d: cold start on a pod answered in %s", round, time.Since(began).Round(time.Millisecond))
		if ds, _ := replicaObjects(t, cs, name); len(ds) != 1 || *ds[0].Spec.Replicas < 1 {
			t.Fatalf("round %d: after the cold start, Deployments %v", round, names(ds))
		}
	}
}

package executor

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The pod's command, environment and files for a run: the server's paths become the pod's, the server's own
// interpreter and PATH the image's, and only the run's files (not its log, outputs or scratch) are shipped.
func TestTranslateRewritesPathsAndShipsTheRunFolder(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"work/train.py", "work/data/rows.csv", "script.sh", "log", "kube.json", "outputs/old.txt", "tmp/scratch"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := Spec{ID: "jr-abc", Path: "/opt/pyenv/python3", Args: []string{"-u", "train.py", "--out", dir + "/outputs/model.pkl"},
		Dir: dir + "/work", StateDir: dir, Env: []string{"PATH=/root/bin", "SLIPWAY_PYTHON=/opt/pyenv/python3",
			"SLIPWAY_OUTPUT_DIR=" + dir + "/outputs", "TMPDIR=" + dir + "/tmp", "SLIPWAY_URL_FILE=/data/server.url", "GREETING=hi"},
		Limits: Spec{}.Limits}
	spec.Limits.CPUSeconds = 30
	ps, err := translate(spec)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/bin/python3", "-u", "train.py", "--out", "/slipway/run/outputs/model.pkl"}; !slices.Equal(ps.command[4:], want) {
		t.Errorf("command %q, want … %q", ps.command, want)
	}
	env := map[string]string{}
	for _, e := range ps.env {
		env[*e.Name] = *e.Value
	}
	for k, want := range map[string]string{"PATH": imagePATH, "SLIPWAY_PYTHON": imagePython, "SLIPWAY_OUTPUT_DIR": "/slipway/run/outputs",
		"TMPDIR": "/slipway/run/tmp", "SLIPWAY_WORKDIR": "/slipway/run/work", "GREETING": "hi", "SLIPWAY_LIMIT_CPU_SECONDS": "30"} {
		if env[k] != want {
			t.Errorf("env %s = %q, want %q", k, env[k], want)
		}
	}
	if _, ok := env["SLIPWAY_URL_FILE"]; ok {
		t.Error("SLIPWAY_URL_FILE, a file of the server's machine, reached the pod")
	}
	if ps.outputsDir != dir+"/outputs" {
		t.Errorf("outputs dir %q", ps.outputsDir)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(ps.files))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			names = append(names, h.Name)
		}
	}
	slices.Sort(names)
	if want := []string{"script.sh", "work/data/rows.csv", "work/train.py"}; !slices.Equal(names, want) {
		t.Errorf("shipped %v, want %v", names, want)
	}
}

func TestTranslateRefusesFilesOverTheConfigMapLimit(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "work", "big.bin"), make([]byte, maxShippedFiles+1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := translate(Spec{ID: "jr-x", Path: "/bin/sh", StateDir: dir, Dir: dir + "/work"})
	if err == nil || !strings.Contains(err.Error(), "ConfigMap") {
		t.Fatalf("err = %v, want the ConfigMap size limit", err)
	}
}

// A pod's status becomes the run's exit: OOM kills, signals, images a node lacks, evictions, and notes while
// it waits.
func TestObserveMapsPodStatus(t *testing.T) {
	k := &Kube{image: "localhost/slipway:dev", runs: map[string]*kubeRun{}}
	pod := func(cs corev1.ContainerState, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "slipway-jr-1-abc"},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "run", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("96Mi")}}}}},
			Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "run", State: cs}}}}
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		started bool
		exit    *Exit
		note    string
	}{
		{"running", pod(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}, corev1.PodRunning), true, nil, ""},
		{"exit 3", pod(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}}, corev1.PodFailed), true, &Exit{Code: 3}, ""},
		{"sigkill", pod(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error"}}, corev1.PodFailed), true, &Exit{Code: -1, Signal: "killed"}, ""},
		{"oom", pod(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}, corev1.PodFailed), true,
			&Exit{Code: 137, Reason: "OOM-killed on node node-a: the run used more memory than its limit (limits.memory_bytes 96Mi)"}, ""},
		{"never pull", pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}, corev1.PodPending), false,
			&Exit{Code: -1, Reason: "image localhost/slipway:dev is not on node node-a, and its pull policy is Never (a localhost/ image): import it on the node (scripts/image.sh; ctr -n k8s.io images import) or give --image an image a registry serves"}, ""},
		{"creating", pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}, corev1.PodPending), false, nil,
			"waiting for the pod slipway-jr-1-abc: ContainerCreating"},
		{"evicted", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}}, false,
			&Exit{Code: -1, Reason: "the pod p failed (Evicted): The node was low on resource: memory."}, ""},
	} {
		st := k.observe(tc.pod)
		if st.started != tc.started || st.note != tc.note || (st.exit == nil) != (tc.exit == nil) || (st.exit != nil && *st.exit != *tc.exit) {
			t.Errorf("%s: observed %+v (exit %+v), want started %v exit %+v note %q", tc.name, st, st.exit, tc.started, tc.exit, tc.note)
		}
	}
}

func TestJobNameIsAValidKubernetesName(t *testing.T) {
	if got := jobName("jr-abcdefghijklmnop"); got != "slipway-jr-abcdefghijklmnop" {
		t.Errorf("jobName = %q", got)
	}
	if got := jobName(strings.Repeat("a", 80)); len(got) != 63 {
		t.Errorf("jobName of a long id has %d characters", len(got))
	}
}

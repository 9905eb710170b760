package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
	"github.com/slipway-ml/slipway/internal/executor"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// The kubernetes engine's tests run real pods on the single-node cluster scripts/k8s-dev.sh starts (once per
// test binary; TestMain stops it).

func startKubeServer(t *testing.T, k *slipwaytest.Kubernetes, dataDir string, extra ...string) *server {
	t.Helper()
	return startServer(t, dataDir, append([]string{"--engine", "kubernetes", "--kubeconfig", k.Kubeconfig, "--namespace", "default",
		"--image", k.Image}, extra...)...)
}

func kubeClient(t *testing.T, k *slipwaytest.Kubernetes) kubernetes.Interface {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runJobs lists the Kubernetes Jobs of a run (by Slipway's labels).
func runJobs(t *testing.T, cs kubernetes.Interface, runID string) []string {
	t.Helper()
	jobs, err := cs.BatchV1().Jobs("default").List(ctxFor(t, time.Minute), metav1.ListOptions{
		LabelSelector: executor.ManagedByLabel + "=slipway," + executor.RunIDLabel + "=" + runID})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range jobs.Items {
		if j.DeletionTimestamp == nil {
			names = append(names, j.Name)
		}
	}
	return names
}

func waitKubeRun(t *testing.T, c *client.Client, id string) *slipway.JobRun {
	t.Helper()
	r, err := c.WaitJobRun(ctxFor(t, 4*time.Minute), id, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("wait for run %s: %v (last seen %+v)", id, err, r)
	}
	return r
}

func TestKubernetesJobRuns(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	t.Logf("cluster up in %s (scripts/k8s-dev.sh up, images imported, node ready)", k.UpTime.Round(time.Millisecond))
	s := startKubeServer(t, k, "")
	c := s.Client()
	cs := kubeClient(t, k)

	// A Python job: scikit-learn from the image, its arguments, its token against the server, outputs.json.
	py := `import json, os, sys, urllib.request, sklearn
print("python job started", flush=True)
req = urllib.request.Request(os.environ["SLIPWAY_URL"] + "/api/v1/whoami", headers={"Authorization": "Bearer " + os.environ["SLIPWAY_TOKEN"]})
who = json.load(urllib.request.urlopen(req))
print("sklearn", sklearn.__version__, "args", " ".join(sys.argv[1:]))
json.dump({"role": who["role"], "args": sys.argv[1:], "greeting": os.environ.get("GREETING"), "cwd_files": sorted(os.listdir("."))},
          open(os.path.join(os.environ["SLIPWAY_OUTPUT_DIR"], "outputs.json"), "w"))
`
	if _, err := c.CreateJob(ctxFor(t, time.Minute), slipway.JobSpec{Name: "kpy", Env: map[string]string{"GREETING": "hi"}}, strings.NewReader(py), "kpy.py"); err != nil {
		t.Fatal(err)
	}
	submitted := time.Now()
	r, err := c.RunJob(ctxFor(t, time.Minute), "kpy", client.RunInput{Args: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the python job's first line", 3*time.Minute, func() bool {
		return strings.Contains(runLog(t, c, r.ID), "python job started")
	})
	t.Logf("job submit to its first log line (pod running): %s", time.Since(submitted).Round(time.Millisecond))
	r = waitKubeRun(t, c, r.ID)
	if r.State != slipway.RunSucceeded || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Fatalf("python run = %s %q exit %v\nlog:\n%s", r.State, r.Reason, r.ExitCode, runLog(t, c, r.ID))
	}
	if o := r.Outputs; o["role"] != "editor" || o["greeting"] != "hi" || len(o["args"].([]any)) != 2 || !strings.Contains(strings.Join(toStrings(o["cwd_files"]), ","), "kpy.py") {
		t.Errorf("outputs = %v", o)
	}
	if log := runLog(t, c, r.ID); !strings.Contains(log, "stdout sklearn 1.") || !strings.Contains(log, "args a b") {
		t.Errorf("log:\n%s", log)
	}
	if jobs := runJobs(t, cs, r.ID); len(jobs) != 0 {
		t.Errorf("the ended run's Jobs are still there: %v", jobs)
	}

	// A shell job that fails: FAILED with its exit code and its last words.
	// The pause keeps the two lines in order: a pod's log merges stdout and stderr by arrival, and two writes to
	// different pipes within microseconds may swap.
	createShellJob(t, c, "kfail", "echo working\nsleep 0.5\necho 'cannot read the input table' >&2\nexit 3\n", slipway.JobSpec{})
	r, err = c.RunJob(ctxFor(t, time.Minute), "kfail", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	r = waitKubeRun(t, c, r.ID)
	if r.State != slipway.RunFailed || r.ExitCode == nil || *r.ExitCode != 3 || r.Reason != "exit status 3: cannot read the input table" {
		t.Errorf("failing run = %s %q exit %v", r.State, r.Reason, r.ExitCode)
	}

	// Timeout: the Job is deleted and the run fails with the reason.
	createShellJob(t, c, "ksleepy", "echo going to sleep\nsleep 300\n", slipway.JobSpec{MaxRuntimeSeconds: 3})
	r, err = c.RunJob(ctxFor(t, time.Minute), "ksleepy", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	r = waitKubeRun(t, c, r.ID)
	if r.State != slipway.RunFailed || r.Reason != "exceeded max runtime 3s" {
		t.Errorf("timed-out run = %s %q", r.State, r.Reason)
	}
	if jobs := runJobs(t, cs, r.ID); len(jobs) != 0 {
		t.Errorf("the timed-out run's Jobs are still there: %v", jobs)
	}

	// Cancel: the Job goes (foreground deletion), the run is CANCELED, the log says so.
	createShellJob(t, c, "kcancel", "echo sleeping now\nsleep 300\n", slipway.JobSpec{})
	r, err = c.RunJob(ctxFor(t, time.Minute), "kcancel", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, c, r.ID, "stdout sleeping now")
	if jobs := runJobs(t, cs, r.ID); len(jobs) != 1 || !strings.HasPrefix(jobs[0], "slipway-") {
		t.Fatalf("a running run has Jobs %v, want one slipway-...", jobs)
	}
	out, errOut, code := s.cli("jobs", "cancel", r.ID)
	if code != 0 || !strings.Contains(out, "CANCELED") {
		t.Fatalf("jobs cancel: %s %s", out, errOut)
	}
	r, _ = c.GetJobRun(ctxFor(t, time.Minute), r.ID)
	if r.State != slipway.RunCanceled || !strings.HasPrefix(r.Reason, "canceled by ") || !strings.Contains(runLog(t, c, r.ID), "run canceled") {
		t.Errorf("canceled run = %s %q", r.State, r.Reason)
	}
	if jobs := runJobs(t, cs, r.ID); len(jobs) != 0 {
		t.Errorf("the canceled run's Jobs are still there: %v", jobs)
	}

	// A memory limit is the container's: going over it is an OOM kill, said as such.
	oom := "import sys\nprint('allocating', flush=True)\nblocks = [bytearray(16 << 20) for _ in range(64)]\nprint('survived')\n"
	if _, err := c.CreateJob(ctxFor(t, time.Minute), slipway.JobSpec{Name: "koom", Limits: slipway.JobLimits{MemoryBytes: 96 << 20}}, strings.NewReader(oom), "koom.py"); err != nil {
		t.Fatal(err)
	}
	r, err = c.RunJob(ctxFor(t, time.Minute), "koom", client.RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	r = waitKubeRun(t, c, r.ID)
	if r.State != slipway.RunFailed || !strings.Contains(r.Reason, "OOM-killed") || !strings.Contains(r.Reason, "96Mi") {
		t.Errorf("run over its memory limit = %s %q\nlog:\n%s", r.State, r.Reason, runLog(t, c, r.ID))
	}
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestKubernetesRestartAdoptsJobs: a server restart (graceful, then kill -9) re-attaches to the run's Job by its
// label instead of starting another, and the log has every line once.
func TestKubernetesRestartAdoptsJobs(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	dir := t.TempDir()
	s := startKubeServer(t, k, dir)
	c := s.Client()

	// The pod (host network) waits until the test's server on loopback says "go": no timing guesses.
	var released atomic.Bool
	release := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if released.Load() {
			w.Write([]byte("go"))
		}
	}))
	t.Cleanup(release.Close)
	waiter := `import os, time, urllib.request
print("waiting for release", flush=True)
while True:
    try:
        if urllib.request.urlopen(os.environ["RELEASE_URL"], timeout=1).read() == b"go":
            break
    except Exception:
        pass
    time.sleep(0.2)
print("released", flush=True)
`
	if _, err := c.CreateJob(ctxFor(t, time.Minute), slipway.JobSpec{Name: "kwaiter"}, strings.NewReader(waiter), "kwaiter.py"); err != nil {
		t.Fatal(err)
	}
	r, err := c.RunJob(ctxFor(t, time.Minute), "kwaiter", client.RunInput{Env: map[string]string{"RELEASE_URL": release.URL}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run to wait", 3*time.Minute, func() bool { return strings.Contains(runLog(t, c, r.ID), "waiting for release") })

	s.Stop() // graceful: the Job runs on
	if jobs := runJobs(t, cs, r.ID); len(jobs) != 1 {
		t.Fatalf("after the server stopped the run has Jobs %v, want 1", jobs)
	}
	s = startKubeServer(t, k, dir)
	s.Kill() // and a crash of the next server
	s = startKubeServer(t, k, dir)
	c = s.Client()
	if got, _ := c.GetJobRun(ctxFor(t, time.Minute), r.ID); got.State != slipway.RunInProgress {
		t.Fatalf("after the restarts the run is %s %q, want IN_PROGRESS", got.State, got.Reason)
	}
	if jobs := runJobs(t, cs, r.ID); len(jobs) != 1 {
		t.Fatalf("after the restarts the run has Jobs %v, want the same one", jobs)
	}
	released.Store(true)
	if got := waitKubeRun(t, c, r.ID); got.State != slipway.RunSucceeded {
		t.Fatalf("adopted run = %s %q\n%s", got.State, got.Reason, runLog(t, c, r.ID))
	}
	log := runLog(t, c, r.ID)
	for _, line := range []string{"stdout waiting for release", "stdout released", "re-attached", "run succeeded"} {
		if n := strings.Count(log, line); n < 1 || (strings.HasPrefix(line, "stdout") && n != 1) {
			t.Errorf("the log has %q %d times:\n%s", line, n, log)
		}
	}
}

// TestKubernetesBadConfiguration: the server refuses to start, saying what is wrong, when the cluster cannot run
// its jobs.
func TestKubernetesBadConfiguration(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	kc, err := os.ReadFile(k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := ""
	for _, l := range strings.Split(string(kc), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "token: "); ok {
			token = v
		}
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := lis.Addr().String()
	lis.Close()
	server := ""
	for _, l := range strings.Split(string(kc), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "server: "); ok {
			server = v
		}
	}
	for _, tc := range []struct {
		name       string
		kubeconfig string
		args       []string
		want       string
	}{
		{"unreachable", write("unreachable", strings.Replace(string(kc), server, "https://"+closedPort, 1)), nil, "did not answer"},
		{"refused token", write("badtoken", strings.Replace(string(kc), token, "not-the-token", 1)), nil, "refused the credentials (401)"},
		{"missing namespace", k.Kubeconfig, []string{"--namespace", "nowhere"}, `namespace "nowhere" does not exist`},
		{"missing image", k.Kubeconfig, []string{"--image", "localhost/not-built:1"}, "image localhost/not-built:1 is on none of the cluster's 1 node(s)"},
		{"no kubeconfig", "", nil, "no --kubeconfig and not running in a pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"server", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--engine", "kubernetes",
				"--kubeconfig", tc.kubeconfig, "--image", k.Image}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, append(args, tc.args...)...)
			cmd.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=", "SLIPWAY_KUBECONFIG=")
			out, err := cmd.CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("server started (or hung) with a bad configuration: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("the error does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

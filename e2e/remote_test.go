package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// worker is one `slipway worker serve` process started by hand, as an operator (or a pod) would.
type worker struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    strings.Builder
	exited chan struct{}
}

// startWorker runs `slipway worker serve` for spec on a free loopback port, caching files in cacheDir.
func startWorker(t *testing.T, spec, cacheDir string, extra ...string) *worker {
	t.Helper()
	w := &worker{t: t, exited: make(chan struct{})}
	w.cmd = exec.Command(binary, append([]string{"worker", "serve", "--listen", "127.0.0.1:0", "--cache-dir", cacheDir}, extra...)...)
	w.cmd.Env = append(os.Environ(), "SLIPWAY_REPLICA_SPEC="+spec)
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // ends when the worker (and its children) closed stderr and exited
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			w.mu.Lock()
			w.log.WriteString(sc.Text() + "\n")
			w.mu.Unlock()
		}
		w.cmd.Wait() // after the last line: Wait closes the pipe
		close(w.exited)
	}()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.exited
		if t.Failed() {
			t.Logf("worker %d log:\n%s", w.cmd.Process.Pid, w.Log())
		}
	})
	return w
}

func (w *worker) Log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}

// waitReady waits until the worker has announced itself.
func (w *worker) waitReady() {
	w.t.Helper()
	waitFor(w.t, "worker announced", 2*time.Minute, func() bool {
		select {
		case <-w.exited:
			w.t.Fatalf("worker exited: %v\n%s", w.cmd.ProcessState, w.Log())
		default:
		}
		return strings.Contains(w.Log(), "ready: announced to the server")
	})
}

func (w *worker) killHard() {
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.exited
}

// replicaSpec gets a deployment's replica spec through the CLI.
func replicaSpec(t *testing.T, s *server, name string) string {
	t.Helper()
	out, errOut, code := s.cli("deployments", "replica-spec", name)
	if code != 0 {
		t.Fatalf("replica-spec %s: exit %d\n%s\n%s", name, code, out, errOut)
	}
	return strings.TrimSpace(out)
}

func waitActive(t *testing.T, s *server, name string) *slipway.Deployment {
	t.Helper()
	var d *slipway.Deployment
	waitFor(t, name+" ACTIVE", 3*time.Minute, func() bool {
		var err error
		d, err = s.Client().GetDeployment(context.Background(), name)
		if err == nil && d.State == slipway.DeploymentFailed {
			t.Fatalf("%s FAILED: %s", name, d.Reason)
		}
		return err == nil && d.State == slipway.DeploymentActive
	})
	return d
}

// remoteCase is one runtime's deployment pair: local replicas and network replicas of the same version.
type remoteCase struct {
	runtime, model string
	body           []byte // a prediction request both answer
}

// TestRemoteReplicas serves the example ONNX and Python models from `slipway worker serve` processes: they
// download and verify the version's files, announce themselves, answer exactly as local replicas do, survive
// a kill -9 of one worker under load with no failed request, refuse a worker with a wrong secret, and detect a
// tampered cached file.
func TestRemoteReplicas(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
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
	for _, c := range cases {
		t.Run(c.runtime, func(t *testing.T) { remoteRuntime(t, s, c) })
	}
}

func remoteRuntime(t *testing.T, s *server, c remoteCase) {
	local, remote := c.runtime+"-local", c.runtime+"-remote"
	deploy(t, s, local, "--model", c.model, "--replicas", "1")
	deploy(t, s, remote, "--model", c.model, "--replicas", "2", "--engine", "external", "--no-wait")
	spec := replicaSpec(t, s, remote)

	// GET deployment never shows the secret.
	decoded, err := slipway.DecodeReplicaSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, body := s.do(t, "GET", "/api/v1/deployments/"+remote, s.Token, nil, "")
	if bytes.Contains(body, []byte(spec)) || strings.Contains(string(body), string(mustJSON(decoded.Secret))) {
		t.Fatalf("GET deployment shows the replica secret: %s", body)
	}

	// A worker whose secret is not the deployment's is refused, and says why.
	forged := decoded
	forged.Secret = bytes.Repeat([]byte{0x42}, 32)
	bad := startWorker(t, forged.Encode(), t.TempDir())
	select {
	case <-bad.exited:
	case <-time.After(time.Minute):
		t.Fatal("a worker with a wrong secret kept running")
	}
	if bad.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(bad.Log(), "replica secret") {
		t.Fatalf("wrong secret: exit %d, log:\n%s", bad.cmd.ProcessState.ExitCode(), bad.Log())
	}

	// The first worker downloads the files; the second starts from a copy of its cache in which one file was
	// tampered with: that file is detected by its digest and downloaded again, the others are reused.
	cache1, cache2 := t.TempDir(), t.TempDir()
	w1 := startWorker(t, spec, cache1)
	w1.waitReady()
	if !strings.Contains(w1.Log(), "file downloaded and verified") {
		t.Fatalf("first worker downloaded nothing:\n%s", w1.Log())
	}
	tampered := copyTree(t, cache1, cache2)
	w2 := startWorker(t, spec, cache2)
	w2.waitReady()
	if !strings.Contains(w2.Log(), "file downloaded and verified") || !strings.Contains(w2.Log(), "file="+tampered) {
		t.Fatalf("the tampered %s was not downloaded again:\n%s", tampered, w2.Log())
	}
	for _, line := range strings.Split(w2.Log(), "\n") {
		if strings.Contains(line, "cached file verified") && strings.Contains(line, "file="+tampered+" ") {
			t.Fatalf("the tampered file was taken from the cache: %s", line)
		}
	}

	d := waitActive(t, s, remote)
	if len(d.RemoteReplicas) != 2 {
		t.Fatalf("remote replicas = %+v, want 2", d.RemoteReplicas)
	}
	for _, r := range d.RemoteReplicas {
		if r.State != "CONNECTED" || r.LastHeartbeat.IsZero() || !strings.HasPrefix(r.Address, "127.0.0.1:") {
			t.Errorf("remote replica %+v: want CONNECTED with a heartbeat", r)
		}
	}
	waitActive(t, s, local)

	// Same rows, same answers as the local engine's replicas.
	path := func(name string) string { return "/deployments/" + name + "/invocations" }
	lr, lb := s.do(t, "POST", path(local), s.Token, bytes.NewReader(c.body), "application/json")
	rr, rb := s.do(t, "POST", path(remote), s.Token, bytes.NewReader(c.body), "application/json")
	if lr.StatusCode != 200 || rr.StatusCode != 200 || !bytes.Equal(lb, rb) {
		t.Fatalf("local %d %s\nremote %d %s", lr.StatusCode, lb, rr.StatusCode, rb)
	}

	// kill -9 one worker under load: its in-flight requests are retried on the other, none fails.
	l := startLoad(t, s, path(remote), c.body, 8)
	time.Sleep(time.Second)
	w1.killHard()
	waitFor(t, "the killed worker forgotten", time.Minute, func() bool {
		d, err := s.Client().GetDeployment(context.Background(), remote)
		return err == nil && len(d.RemoteReplicas) == 1
	})
	// A new worker (from the first one's cache: nothing to download) takes the free slot.
	w3 := startWorker(t, spec, cache1)
	w3.waitReady()
	if strings.Contains(w3.Log(), "file downloaded") {
		t.Errorf("a worker with a complete cache downloaded again:\n%s", w3.Log())
	}
	waitFor(t, "two connected workers again", time.Minute, func() bool {
		d, err := s.Client().GetDeployment(context.Background(), remote)
		if err != nil || len(d.RemoteReplicas) != 2 {
			return false
		}
		for _, r := range d.RemoteReplicas {
			if r.State != "CONNECTED" {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond)
	status, errs := l.finish()
	if len(status) != 1 || status[200] == 0 {
		t.Fatalf("statuses %v (want only 200): %v", status, errs)
	}
	t.Logf("%s: %d requests, all 200, across a worker kill -9", c.runtime, status[200])
}

// copyTree copies src into dst and corrupts one model file in dst; it returns that file's path.
func copyTree(t *testing.T, src, dst string) string {
	t.Helper()
	var victim string
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		// cache layout: DEPLOYMENT/vN/<file path>; the harness sits at the top.
		if victim == "" && len(parts) >= 3 && (strings.HasSuffix(rel, ".onnx") || strings.HasSuffix(rel, ".pkl") || strings.HasSuffix(rel, "score.py")) {
			victim = strings.Join(parts[2:], "/")
			b = append([]byte(nil), b...)
			b[len(b)/2] ^= 0xff
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if victim == "" {
		t.Fatal("no model file in the cache to tamper with")
	}
	return victim
}

// TestRemoteReplicasOverTLS: with an HTTPS server, a worker downloads over HTTPS (trusting the server's
// certificate with --ca-cert), listens with TLS, and the server dials it with TLS, trusting its own
// certificate. Deactivate ends the session but keeps the worker; activate connects it again.
func TestRemoteReplicasOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)
	s := startServer(t, "", "--tls-cert", certFile, "--tls-key", keyFile)
	s.trust(certFile)
	if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx: %s %s", out, errOut)
	}
	deploy(t, s, "tls-remote", "--model", "churn-onnx:1", "--replicas", "1", "--engine", "external", "--no-wait")
	spec := replicaSpec(t, s, "tls-remote")
	if decoded, err := slipway.DecodeReplicaSpec(spec); err != nil || !strings.HasPrefix(decoded.Server, "https://") {
		t.Fatalf("spec %+v, %v", decoded, err)
	}

	// Without trusting the server's certificate, the worker cannot download, and says why.
	untrusting := startWorker(t, spec, t.TempDir())
	select {
	case <-untrusting.exited:
	case <-time.After(time.Minute):
		t.Fatal("a worker that does not trust the server kept running")
	}
	if !strings.Contains(untrusting.Log(), "certificate") {
		t.Fatalf("untrusting worker log:\n%s", untrusting.Log())
	}

	w := startWorker(t, spec, t.TempDir(), "--ca-cert", certFile, "--tls-cert", certFile, "--tls-key", keyFile)
	w.waitReady()
	d := waitActive(t, s, "tls-remote")
	if len(d.RemoteReplicas) != 1 || !d.RemoteReplicas[0].TLS || d.RemoteReplicas[0].State != "CONNECTED" {
		t.Fatalf("remote replicas %+v", d.RemoteReplicas)
	}
	body := mustJSON(map[string]any{"inputs": [][]float64{{41, 12, 70.5, 1}}})
	if resp, b := s.do(t, "POST", "/deployments/tls-remote/invocations", s.Token, bytes.NewReader(body), "application/json"); resp.StatusCode != 200 {
		t.Fatalf("predict over a TLS replica: %d %s", resp.StatusCode, b)
	}

	if out, errOut, code := s.cli("deployments", "deactivate", "tls-remote"); code != 0 {
		t.Fatalf("deactivate: %s %s", out, errOut)
	}
	waitFor(t, "the worker AVAILABLE again", time.Minute, func() bool {
		d, err := s.Client().GetDeployment(context.Background(), "tls-remote")
		return err == nil && d.State == slipway.DeploymentInactive && len(d.RemoteReplicas) == 1 && d.RemoteReplicas[0].State == "AVAILABLE"
	})
	if out, errOut, code := s.cli("deployments", "activate", "tls-remote"); code != 0 {
		t.Fatalf("activate: %s %s", out, errOut)
	}
	waitActive(t, s, "tls-remote")
	if resp, b := s.do(t, "POST", "/deployments/tls-remote/invocations", s.Token, bytes.NewReader(body), "application/json"); resp.StatusCode != 200 {
		t.Fatalf("predict after activate: %d %s", resp.StatusCode, b)
	}
	if n := strings.Count(w.Log(), "session started"); n != 2 {
		t.Errorf("the worker served %d sessions, want 2 (before deactivate, after activate):\n%s", n, w.Log())
	}

	// Deleting the deployment stops its workers: the next heartbeat is refused.
	if out, errOut, code := s.cli("deployments", "delete", "tls-remote"); code != 0 {
		t.Fatalf("delete: %s %s", out, errOut)
	}
	select {
	case <-w.exited:
	case <-time.After(time.Minute):
		t.Fatal("the worker of a deleted deployment kept running")
	}
	if !strings.Contains(w.Log(), "refused this worker's heartbeat") {
		t.Errorf("worker log after the delete:\n%s", w.Log())
	}
}

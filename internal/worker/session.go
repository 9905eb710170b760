package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// sessionModel is a loaded model that serves replica sessions: several at once (one per server).
type sessionModel interface {
	// Serve runs one session on conn (hello first) until the server closes it; it is called from several
	// goroutines at once.
	Serve(conn net.Conn) error
	Close()
}

func loadModel(ctx context.Context, cfg *serveConfig, m *versionManifest, dir string, log *slog.Logger) (sessionModel, error) {
	switch m.Runtime {
	case slipway.RuntimeONNX:
		return loadONNXSession(ctx, m, dir, log)
	case slipway.RuntimePython:
		return startPythonSessions(ctx, cfg, dir, log)
	}
	return nil, fmt.Errorf("version %d has runtime %q, which a network worker cannot serve", cfg.spec.Version, m.Runtime)
}

// onnxSession serves sessions from one ONNX Runtime session loaded in this process.
type onnxSession struct {
	handler *onnx.Handler
	hello   workerproto.Hello
}

func loadONNXSession(ctx context.Context, m *versionManifest, dir string, log *slog.Logger) (*onnxSession, error) {
	var model string
	var found []string
	for _, f := range m.Files {
		if filepath.Ext(f.Path) == ".onnx" {
			found = append(found, f.Path)
			if filepath.Base(f.Path) == "model.onnx" {
				model = f.Path
			}
		}
	}
	if model == "" && len(found) == 1 {
		model = found[0]
	}
	if model == "" {
		return nil, fmt.Errorf("the version's files hold %d .onnx files and none is named model.onnx", len(found))
	}
	start := time.Now()
	om, err := loadONNX(ctx, filepath.Join(dir, model))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", model, err)
	}
	for _, w := range om.Warnings() {
		log.Warn(w)
	}
	log.Info("model loaded", "runtime", "onnx", "seconds", time.Since(start).Seconds())
	return &onnxSession{handler: &onnx.Handler{Model: om},
		hello: workerproto.Hello{OK: true, Runtime: "onnx", PID: os.Getpid(), Inputs: om.Inputs(), Outputs: om.Outputs()}}, nil
}

func (s *onnxSession) Serve(conn net.Conn) error {
	if f, ok := blockingSocket(conn); ok {
		defer f.Close()
		return workerproto.Serve(f, f, s.hello, s.handler)
	}
	return workerproto.Serve(conn, conn, s.hello, s.handler)
}

// blockingSocket returns a duplicate of a plain TCP connection's socket in blocking mode. The local ONNX worker
// reads its stdin pipe with blocking read(2) calls; a net.Conn reads through Go's network poller instead,
// which adds a hand-off per frame (the poller thread wakes, then schedules the serve goroutine), and on a busy
// 2-core host a hand-off costs about as much as the model call. Reading the socket as the pipe is read keeps a
// network replica's cost per request close to a local one's. A TLS connection keeps the poller (tls.Conn
// needs its net.Conn). The worker ends such a session by shutting the socket down (closeSessions), which
// wakes a blocked read.
func blockingSocket(conn net.Conn) (*os.File, bool) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil, false
	}
	f, err := tc.File()
	if err != nil {
		return nil, false
	}
	f.Fd() // puts the descriptor in blocking mode: Read and Write are plain read(2) and write(2)
	return f, true
}

func (s *onnxSession) Close() { _ = s.handler.Model.Close() } // the process is ending

// oomKilled reports whether child c, whose output just ended, was killed by the kernel's OOM killer: it died
// of SIGKILL (which this worker did not send: its session is still open) and the memory cgroup counted an OOM
// kill since it began to serve.
func oomKilled(c *pythonChild) error {
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		return nil // still running: it closed its output itself
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return nil
	}
	if n := oomKills(); c.oomKills < 0 || n <= c.oomKills {
		return nil
	}
	return errors.New("the model process was OOM-killed while serving this request: predict() used more memory than the replica's limit (resources.memory_mb); the replica restarts: give the deployment more memory_mb, or send smaller requests")
}

// oomKills is the number of OOM kills in this process's memory cgroup (cgroup v2 memory.events, v1
// memory.oom_control, as a container sees its own cgroup), -1 when it cannot be read.
func oomKills() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			var n int64
			if _, err := fmt.Sscanf(line, "oom_kill %d", &n); err == nil {
				return n
			}
		}
	}
	return -1
}

func modelErrorPayload(message, typ string) []byte {
	b, _ := json.Marshal(map[string]string{"error": message, "type": typ})
	return b
}

func helloError(err error) []byte {
	b, _ := json.Marshal(workerproto.Hello{Error: err.Error()})
	return b
}

// childEnv is the harness's environment: the worker's basics, none of its secrets (SLIPWAY_REPLICA_SPEC).
func childEnv() []string {
	env := []string{"PYTHONDONTWRITEBYTECODE=1"}
	keys := []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
	// The deployment's own variables (its "env"), which the kubernetes engine puts in the pod and names here;
	// anything else of the worker's environment (its replica spec) stays out of the model's reach.
	for k := range strings.SplitSeq(os.Getenv("SLIPWAY_MODEL_ENV"), ",") {
		if k != "" && !strings.HasPrefix(k, "SLIPWAY_") {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	sort.Strings(env)
	return env
}

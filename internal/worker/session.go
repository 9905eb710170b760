package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx"
	"github.com/slipway-ml/slipway/internal/modelruntime/python"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// sessionModel is a loaded model that serves replica sessions, one connection at a time.
type sessionModel interface {
	// Serve runs one session on conn (hello first) until the server closes it.
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

// pythonSessions runs the Python harness as a child per session and relays frames between the connection and
// the child's stdin/stdout. The next session's child is started (and its model loaded) as soon as the previous
// one is taken, so a replacement session does not wait for load_model(); a child never outlives its session,
// so no answer to one session's request can reach the next.
type pythonSessions struct {
	python, harness, dir string
	batch                bool // SCHED_BATCH for each child once loaded
	log                  *slog.Logger

	mu   sync.Mutex
	next *pythonChild // started, hello read
	err  error        // the next child's start error
	wait chan struct{}
}

type pythonChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	hello  []byte // the H frame's payload
	done   chan struct{}
}

func startPythonSessions(ctx context.Context, cfg *serveConfig, dir string, log *slog.Logger) (*pythonSessions, error) {
	harness := filepath.Join(cfg.cacheDir, "slipway_harness.py")
	if err := writeFileAtomic(harness, python.Harness); err != nil {
		return nil, fmt.Errorf("write the python harness: %w", err)
	}
	p := &pythonSessions{python: cfg.python, harness: harness, dir: dir, log: log, wait: make(chan struct{}),
		batch: cfg.scheduling == "batch"}
	child, err := p.start()
	if err != nil {
		return nil, err
	}
	p.next = child
	close(p.wait)
	return p, nil
}

// start runs a harness child and reads its hello: a model that fails to load fails here, before the worker
// announces itself.
func (p *pythonSessions) start() (*pythonChild, error) {
	start := time.Now()
	cmd := exec.Command(p.python, "-u", p.harness, "serve", "--model-dir", p.dir)
	cmd.Dir = p.dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // dies with the worker
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.python, err)
	}
	c := &pythonChild{cmd: cmd, stdin: stdin, stdout: bufio.NewReaderSize(stdout, 64<<10), done: make(chan struct{})}
	go func() { // owned by the child: reaps it
		_ = cmd.Wait()
		close(c.done)
	}()
	kind, payload, err := workerproto.ReadFrame(c.stdout, nil)
	if err == nil && kind != workerproto.KindHello {
		err = fmt.Errorf("expected a hello, got frame %s", kind)
	}
	var h workerproto.Hello
	if err == nil {
		err = json.Unmarshal(payload, &h)
	}
	if err == nil && !h.OK {
		err = errors.New(h.Error)
	}
	if err != nil {
		c.kill()
		return nil, fmt.Errorf("the python model failed to load: %w", err)
	}
	c.hello = payload
	if p.batch {
		if err := batchScheduling(cmd.Process.Pid); err != nil {
			c.kill()
			return nil, err
		}
	}
	p.log.Info("model loaded", "runtime", "python", "pid", cmd.Process.Pid, "seconds", time.Since(start).Seconds())
	return c, nil
}

func (c *pythonChild) kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// take returns the warm child and starts the next one in the background.
func (p *pythonSessions) take() (*pythonChild, error) {
	p.mu.Lock()
	wait := p.wait
	p.mu.Unlock()
	<-wait
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.next, p.err
	p.next, p.err = nil, nil
	if c == nil && err == nil {
		return nil, errors.New("the python worker is stopping")
	}
	next := make(chan struct{})
	p.wait = next
	go func() { // owned by p: ends once the next child is loaded (or failed)
		n, err := p.start()
		p.mu.Lock()
		p.next, p.err = n, err
		p.mu.Unlock()
		close(next)
	}()
	return c, err
}

// Serve relays one session: the child's hello, then frames both ways until either side ends; the child goes
// with its session.
func (p *pythonSessions) Serve(conn net.Conn) error {
	c, err := p.take()
	if err != nil {
		_ = workerproto.WriteFrame(conn, workerproto.KindHello, helloError(err))
		return err
	}
	defer c.kill()
	if err := workerproto.WriteFrame(conn, workerproto.KindHello, c.hello); err != nil {
		return err
	}
	toChild := make(chan error, 1)
	go func() { // ends when the connection or the child's stdin does
		_, err := io.Copy(c.stdin, conn)
		// The server closed the session (or the connection broke): whatever the model is still computing
		// has no one to answer, so the child goes now rather than after its current request.
		c.kill()
		toChild <- err
	}()
	_, err = io.Copy(conn, c.stdout)
	_ = conn.Close() // the child is gone (or the connection broke): end the other direction too
	if cerr := <-toChild; err == nil {
		err = cerr
	}
	return err
}

func (p *pythonSessions) Close() {
	p.mu.Lock()
	wait := p.wait
	p.mu.Unlock()
	<-wait
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next != nil {
		p.next.kill()
		p.next = nil
	}
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

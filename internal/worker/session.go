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

// pythonSessions serves every session from one Python harness child, one call at a time: several servers
// each hold a session to this worker, and a second model process per session would multiply the pod's memory
// (its resources.memory_mb is sized for one). A call holds the child from its request frame to its answer
// (the protocol is strictly request → response), so the answers of two sessions never mix. A session that
// ends while its call is on the child (the server's timeout killed it, the connection broke) kills the child:
// the model may be stuck in predict(), and an answer nobody reads must not reach the next call. The next call,
// of any session, starts a new child and waits for its load_model(): no spare is kept loaded, so that the pod
// holds one model's memory.
type pythonSessions struct {
	python, harness, dir string
	batch                bool // SCHED_BATCH for each child once loaded
	log                  *slog.Logger

	turn  chan struct{} // capacity 1: held by the call on the child
	child *pythonChild  // the serving child, guarded by turn (nil or exited: the next call starts another)
	// fatal, if set, stops the worker (Serve sets it): a model process the kernel OOM-killed while serving
	// makes the worker exit, so that Kubernetes restarts the container and records the OOM kill.
	fatal func(error)
}

type pythonChild struct {
	oomKills int64 // the memory cgroup's OOM kill count when the child began to serve (-1: unknown)
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stdout   *bufio.Reader
	hello    []byte // the H frame's payload
	done     chan struct{}
}

func startPythonSessions(ctx context.Context, cfg *serveConfig, dir string, log *slog.Logger) (*pythonSessions, error) {
	harness := filepath.Join(cfg.cacheDir, "slipway_harness.py")
	if err := writeFileAtomic(harness, python.Harness); err != nil {
		return nil, fmt.Errorf("write the python harness: %w", err)
	}
	p := &pythonSessions{python: cfg.python, harness: harness, dir: dir, log: log,
		batch: cfg.scheduling == "batch", turn: make(chan struct{}, 1)}
	child, err := p.start()
	if err != nil {
		return nil, err
	}
	child.oomKills = oomKills()
	p.child = child
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

func (c *pythonChild) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// acquire takes the turn on the child (giving up when gone closes first) and returns the serving child,
// starting a new one in place of one that exited. release gives the turn back.
func (p *pythonSessions) acquire(gone <-chan struct{}) (*pythonChild, error) {
	select {
	case p.turn <- struct{}{}:
	case <-gone:
		return nil, errSessionGone
	}
	if p.child == nil || p.child.exited() {
		c, err := p.start()
		if err != nil {
			<-p.turn
			return nil, err
		}
		c.oomKills = oomKills()
		p.child = c
	}
	return p.child, nil
}

func (p *pythonSessions) release() { <-p.turn }

var errSessionGone = errors.New("the session ended")

// Serve runs one session: the serving child's hello, then each request frame in turn on the shared child,
// its answer frames relayed back, until the server closes the session.
func (p *pythonSessions) Serve(conn net.Conn) error {
	ctx, cancel := context.WithCancel(context.Background()) // cancelled when the session's connection ends
	defer cancel()
	c, err := p.acquire(ctx.Done())
	if err != nil {
		_ = workerproto.WriteFrame(conn, workerproto.KindHello, helloError(err))
		return err
	}
	hello := c.hello
	p.release()
	if err := workerproto.WriteFrame(conn, workerproto.KindHello, hello); err != nil {
		return err
	}
	type request struct {
		kind    workerproto.Kind
		payload []byte
	}
	requests := make(chan request, 4) // a server that sends several calls at once gets them answered in turn
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by Serve: ends when the connection does (Serve closes it before waiting)
		defer wg.Done()
		defer close(requests)
		r := bufio.NewReaderSize(conn, 64<<10)
		for {
			kind, payload, err := workerproto.ReadFrame(r, nil)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					readErr = err
				}
				cancel() // a call of this session still on the child kills it (call's AfterFunc)
				return
			}
			select {
			case requests <- request{kind, payload}:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	defer func() { _ = conn.Close() }()
	for req := range requests {
		if err := p.call(ctx, conn, req.kind, req.payload); err != nil {
			cancel()
			if errors.Is(err, errSessionGone) {
				break
			}
			return err
		}
	}
	return readErr
}

// answerEnds reports whether a frame from the child ends its answer to one request.
func answerEnds(k workerproto.Kind) bool {
	switch k {
	case workerproto.KindResultJSON, workerproto.KindResultTensors, workerproto.KindError, workerproto.KindPong:
		return true
	}
	return false
}

// call sends one request frame to the shared child and relays its answer frames to conn. It fails when the
// child dies (the session ends, as a local replica's would: the server retries the request elsewhere and
// starts the slot again; the next call starts a new child) or conn fails.
func (p *pythonSessions) call(ctx context.Context, conn net.Conn, kind workerproto.Kind, payload []byte) error {
	c, err := p.acquire(ctx.Done())
	if err != nil {
		return err
	}
	defer p.release()
	// The session ending mid-call (a timeout on the server) kills the child: predict() may never return.
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	if err := workerproto.WriteFrame(c.stdin, kind, payload); err != nil {
		c.kill()
		return fmt.Errorf("the python model process is gone: %w", err)
	}
	var connErr error
	for {
		k, out, err := workerproto.ReadFrame(c.stdout, nil)
		if err != nil {
			if ctx.Err() == nil {
				if oom := oomKilled(c); oom != nil {
					return p.oomKilled(conn, oom)
				}
			}
			c.kill()
			if ctx.Err() != nil {
				return errSessionGone
			}
			return fmt.Errorf("the python model process died: %w", err)
		}
		if connErr == nil {
			connErr = workerproto.WriteFrame(conn, k, out)
		}
		if answerEnds(k) {
			return connErr
		}
	}
}

// oomKilled answers the request the model process died on with the reason (a model error: the pool does not
// send it to another replica, which it would kill too) and stops the worker: Kubernetes restarts the
// container and keeps the OOM kill in its last state, where the server's pod watch reads it. The sessions of
// the other servers end with the worker: their requests are retried on other replicas.
func (p *pythonSessions) oomKilled(conn net.Conn, err error) error {
	p.log.Error("the model process was OOM-killed while serving; the worker stops", "error", err)
	_ = workerproto.WriteFrame(conn, workerproto.KindError, modelErrorPayload(err.Error(), "OOMKilled"))
	if p.fatal != nil {
		p.fatal(err)
	}
	return errSessionGone
}

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

// Close stops the serving child (the worker is stopping; the sessions are closed).
func (p *pythonSessions) Close() {
	p.turn <- struct{}{}
	if p.child != nil {
		p.child.kill()
		p.child = nil
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

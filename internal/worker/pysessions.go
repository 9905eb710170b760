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
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slipway-ml/slipway/internal/modelruntime/python"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// pythonSessions serves every session from one Python harness child: several servers each hold a session to
// this worker, and a second model process per session would multiply the pod's memory (its
// resources.memory_mb is sized for one).
//
// Calls are pipelined, as they are to a local replica: each session's request frames go to the child as they
// arrive, whichever session sends them, and the child answers them in order, so it goes from one call to the
// next without waiting for a round trip through this process (a fast model served one call at a time reached
// half the requests per second of the same replicas on the server's machine: docs/benchmarks.md, "Replicas over
// the network"). The child's calls in flight, oldest first, say whose each answer is.
//
// When the child dies, the call at the head of its line is the one it died on: that session ends (its server
// retries the request elsewhere and opens a new session), or, when the kernel OOM-killed the child, it gets
// the reason and the worker stops. The calls behind the head never reached predict(): a new child takes them, in
// order, so one session's failure costs the others only a model load. A session that ends while its call is
// at the head (the server's timeout, a broken connection) kills the child: the model may be stuck in predict(),
// and nobody would read its answer. A call of an ended session further back still runs when its turn comes, and
// its answer is dropped; if it hangs, the next session to end finds it at the head and kills the child. No spare
// child is kept loaded, so that the pod holds one model's memory.
type pythonSessions struct {
	python, harness, dir string
	batch                bool // SCHED_BATCH for each child once loaded
	log                  *slog.Logger
	// fatal, if set, stops the worker (Serve sets it): a model process the kernel OOM-killed while serving
	// makes the worker exit, so that Kubernetes restarts the container and records the OOM kill.
	fatal func(error)

	// send is held while a call joins the child's line and its frame is written, and while a dead child's calls
	// move to a new one: the order of the frames on the child's stdin is the order of its line.
	send sync.Mutex
	// mu guards child, closed and every child's line (calls).
	mu     sync.Mutex
	child  *pythonChild // the serving child; nil or dead: the next call starts another
	closed bool
	relays sync.WaitGroup // one relay per child
}

type pythonChild struct {
	oomKills int64 // the memory cgroup's OOM kill count when the child began to serve (-1: unknown)
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	in       *bufio.Writer // over stdin: the frames of calls that arrive together go in one write
	stdout   *bufio.Reader
	hello    []byte // the H frame's payload
	done     chan struct{}
	calls    []*pythonCall // in flight, oldest first (guarded by pythonSessions.mu)
	dead     bool          // its output ended (guarded by pythonSessions.mu)
}

// pythonCall is one request frame of a session, kept until its answer ends: a new child may have to take it.
type pythonCall struct {
	session *pythonSession
	kind    workerproto.Kind
	payload []byte
}

// pythonSession is one server's session: its connection, written only through w.
type pythonSession struct {
	conn  net.Conn
	mu    sync.Mutex    // guards w
	w     *bufio.Writer // over conn: the answers that leave the child together go out in one write
	ended atomic.Bool   // its connection is done: answers to it are dropped
}

func startPythonSessions(_ context.Context, cfg *serveConfig, dir string, log *slog.Logger) (*pythonSessions, error) {
	harness := filepath.Join(cfg.cacheDir, "slipway_harness.py")
	if err := writeFileAtomic(harness, python.Harness); err != nil {
		return nil, fmt.Errorf("write the python harness: %w", err)
	}
	p := &pythonSessions{python: cfg.python, harness: harness, dir: dir, log: log, batch: cfg.scheduling == "batch"}
	p.send.Lock()
	defer p.send.Unlock()
	if _, err := p.serving(); err != nil { // a model that fails to load fails here, before the worker announces itself
		return nil, err
	}
	return p, nil
}

// serving returns the serving child, starting one (and its relay) when there is none. The caller holds send.
func (p *pythonSessions) serving() (*pythonChild, error) {
	p.mu.Lock()
	c, closed := p.child, p.closed
	p.mu.Unlock()
	if closed {
		return nil, errors.New("the worker is stopping")
	}
	if c != nil && !c.dead {
		return c, nil
	}
	c, err := p.start()
	if err != nil {
		return nil, err
	}
	c.oomKills = oomKills()
	p.mu.Lock()
	if p.closed { // Close ran meanwhile
		p.mu.Unlock()
		c.kill()
		return nil, errors.New("the worker is stopping")
	}
	p.child = c
	p.relays.Add(1)
	p.mu.Unlock()
	go p.relay(c) // owned by the child: ends when its output does
	return c, nil
}

// start runs a harness child and reads its hello: a model that fails to load fails here.
func (p *pythonSessions) start() (*pythonChild, error) {
	start := time.Now()
	// Every answer at once (--hold-ns 0): the call the child dies on must be the first one not answered, or an
	// OOM kill would be reported to another call and the call that caused it sent to the next child.
	cmd := exec.Command(p.python, "-u", p.harness, "serve", "--model-dir", p.dir, "--hold-ns", "0")
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
	c := &pythonChild{cmd: cmd, stdin: stdin, in: bufio.NewWriterSize(stdin, 64<<10),
		stdout: bufio.NewReaderSize(stdout, 64<<10), done: make(chan struct{})}
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

// Serve runs one session: the serving child's hello, then each request frame of the server's, written to the
// child as it arrives, until the server closes the session. The relay of the child sends the answers.
func (p *pythonSessions) Serve(conn net.Conn) error {
	s := &pythonSession{conn: conn, w: bufio.NewWriterSize(conn, 64<<10)}
	defer p.end(s)
	p.send.Lock()
	c, err := p.serving()
	p.send.Unlock()
	if err != nil {
		_ = workerproto.WriteFrame(conn, workerproto.KindHello, helloError(err))
		return err
	}
	if err := workerproto.WriteFrame(conn, workerproto.KindHello, c.hello); err != nil {
		return err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		kind, payload, err := workerproto.ReadFrame(r, nil)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || s.ended.Load() {
				return nil // the server closed the session, or this worker ended it (the child died on its call)
			}
			return err
		}
		if err := p.submit(s, kind, payload, !workerproto.FrameBuffered(r)); err != nil {
			return err
		}
	}
}

// submit puts a call at the end of the serving child's line and writes its frame; flush says whether to send
// it now (no other frame of the session is buffered to go with it).
func (p *pythonSessions) submit(s *pythonSession, kind workerproto.Kind, payload []byte, flush bool) error {
	p.send.Lock()
	defer p.send.Unlock()
	c, err := p.serving()
	if err != nil {
		return err
	}
	p.mu.Lock()
	if kind == workerproto.KindPing && len(c.calls) > 0 && !slices.ContainsFunc(c.calls, s.owns) {
		// A server pings a replica it is not using; the child is busy with other sessions' calls, which is the
		// answer (a stuck call fails on its own server's timeout, and that session's end kills the child). Sent
		// to the child, the ping would wait behind up to 8 calls of every other server, past the ping's timeout.
		p.mu.Unlock()
		if s.write(workerproto.KindPong, nil) {
			flushAll([]*pythonSession{s})
		}
		return nil
	}
	c.calls = append(c.calls, &pythonCall{session: s, kind: kind, payload: payload})
	p.mu.Unlock()
	// A failed write means the child is gone: its relay moves the call to the next child.
	if err := workerproto.WriteFrame(c.in, kind, payload); err == nil && flush {
		_ = c.in.Flush()
	}
	return nil
}

// end marks session s over and kills the child if the call at the head of its line belongs to an ended
// session: it may be stuck in predict(), and nobody waits for its answer.
func (p *pythonSessions) end(s *pythonSession) {
	s.ended.Store(true)
	_ = s.conn.Close()
	p.mu.Lock()
	c := p.child
	stuck := c != nil && !c.dead && len(c.calls) > 0 && c.calls[0].session.ended.Load()
	p.mu.Unlock()
	if stuck {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) // the relay sees the output end and moves the others' calls
	}
}

// answerEnds reports whether a frame from the child ends its answer to one request.
func answerEnds(k workerproto.Kind) bool {
	switch k {
	case workerproto.KindResultJSON, workerproto.KindResultTensors, workerproto.KindError, workerproto.KindPong:
		return true
	}
	return false
}

// relay reads child c's frames and sends each to the session whose call is at the head of c's line, until c's
// output ends; answers that leave the child together go out together (a session is flushed when no whole frame
// is left in c's output buffer).
func (p *pythonSessions) relay(c *pythonChild) {
	defer p.relays.Done()
	var unflushed []*pythonSession
	for {
		k, out, err := workerproto.ReadFrame(c.stdout, nil)
		if err != nil {
			flushAll(unflushed)
			p.childEnded(c, err)
			return
		}
		p.mu.Lock()
		var call *pythonCall
		if len(c.calls) > 0 {
			call = c.calls[0]
			if answerEnds(k) {
				c.calls[0] = nil
				c.calls = c.calls[1:]
			}
		}
		p.mu.Unlock()
		if call == nil {
			p.log.Error("the python model process sent a frame no call asked for; stopping it", "frame", k.String())
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			continue
		}
		if call.session.write(k, out) && !slices.Contains(unflushed, call.session) {
			unflushed = append(unflushed, call.session)
		}
		if !workerproto.FrameBuffered(c.stdout) {
			unflushed = flushAll(unflushed)
		}
	}
}

func (s *pythonSession) owns(call *pythonCall) bool { return call.session == s }

// write buffers one frame for the session; false when the session has ended (the frame is dropped).
func (s *pythonSession) write(k workerproto.Kind, payload []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended.Load() {
		return false
	}
	if err := workerproto.WriteFrame(s.w, k, payload); err != nil {
		s.ended.Store(true)
		_ = s.conn.Close()
		return false
	}
	return true
}

// flushAll sends what each session has buffered and returns the emptied list. A session whose connection
// fails is ended (its Serve returns).
func flushAll(sessions []*pythonSession) []*pythonSession {
	for _, s := range sessions {
		s.mu.Lock()
		if !s.ended.Load() && s.w.Flush() != nil {
			s.ended.Store(true)
			_ = s.conn.Close()
		}
		s.mu.Unlock()
	}
	return sessions[:0]
}

// fail ends the session: its server sees the connection close, retries its calls on other replicas and opens a
// new session.
func (s *pythonSession) fail(err error, log *slog.Logger) {
	if !s.ended.Swap(true) {
		log.Warn("ending a session", "peer", s.conn.RemoteAddr().String(), "error", err)
	}
	_ = s.conn.Close()
}

// childEnded handles the end of child c's output: the head of its line died with it (its session ends, or is
// told of an OOM kill), and the live sessions' calls behind it go to a new child in the same order.
func (p *pythonSessions) childEnded(c *pythonChild, readErr error) {
	// Its output has ended; the process goes too, so that a write to its stdin fails rather than blocks.
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	p.send.Lock() // no call joins a line while these move: a session's answers stay in its calls' order
	defer p.send.Unlock()
	p.mu.Lock()
	c.dead = true
	calls := c.calls
	c.calls = nil
	if p.child == c {
		p.child = nil
	}
	closed := p.closed
	p.mu.Unlock()
	_ = c.stdin.Close()
	if len(calls) == 0 {
		return
	}
	if closed {
		for _, call := range calls {
			call.session.fail(errors.New("the worker is stopping"), p.log)
		}
		return
	}
	head := calls[0]
	if !head.session.ended.Load() {
		if oom := oomKilled(c); oom != nil {
			p.oomKilled(head.session, oom)
			for _, call := range calls[1:] {
				call.session.fail(oom, p.log)
			}
			return
		}
		head.session.fail(fmt.Errorf("the python model process died: %w", readErr), p.log)
	}
	var moved []*pythonCall
	for _, call := range calls[1:] {
		if !call.session.ended.Load() {
			moved = append(moved, call)
		}
	}
	if len(moved) == 0 {
		return
	}
	next, err := p.serving()
	if err != nil {
		for _, call := range moved {
			call.session.fail(err, p.log)
		}
		return
	}
	p.mu.Lock()
	next.calls = append(next.calls, moved...)
	p.mu.Unlock()
	for _, call := range moved {
		if workerproto.WriteFrame(next.in, call.kind, call.payload) != nil {
			return // this child is gone too: its relay moves them again
		}
	}
	_ = next.in.Flush()
}

// oomKilled answers the request the model process died on with the reason (a model error: the pool does not
// send it to another replica, which it would kill too) and stops the worker: Kubernetes restarts the
// container and keeps the OOM kill in its last state, where the server's pod watch reads it. The sessions of
// the other servers end with the worker: their requests are retried on other replicas.
func (p *pythonSessions) oomKilled(s *pythonSession, err error) {
	p.log.Error("the model process was OOM-killed while serving; the worker stops", "error", err)
	if s.write(workerproto.KindError, modelErrorPayload(err.Error(), "OOMKilled")) {
		flushAll([]*pythonSession{s})
	}
	if p.fatal != nil {
		p.fatal(err)
	}
}

// Close stops the serving child (the worker is stopping; the sessions are closed) and waits for its relay.
func (p *pythonSessions) Close() {
	p.mu.Lock()
	p.closed = true
	c := p.child
	p.child = nil
	p.mu.Unlock()
	if c != nil {
		c.kill()
	}
	p.relays.Wait()
}

package modelruntime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Replica is the client side of one running model: it waits for the hello, then sends calls over the
// connection its Engine returned. A process replica takes up to MaxInFlight calls at once: their frames are
// pipelined on its stream (workerproto.Client) and it answers them in order, so it never waits for a round
// trip between two calls. An in-process session takes one call at a time.
type Replica struct {
	conn   Conn
	client calls
	hello  workerproto.Hello
	tail   *lineTail
	gate   chan struct{} // one token per call in flight; its capacity is MaxInFlight
}

// DefaultMaxInFlight is how many calls a process replica takes at once. A replica that finds its next request
// already in its pipe goes on without sleeping; one that waits for it sleeps and wakes, which on a busy 2-core
// host cost as much CPU as a small model's predict() (docs/benchmarks.md, "Issue 17, session 14": the harness at
// 2 calls in flight 209 µs of CPU per call, at 8 138 µs). The pool may give a replica fewer: a batching
// deployment's batcher is the queue there (serving.Pool).
const DefaultMaxInFlight = 8

// calls are what a Replica asks of its model: a workerproto.Client over a stream, or a Session directly.
type calls interface {
	PredictJSONContext(ctx context.Context, body []byte) ([]byte, error)
	PredictTensorsContext(ctx context.Context, in []workerproto.Tensor) ([]workerproto.Tensor, error)
	PredictTensorsParamsContext(ctx context.Context, in []workerproto.Tensor, params []byte) ([]workerproto.Tensor, error)
	PingContext(ctx context.Context) error
	Close() error
}

// Session is a Conn whose model runs in this process (InProcessEngine): it is loaded when Start returns, and the
// Replica calls it directly instead of writing frames. Its errors follow the protocol's: a *workerproto.ModelError
// for what the model answered, anything else for a replica that can no longer serve.
type Session interface {
	Conn
	Hello() workerproto.Hello
	PredictJSON(body []byte) ([]byte, error)
	PredictTensors(in []workerproto.Tensor) ([]workerproto.Tensor, error)
	PredictTensorsParams(in []workerproto.Tensor, params []byte) ([]workerproto.Tensor, error)
	Ping() error
}

// sessionCalls are a Session's calls; closing one ends the session, as closing a process's input does. A
// session runs on the caller's thread and cannot abandon a call: Replica.call kills it when ctx ends.
type sessionCalls struct{ Session }

func (s sessionCalls) PredictJSONContext(_ context.Context, body []byte) ([]byte, error) {
	return s.PredictJSON(body)
}

func (s sessionCalls) PredictTensorsContext(_ context.Context, in []workerproto.Tensor) ([]workerproto.Tensor, error) {
	return s.PredictTensors(in)
}

func (s sessionCalls) PredictTensorsParamsContext(_ context.Context, in []workerproto.Tensor, params []byte) ([]workerproto.Tensor, error) {
	return s.PredictTensorsParams(in, params)
}

func (s sessionCalls) PingContext(context.Context) error { return s.Ping() }

// startReplica starts spec on engine and waits (up to readyTimeout) for its hello. On failure the error
// carries the replica's own last words (its hello error or the tail of its stderr).
func startReplica(ctx context.Context, engine Engine, spec ProcessSpec, readyTimeout time.Duration, log LogFunc) (*Replica, error) {
	tail := newLineTail(20)
	conn, err := engine.Start(ctx, spec, func(line string) {
		tail.add(line)
		if log != nil {
			log(line)
		}
	})
	if err != nil {
		return nil, err
	}
	if sess, ok := conn.(Session); ok { // loaded by Start: no hello to wait for, no frames to exchange
		return &Replica{conn: conn, client: sessionCalls{sess}, hello: sess.Hello(), tail: tail, gate: make(chan struct{}, 1)}, nil
	}
	client := workerproto.NewClient(conn, conn)
	r := &Replica{conn: conn, client: client, tail: tail, gate: make(chan struct{}, DefaultMaxInFlight)}
	if err := r.awaitHello(ctx, client, readyTimeout); err != nil {
		r.killAndWait()
		return nil, err
	}
	if err := conn.Ready(); err != nil {
		r.killAndWait()
		return nil, err
	}
	return r, nil
}

func (r *Replica) awaitHello(ctx context.Context, client *workerproto.Client, timeout time.Duration) error {
	type result struct {
		h   workerproto.Hello
		err error
	}
	ch := make(chan result, 1)
	go func() { // ends when the hello arrives or the replica dies (its stream ends)
		h, err := client.ReadHello()
		ch <- result{h, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.err != nil {
			return r.failure(res.h, res.err)
		}
		r.hello = res.h
		return nil
	case <-timer.C:
		return fmt.Errorf("model did not become ready within %s (load_model still running?)%s", timeout, r.tailSuffix())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure explains a replica that failed: its hello error if it sent one, else its exit and last stderr lines.
func (r *Replica) failure(h workerproto.Hello, err error) error {
	if !h.OK && h.Error != "" {
		return fmt.Errorf("model failed to load: %s", strings.TrimSpace(h.Error))
	}
	r.killAndWait()
	return fmt.Errorf("replica exited before it was ready (%v)%s", r.conn.ExitErr(), r.tailSuffix())
}

func (r *Replica) tailSuffix() string {
	if t := r.tail.String(); t != "" {
		return ": " + t
	}
	return ""
}

// Hello is what the replica reported when it became ready.
func (r *Replica) Hello() workerproto.Hello { return r.hello }

// PID is the replica's process id, 0 when its engine runs it elsewhere than in a local process.
func (r *Replica) PID() int { return r.conn.PID() }

// Done is closed when the replica has exited.
func (r *Replica) Done() <-chan struct{} { return r.conn.Done() }

// Tail returns the replica's last stderr lines.
func (r *Replica) Tail() string { return r.tail.String() }

// ExitErr is the replica's exit status once Done is closed.
func (r *Replica) ExitErr() error {
	select {
	case <-r.conn.Done():
		return r.conn.ExitErr()
	default:
		return nil
	}
}

// ErrReplicaDied reports that the replica died while handling a request (safe to retry elsewhere).
var ErrReplicaDied = errors.New("replica died")

// MaxInFlight is how many calls the replica takes at once; more wait in Replica's calls for a turn.
func (r *Replica) MaxInFlight() int { return cap(r.gate) }

// call runs fn as one of the replica's calls in flight, on the caller's goroutine.
//
// When ctx ends, a process replica's call is abandoned (its answer is dropped when it comes) and the replica
// goes on serving the calls behind it, unless the deadline passed while the replica was working on this very
// call: a model stuck past the request's deadline is not trusted to serve the next one, so the replica is
// killed, and the calls in flight behind it fail over to another replica (ErrReplicaDied). An in-process
// session cannot abandon a call: it is killed when ctx ends (context.AfterFunc, so the hot path starts no
// goroutine of its own).
func (r *Replica) call(ctx context.Context, fn func(ctx context.Context) error) error {
	select {
	case r.gate <- struct{}{}:
	default:
		select { // every position is taken: wait for one
		case r.gate <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.conn.Done():
			return r.diedErr()
		}
	}
	defer func() { <-r.gate }()
	select {
	case <-r.conn.Done():
		return r.diedErr()
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, inProcess := r.client.(sessionCalls)
	if inProcess {
		stop := context.AfterFunc(ctx, r.conn.Kill)
		err := fn(ctx)
		if killed := !stop(); killed && err != nil {
			return ctx.Err()
		}
		return r.failed(err)
	}
	return r.failed(fn(ctx))
}

// failed classifies a call's error: nil and a model's error pass; an abandoned call returns its context's error
// (killing the replica if the model overran the deadline on it); anything else means the stream broke, and the
// replica, given a moment to exit, is reported dead (the request may be retried elsewhere).
func (r *Replica) failed(err error) error {
	if err == nil {
		return nil
	}
	var merr *workerproto.ModelError
	if errors.As(err, &merr) {
		return err
	}
	var abandoned *workerproto.AbandonedError
	if errors.As(err, &abandoned) {
		if abandoned.Started && errors.Is(abandoned.Err, context.DeadlineExceeded) {
			r.conn.Kill()
			<-r.waitOrKill(time.Second)
		}
		return abandoned.Err
	}
	<-r.waitOrKill(time.Second)
	return fmt.Errorf("%w: %v%s", ErrReplicaDied, err, r.tailSuffix())
}

// diedErr reports that the replica's process has exited, with its exit status and last words.
func (r *Replica) diedErr() error {
	return fmt.Errorf("%w: %v%s", ErrReplicaDied, r.conn.ExitErr(), r.tailSuffix())
}

// waitOrKill gives a replica whose stream broke a moment to exit on its own, then kills it.
func (r *Replica) waitOrKill(grace time.Duration) <-chan struct{} {
	select {
	case <-r.conn.Done():
	case <-time.After(grace):
		r.conn.Kill()
	}
	return r.conn.Done()
}

// PredictJSON sends a JSON body to predict() and returns its JSON result.
func (r *Replica) PredictJSON(ctx context.Context, body []byte) (out []byte, err error) {
	err = r.call(ctx, func(ctx context.Context) error {
		out, err = r.client.PredictJSONContext(ctx, body)
		return err
	})
	return out, err
}

// PredictTensors sends a batch of columns and returns the output columns. A ctx made with
// workerproto.NewCallTimings receives the replica's own profile of the call (decode, predict(), encode) when its
// runtime reports one (the Python harness does: workerproto.Hello.Timings).
func (r *Replica) PredictTensors(ctx context.Context, in []workerproto.Tensor) (out []workerproto.Tensor, err error) {
	err = r.call(ctx, func(ctx context.Context) error {
		out, err = r.client.PredictTensorsContext(ctx, in)
		return err
	})
	return out, err
}

// PredictTensorsParams sends a batch of columns with the request's params (JSON) to a model whose predict()
// takes them (Hello().Params).
func (r *Replica) PredictTensorsParams(ctx context.Context, in []workerproto.Tensor, params []byte) (out []workerproto.Tensor, err error) {
	err = r.call(ctx, func(ctx context.Context) error {
		out, err = r.client.PredictTensorsParamsContext(ctx, in, params)
		return err
	})
	return out, err
}

// Ping checks that the replica answers (after the calls in flight before it).
func (r *Replica) Ping(ctx context.Context) error {
	return r.call(ctx, r.client.PingContext)
}

// Stop closes the replica's input (it exits on EOF), waits up to grace, then kills it. It returns once the
// replica has exited.
func (r *Replica) Stop(grace time.Duration) {
	_ = r.client.Close() // a failed close leaves the replica running: the kill below ends it
	select {
	case <-r.conn.Done():
	case <-time.After(grace):
		r.killAndWait()
	}
}

// Kill ends the replica, and everything it started, at once.
func (r *Replica) Kill() { r.conn.Kill() }

func (r *Replica) killAndWait() {
	r.conn.Kill()
	<-r.conn.Done()
}

// lineTail keeps the last n lines of a replica's stderr.
type lineTail struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func newLineTail(n int) *lineTail { return &lineTail{n: n} }

func (t *lineTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

// String returns the kept lines, trailing lines of a Python traceback first-class: the last line usually
// names the exception, so it ends the message.
func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// Package modelruntime knows how to run a model version: which process serves it (the Python harness for
// `python`, `slipway worker onnx` for `onnx`), how to start that process and speak docs/worker-protocol.md to it.
package modelruntime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipway-ml/slipway/internal/workerproto"
)

// ProcessSpec is how to start one replica process.
type ProcessSpec struct {
	Path string
	Args []string
	Env  []string // full environment of the child
	Dir  string
	// Scheduling is applied once the replica is ready (loading the model runs under the default policy).
	Scheduling Scheduling
}

// Replica is one running model process. Requests are serialised: one in flight at a time.
type Replica struct {
	cmd    *exec.Cmd
	client *workerproto.Client
	hello  workerproto.Hello
	tail   *lineTail
	done   chan struct{} // closed when the process has exited
	err    error         // exit status, valid after done
	mu     sync.Mutex    // serialises requests
}

// LogFunc receives each line the child writes to stderr.
type LogFunc func(line string)

// Start launches the process and waits (up to readyTimeout) for its hello. On failure the error carries the
// child's own last words (its hello error or the tail of its stderr).
func Start(ctx context.Context, spec ProcessSpec, readyTimeout time.Duration, log LogFunc) (*Replica, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kill the whole group: models may fork
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("replica stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("replica stdout: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("replica stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	r := &Replica{cmd: cmd, client: workerproto.NewClient(stdin, stdout), tail: newLineTail(20), done: make(chan struct{})}
	stderrDone := make(chan struct{})
	go func() { // owned by the replica: ends when the child closes stderr (exits)
		defer close(stderrDone)
		r.tail.consume(stderr, log)
	}()
	go func() { // owned by the replica: reaps the child
		<-stderrDone
		r.err = cmd.Wait()
		close(r.done)
	}()
	if err := r.awaitHello(ctx, readyTimeout); err != nil {
		r.kill()
		<-r.done
		return nil, err
	}
	if err := spec.Scheduling.apply(r.PID()); err != nil {
		r.kill()
		<-r.done
		return nil, err
	}
	return r, nil
}

func (r *Replica) awaitHello(ctx context.Context, timeout time.Duration) error {
	type result struct {
		h   workerproto.Hello
		err error
	}
	ch := make(chan result, 1)
	go func() { // ends when the hello arrives or the child dies (its stdout closes)
		h, err := r.client.ReadHello()
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

// failure explains a child that failed: its hello error if it sent one, else its exit and last stderr lines.
func (r *Replica) failure(h workerproto.Hello, err error) error {
	if !h.OK && h.Error != "" {
		return fmt.Errorf("model failed to load: %s", strings.TrimSpace(h.Error))
	}
	r.kill()
	<-r.done
	return fmt.Errorf("replica exited before it was ready (%v)%s", r.err, r.tailSuffix())
}

func (r *Replica) tailSuffix() string {
	if t := r.tail.String(); t != "" {
		return ": " + t
	}
	return ""
}

// Hello is what the replica reported when it became ready.
func (r *Replica) Hello() workerproto.Hello { return r.hello }

// PID is the replica's process id.
func (r *Replica) PID() int { return r.cmd.Process.Pid }

// Done is closed when the process has exited.
func (r *Replica) Done() <-chan struct{} { return r.done }

// Tail returns the child's last stderr lines.
func (r *Replica) Tail() string { return r.tail.String() }

// ExitErr is the process's exit status once Done is closed.
func (r *Replica) ExitErr() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// ErrReplicaDied reports that the process died while handling a request (safe to retry elsewhere).
var ErrReplicaDied = errors.New("replica died")

// call runs fn with the replica locked. A pipe read cannot be cancelled, so on ctx expiry the process is killed
// (which ends fn: its pipes close): a model stuck past the request deadline is not trusted to serve the next one.
// fn runs on the caller's goroutine; the kill is armed with context.AfterFunc, so the hot path starts no
// goroutine of its own.
func (r *Replica) call(ctx context.Context, fn func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.done:
		return fmt.Errorf("%w: %v%s", ErrReplicaDied, r.err, r.tailSuffix())
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, r.kill)
	err := fn()
	killed := !stop()
	if err == nil {
		return nil // the answer arrived (if the deadline struck just after, the supervisor replaces the process)
	}
	if killed {
		return ctx.Err()
	}
	var merr *workerproto.ModelError
	if !errors.As(err, &merr) {
		<-r.waitOrKill(time.Second)
		return fmt.Errorf("%w: %v%s", ErrReplicaDied, err, r.tailSuffix())
	}
	return err
}

// waitOrKill gives a child whose pipe broke a moment to exit on its own, then kills it.
func (r *Replica) waitOrKill(grace time.Duration) <-chan struct{} {
	select {
	case <-r.done:
	case <-time.After(grace):
		r.kill()
	}
	return r.done
}

// PredictJSON sends a JSON body to predict() and returns its JSON result.
func (r *Replica) PredictJSON(ctx context.Context, body []byte) (out []byte, err error) {
	err = r.call(ctx, func() error {
		out, err = r.client.PredictJSON(body)
		return err
	})
	return out, err
}

// PredictTensors sends a batch of columns and returns the output columns.
func (r *Replica) PredictTensors(ctx context.Context, in []workerproto.Tensor) (out []workerproto.Tensor, err error) {
	err = r.call(ctx, func() error {
		out, err = r.client.PredictTensors(in)
		return err
	})
	return out, err
}

// Ping checks that the replica answers.
func (r *Replica) Ping(ctx context.Context) error {
	return r.call(ctx, r.client.Ping)
}

// Stop closes the replica's stdin (it exits on EOF), waits up to grace, then kills its process group.
func (r *Replica) Stop(grace time.Duration) error {
	r.client.Close()
	select {
	case <-r.done:
	case <-time.After(grace):
		r.kill()
		<-r.done
	}
	return nil
}

// Kill ends the process group at once.
func (r *Replica) Kill() { r.kill() }

func (r *Replica) kill() {
	if r.cmd.Process != nil {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// lineTail keeps the last n lines of a stream and forwards each line.
type lineTail struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func newLineTail(n int) *lineTail { return &lineTail{n: n} }

func (t *lineTail) consume(r io.Reader, log LogFunc) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		t.mu.Lock()
		t.lines = append(t.lines, line)
		if len(t.lines) > t.n {
			t.lines = t.lines[len(t.lines)-t.n:]
		}
		t.mu.Unlock()
		if log != nil {
			log(line)
		}
	}
	io.Copy(io.Discard, r) // a line beyond the scanner's limit: keep draining so the child never blocks
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

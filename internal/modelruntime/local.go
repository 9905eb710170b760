package modelruntime

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"syscall"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/executor"
)

// LocalEngine runs each replica as a child process of the server, in its own process group (models may fork:
// Kill ends them all), speaking the protocol over its stdin and stdout.
type LocalEngine struct {
	// Shim is the command that applies a replica's memory limit (spec.Resources.MemoryMB, as RLIMIT_AS) before
	// it becomes the model: `slipway exec-limited`, as for job runs. Without it, a spec with a memory limit is
	// refused.
	Shim []string
	// CPU, if set, limits a replica's resources.cpu with a cgroup of its own, which the shim joins before it
	// becomes the model; nil: CPU is not limited (the hierarchy is not writable, docs/engines.md Resources).
	CPU *executor.CPUCgroups
}

var _ Engine = LocalEngine{}

// Start launches spec.Path. The process does not depend on ctx: it lives until it exits or is killed.
func (e LocalEngine) Start(_ context.Context, spec ProcessSpec, stderr LogFunc) (Conn, error) {
	path, args := spec.Path, spec.Args
	la := executor.LimitArgs(slipway.JobLimits{MemoryBytes: spec.Resources.MemoryBytes()})
	cgroup := ""
	if e.CPU != nil && spec.Resources != nil && spec.Resources.CPU > 0 && len(e.Shim) > 0 {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		dir, err := e.CPU.Create("replica-"+hex.EncodeToString(b), spec.Resources.CPU)
		if err != nil {
			return nil, fmt.Errorf("replica cpu limit: %w", err)
		}
		cgroup = dir
		la = append(la, executor.CgroupArg(dir))
	}
	if len(la) > 0 {
		if len(e.Shim) == 0 {
			return nil, slipway.Errorf(slipway.EUNAVAILABLE, "this server cannot limit a replica's memory (no exec-limited shim): leave resources.memory_mb out")
		}
		path = e.Shim[0]
		args = slices.Concat(e.Shim[1:], la, []string{"--", spec.Path}, spec.Args)
	}
	removeCgroup := func() {
		if cgroup != "" {
			_ = e.CPU.Remove(cgroup) // best effort: an empty cgroup left behind holds nothing
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("replica stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("replica stdout: %w", err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("replica stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		removeCgroup()
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	p := &localProcess{WriteCloser: stdin, Reader: stdout, pid: cmd.Process.Pid, scheduling: spec.Scheduling,
		done: make(chan struct{})}
	go func() { // owned by p: reaps the child once it closed stderr (exited); Wait closes the pipes
		forwardLines(errPipe, stderr)
		p.err = cmd.Wait()
		removeCgroup()
		close(p.done)
	}()
	return p, nil
}

// localProcess is a replica running as a child process: its stdin and stdout are the connection.
type localProcess struct {
	io.WriteCloser // stdin
	io.Reader      // stdout
	pid            int
	scheduling     Scheduling
	done           chan struct{} // closed when the process has exited
	err            error         // exit status, valid after done
}

func (p *localProcess) Ready() error          { return applyScheduling(p.scheduling, p.pid) }
func (p *localProcess) Done() <-chan struct{} { return p.done }
func (p *localProcess) ExitErr() error        { return p.err }
func (p *localProcess) PID() int              { return p.pid }

// Kill sends SIGKILL to the whole process group: what the model forked goes too, even after the model itself
// has exited.
func (p *localProcess) Kill() {
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // ESRCH: nothing is left of the group, which is what we wanted
}

// forwardLines passes each line of r to log (if any) until r ends.
func forwardLines(r io.Reader, log LogFunc) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if log != nil {
			log(sc.Text())
		}
	}
	_, _ = io.Copy(io.Discard, r) // a line beyond the scanner's limit: keep draining so the child never blocks
}

package executor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipway-ml/slipway"
)

// maxLine is the longest line passed to Output in one piece; longer lines arrive in pieces.
const maxLine = 64 << 10

// drainTimeout bounds how long output is still read after a process exited: a descendant that escaped the
// process group (setsid) may hold the pipes open forever.
const drainTimeout = 5 * time.Second

// Local runs processes on this machine. Each process leads its own process group, so that Stop and the end of a
// run reach everything it started; resource limits are applied by re-executing Shim (the `slipway exec-limited`
// command: setrlimit, then exec) in front of the program.
type Local struct {
	shim       []string
	cpu        *CPUCgroups // nil: CPU is not limited
	supervisor []string    // `slipway exec-supervise`: with it, processes with a StateDir outlive the server
	mu         sync.Mutex
	procs      map[string]*proc
}

type proc struct {
	pgid     int
	stateDir string        // supervised: where its spool and exit record are (removed once Wait has reported)
	done     chan struct{} // closed once the process exited and its output was read
	detach   chan struct{} // closed by Detach (supervised processes only)
	followed chan struct{} // closed when the follower of a supervised process has delivered its last line
	exit     Exit
}

var _ Executor = (*Local)(nil)

// NewLocal returns a local executor. shim is the command that applies limits (for example
// [/usr/bin/slipway exec-limited]); with an empty shim, specs with limits are refused.
func NewLocal(shim []string) *Local {
	return &Local{shim: shim, procs: map[string]*proc{}}
}

// WithCPU makes the executor limit a run's resources.cpu with a cgroup of its own (see CPUCgroups), which
// the shim joins before it becomes the program. Without it CPU is not limited.
func (l *Local) WithCPU(c *CPUCgroups) *Local {
	l.cpu = c
	return l
}

// removeCgroup deletes the cgroup of run id, if it had one (its name is the run's: a run recovered after a
// restart finds it too).
func (l *Local) removeCgroup(id string) {
	if l.cpu != nil && id != "" {
		_ = l.cpu.Remove(filepath.Join(l.cpu.Parent, "slipway-"+id)) // best effort: an empty cgroup holds nothing
	}
}

// WithSupervisor makes processes started with a StateDir supervised by cmd (the `slipway exec-supervise`
// command): they survive the server, and a later server re-attaches to them (see supervise.go).
func (l *Local) WithSupervisor(cmd []string) *Local {
	l.supervisor = cmd
	return l
}

// Start launches spec in a new process group, its stdin /dev/null and its output piped to spec.Output.
func (l *Local) Start(ctx context.Context, spec Spec) (Handle, error) {
	path, args := spec.Path, spec.Args
	la := LimitArgs(spec.rlimits())
	if l.cpu != nil && spec.Resources != nil && spec.Resources.CPU > 0 && len(l.shim) > 0 {
		dir, err := l.cpu.Create(spec.ID, spec.Resources.CPU)
		if err != nil {
			return Handle{}, fmt.Errorf("executor: cpu limit of %s: %w", spec.ID, err)
		}
		la = append(la, CgroupArg(dir))
	}
	if len(la) > 0 {
		if len(l.shim) == 0 {
			return Handle{}, slipway.Errorf(slipway.EUNAVAILABLE, "this executor cannot apply resource limits (no exec-limited shim)")
		}
		path = l.shim[0]
		args = append(append(append(append([]string{}, l.shim[1:]...), la...), "--", spec.Path), spec.Args...)
	}
	l.mu.Lock()
	_, dup := l.procs[spec.ID]
	l.mu.Unlock()
	if dup {
		return Handle{}, fmt.Errorf("executor: process %s already started", spec.ID)
	}
	out := orDiscard(spec.Output)
	if spec.StateDir != "" && len(l.supervisor) > 0 {
		return l.startSupervised(spec, path, args, out)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return Handle{}, fmt.Errorf("executor: pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return Handle{}, fmt.Errorf("executor: pipe: %w", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	closeAll(outW, errW) // the child holds its own copies
	if err != nil {
		closeAll(outR, errR)
		l.removeCgroup(spec.ID)
		return Handle{}, slipway.Wrap(slipway.EINVALID, err, "cannot start %s: %v", spec.Path, err)
	}
	p := &proc{pgid: cmd.Process.Pid, done: make(chan struct{})}
	l.mu.Lock()
	l.procs[spec.ID] = p
	l.mu.Unlock()

	var lastOut, lastErr lastLine
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); readLines(outR, "stdout", out, &lastOut) }() // ends at EOF or when outR is closed
	go func() { defer readers.Done(); readLines(errR, "stderr", out, &lastErr) }()
	go func() { // the reaper, owned by p: ends when the process has exited and its output is drained
		state, werr := cmd.Process.Wait()
		// The run is over: whatever it left behind in its group goes too.
		killGroup(p.pgid, syscall.SIGKILL)
		drainOrClose(&readers, outR, errR)
		p.exit = exitOf(state, werr)
		p.exit.LastLine = lastErr.get()
		if p.exit.LastLine == "" {
			p.exit.LastLine = lastOut.get()
		}
		close(p.done)
	}()
	return Handle{ID: spec.ID, PID: p.pgid, ProcStart: procStart(p.pgid)}, nil
}

// killGroup sends sig to the process group pgid. Its only possible error, ESRCH, means that the group is
// already gone, which is what every caller wants.
func killGroup(pgid int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
}

// closeAll closes files this process no longer uses (pipe ends, a descriptor a child inherited). Nothing was
// written through them here, so an error on close loses nothing.
func closeAll(files ...io.Closer) {
	for _, f := range files {
		_ = f.Close()
	}
}

func exitOf(state *os.ProcessState, err error) Exit {
	if state == nil {
		return Exit{Code: -1, Signal: fmt.Sprintf("wait failed: %v", err)}
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Exit{Code: -1, Signal: ws.Signal().String()}
	}
	return Exit{Code: state.ExitCode()}
}

func (l *Local) get(id string) (*proc, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.procs[id]
	if !ok {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "no process %s on this server", id)
	}
	return p, nil
}

// Wait blocks until the process exited and its output was read, then forgets it.
func (l *Local) Wait(ctx context.Context, id string) (Exit, error) {
	p, err := l.get(id)
	if err != nil {
		return Exit{}, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	l.mu.Lock()
	delete(l.procs, id)
	l.mu.Unlock()
	if p.stateDir != "" {
		removeStateFiles(p.stateDir)
	}
	l.removeCgroup(id)
	return p.exit, nil
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace (at once when grace is 0).
func (l *Local) Stop(ctx context.Context, id string, grace time.Duration) error {
	p, err := l.get(id)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if grace > 0 {
		killGroup(p.pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			return nil
		case <-t.C:
		case <-ctx.Done():
		}
	}
	killGroup(p.pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startSupervised starts the supervisor in a new process group with the program behind it; the spool is
// read while the server runs.
func (l *Local) startSupervised(spec Spec, path string, args []string, out func(string, time.Time, string)) (Handle, error) {
	dir := spec.StateDir
	removeStateFiles(dir) // of an earlier attempt with the same folder
	logf, err := os.Create(filepath.Join(dir, superLog))
	if err != nil {
		return Handle{}, fmt.Errorf("executor: supervisor log: %w", err)
	}
	argv := append(append([]string{}, l.supervisor[1:]...), "--spool="+filepath.Join(dir, spoolFile),
		"--exit="+filepath.Join(dir, exitFile))
	if spec.MaxOutput > 0 {
		argv = append(argv, "--max-bytes="+strconv.FormatInt(spec.MaxOutput, 10))
	}
	argv = append(argv, "--", path)
	cmd := exec.Command(l.supervisor[0], append(argv, args...)...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	cmd.Stdout, cmd.Stderr = logf, logf // not pipes: the supervisor must outlive this server
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	closeAll(logf) // the supervisor holds its own descriptor
	if err != nil {
		return Handle{}, slipway.Wrap(slipway.EINVALID, err, "cannot start %s: %v", spec.Path, err)
	}
	h := Handle{ID: spec.ID, PID: cmd.Process.Pid, ProcStart: procStart(cmd.Process.Pid), StateDir: dir}
	l.attach(h, out, func(<-chan struct{}) Exit {
		state, err := cmd.Process.Wait() // our child: reaped here (after a Detach, when it ends or with the server)
		return exitOf(state, err)
	})
	return h, nil
}

// attach follows a supervised process: it delivers the spool's lines every pollEvery until ended (which
// blocks until the supervisor has exited and says how it ended) returns, then records the exit.
func (l *Local) attach(h Handle, out func(string, time.Time, string), ended func(detach <-chan struct{}) Exit) {
	p := &proc{pgid: h.PID, stateDir: h.StateDir, done: make(chan struct{}), detach: make(chan struct{}), followed: make(chan struct{})}
	l.mu.Lock()
	l.procs[h.ID] = p
	l.mu.Unlock()
	tail := newSpoolTail(h.StateDir, out)
	go func() { // owned by p: ends when the supervisor has exited, or at Detach
		defer close(p.followed)
		exited := make(chan Exit, 1)
		go func() { exited <- ended(p.detach) }() // ends with the supervisor, or at Detach when it polls
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			select {
			case supervisor := <-exited:
				tail.poll(true)
				killGroup(p.pgid, syscall.SIGKILL) // whatever the program left behind in its group
				exit, ok := readExit(h.StateDir)
				if !ok {
					exit = supervisor
					exit.LastLine = lostExitLine(h.StateDir)
				}
				p.exit = exit
				close(p.done)
				return
			case <-p.detach:
				tail.poll(false)
				return
			case <-tick.C:
				tail.poll(false)
			}
		}
	}()
}

// pollEvery is how often a supervised process's spool is read (and, re-attached, its liveness checked).
const pollEvery = 100 * time.Millisecond

// orDiscard is out, or a function that drops the lines when nobody reads them.
func orDiscard(out func(string, time.Time, string)) func(string, time.Time, string) {
	if out == nil {
		return func(string, time.Time, string) {}
	}
	return out
}

// lostExitLine explains an exit the supervisor did not record (it was killed, most likely), with its own last
// words when it wrote any.
func lostExitLine(dir string) string {
	msg := "the supervisor ended without recording the exit (was it killed?)"
	b, _ := os.ReadFile(filepath.Join(dir, superLog))
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); lines[len(lines)-1] != "" {
		msg += "; its last words: " + lines[len(lines)-1]
	}
	return msg
}

// Detach stops following a supervised process and forgets it; it runs on (see Executor). It returns once
// the output read so far is delivered, so that the caller may close what Output writes to.
func (l *Local) Detach(id string) bool {
	l.mu.Lock()
	p, ok := l.procs[id]
	if !ok || p.detach == nil {
		l.mu.Unlock()
		return false
	}
	delete(l.procs, id)
	l.mu.Unlock()
	close(p.detach)
	<-p.followed
	return true
}

// Recover re-attaches to a supervised process that is still running or that ended while no server ran (its
// exit is recorded). Otherwise it makes sure the process group of h is gone and returns ErrLost: an
// unsupervised process cannot be re-attached (its output pipes died with the previous server). The group is
// killed only when it is provably the one h started: the leader's start time matches, or the leader is gone
// and its PID unused while the group lives on.
func (l *Local) Recover(ctx context.Context, h Handle, output func(string, time.Time, string)) error {
	if h.PID <= 0 {
		return ErrLost
	}
	output = orDiscard(output)
	if h.StateDir != "" && len(l.supervisor) > 0 {
		if Alive(h) {
			l.attach(h, output, func(detach <-chan struct{}) Exit {
				tick := time.NewTicker(pollEvery)
				defer tick.Stop()
				for Alive(h) {
					select {
					case <-detach:
						return Exit{}
					case <-tick.C:
					}
				}
				return Exit{Code: -1, Signal: "unknown"} // not our child: its status is only in the exit record
			})
			return nil
		}
		if _, ok := readExit(h.StateDir); ok {
			l.attach(h, output, func(<-chan struct{}) Exit { return Exit{} })
			return nil
		}
	}
	start := procStart(h.PID)
	ours := (start != 0 && start == h.ProcStart) || (start == 0 && groupExists(h.PID))
	if !ours {
		return ErrLost
	}
	killGroup(h.PID, syscall.SIGKILL)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for groupExists(h.PID) || procStart(h.PID) == h.ProcStart && h.ProcStart != 0 {
		select {
		case <-ctx.Done():
			return errors.Join(ErrLost, ctx.Err())
		case <-deadline:
			return fmt.Errorf("executor: process group %d still alive after SIGKILL: %w", h.PID, ErrLost)
		case <-tick.C:
		}
	}
	return ErrLost
}

// Alive reports whether the process of h (same PID and start time) is running: tests and recovery checks.
func Alive(h Handle) bool {
	return h.PID > 0 && h.ProcStart != 0 && procStart(h.PID) == h.ProcStart
}

// groupExists reports whether a live (non-zombie) process is in process group pgid. kill(-pgid, 0) would also
// count zombies, which linger when PID 1 of a container does not reap orphans.
func groupExists(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" && pid > 0 {
			return true
		}
	}
	return false
}

// procStart reads the start time of pid (field 22 of /proc/PID/stat, clock ticks since boot); 0 when the
// process does not exist or is a zombie.
func procStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return 0
	}
	n, _ := strconv.ParseUint(fields[19], 10, 64)
	return n
}

// lastLine keeps the last non-empty line of a stream.
type lastLine struct {
	mu sync.Mutex
	s  string
}

func (l *lastLine) set(s string) {
	if strings.TrimSpace(s) == "" {
		return
	}
	l.mu.Lock()
	l.s = s
	l.mu.Unlock()
}

func (l *lastLine) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s
}

func readLines(r io.Reader, stream string, out func(string, time.Time, string), last *lastLine) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			line := strings.TrimRight(string(b), "\r\n")
			out(stream, time.Now(), line)
			last.set(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

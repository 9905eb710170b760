// Package executor runs job processes behind an interface (Start/Wait/Stop/Recover, the shape of a Nomad task
// driver) so that a cluster scheduler can take the local executor's place. Local runs each process in its own
// process group with resource limits, captures its output line by line and kills the whole group on stop.
package executor

import (
	"context"
	"errors"
	"time"

	"github.com/slipway-ml/slipway"
)

// Spec is one process to run.
type Spec struct {
	ID     string // the run id: names the process in Wait/Stop
	Path   string
	Args   []string
	Env    []string // the child's whole environment
	Dir    string
	Limits slipway.JobLimits
	// Resources are what the run may use (nil: not limited). Local applies memory_mb as RLIMIT_AS (the lower
	// of it and Limits.MemoryBytes); Kube sets the container's requests and limits from both fields.
	Resources *slipway.Resources
	// StateDir is a folder of the run's own where a supervised process keeps its output spool and exit record
	// (see Local.WithSupervisor); "" runs the process unsupervised, tied to this server.
	StateDir string
	// MaxOutput bounds the spooled output of a supervised process (0: the supervisor's default, 64 MiB).
	MaxOutput int64
	// Output receives every line the process writes, with the stream ("stdout" or "stderr") and the time it
	// was read. It is called from the executor's goroutines, one line at a time.
	Output func(stream string, at time.Time, line string)
}

// Handle identifies a started process across server restarts.
type Handle struct {
	ID        string
	PID       int
	ProcStart uint64 // process start time (clock ticks since boot), 0 when unknown
	StateDir  string // Spec.StateDir: where Recover finds a supervised process's output and exit
}

// Exit is how a process ended.
type Exit struct {
	Code     int    `json:"code"`                // exit status, -1 when killed by a signal
	Signal   string `json:"signal,omitempty"`    // "killed", "terminated", "CPU time limit exceeded"... when killed by a signal
	LastLine string `json:"last_line,omitempty"` // the last stderr line (or stdout when stderr was silent): why it failed, in its own words
	// Reason, when set, is why the run failed in the executor's words rather than the program's: an OOM kill by
	// the cluster, an image no node has, a pod evicted with its node. The run fails with it as its reason.
	Reason string `json:"reason,omitempty"`
}

// ErrLost is returned by Recover when a process from an earlier server cannot be re-attached. The executor has
// made sure it is no longer running.
var ErrLost = errors.New("executor: process lost")

// Executor starts and supervises processes.
type Executor interface {
	// Start launches spec; the process runs until it exits or Stop ends it, independent of ctx.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// Wait blocks until the process id exits (or ctx ends) and reports how.
	Wait(ctx context.Context, id string) (Exit, error)
	// Stop asks the process and everything it started to end (SIGTERM), then kills them after grace.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Recover re-attaches to a process started by an earlier server (its further output goes to output, Wait
	// and Stop work as for a process started here; one that ended meanwhile reports its real exit), or returns
	// ErrLost after making sure it is gone (a dead process, or one whose output can no longer be captured).
	Recover(ctx context.Context, h Handle, output func(stream string, at time.Time, line string)) error
	// Detach lets a process run on without this server (which is shutting down): its output is no longer read
	// until a later server re-attaches with Recover. It reports false when the process cannot outlive the
	// server (it was not supervised); then the caller stops it.
	Detach(id string) bool
}

// rlimits are the process limits Local applies: Limits, with the address space lowered to Resources' memory.
func (s Spec) rlimits() slipway.JobLimits {
	l := s.Limits
	if m := s.Resources.MemoryBytes(); m > 0 && (l.MemoryBytes == 0 || m < l.MemoryBytes) {
		l.MemoryBytes = m
	}
	return l
}

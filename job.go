package slipway

import (
	"context"
	"time"
)

// RunState is the lifecycle of a job run and of a pipeline run: ACCEPTED (queued) → IN_PROGRESS → SUCCEEDED,
// FAILED or CANCELED. A queued run can be canceled before it starts.
type RunState string

const (
	RunAccepted   RunState = "ACCEPTED"
	RunInProgress RunState = "IN_PROGRESS"
	RunSucceeded  RunState = "SUCCEEDED"
	RunFailed     RunState = "FAILED"
	RunCanceled   RunState = "CANCELED"
)

// Terminal reports whether a run in state s is over.
func (s RunState) Terminal() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCanceled
}

// CanMoveTo reports whether a run may go from s to to. A pipeline run that FAILED or was CANCELED may go back
// to IN_PROGRESS (retry from its failed steps); a job run never leaves a terminal state.
func (s RunState) CanMoveTo(to RunState) bool {
	switch s {
	case RunAccepted:
		return to == RunInProgress || to == RunCanceled || to == RunFailed
	case RunInProgress:
		return to.Terminal()
	}
	return false
}

// JobLimits are the resources a job's process may use; zero means no limit beyond the server's own.
type JobLimits struct {
	CPUSeconds  int64 `json:"cpu_seconds,omitempty"`  // RLIMIT_CPU: CPU time, all threads
	MemoryBytes int64 `json:"memory_bytes,omitempty"` // RLIMIT_AS: address space
	OpenFiles   int64 `json:"open_files,omitempty"`   // RLIMIT_NOFILE
	Processes   int64 `json:"processes,omitempty"`    // RLIMIT_NPROC (per user; not enforced for root)
}

// Entrypoint kinds: how a job's entrypoint is started.
const (
	EntryPython    = "python"     // *.py: python3 -u FILE ARGS
	EntryShell     = "shell"      // *.sh: /bin/sh FILE ARGS
	EntryJar       = "jar"        // *.jar: java -jar FILE ARGS
	EntryJavaClass = "java-class" // a main class: java -cp .:*:lib/* CLASS ARGS
	EntryScript    = "script"     // an inline pipeline script: /bin/sh -e SCRIPT
)

// JobSpec is what a client sends to create a job (the `spec` part of the upload).
type JobSpec struct {
	Name              string            `json:"name"`
	Entrypoint        string            `json:"entrypoint"`
	Args              []string          `json:"args,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	MaxRuntimeSeconds int               `json:"max_runtime_seconds,omitempty"`
	Limits            JobLimits         `json:"limits"`
	// Resources are what each run may use (cpu cores, memory_mb); nil: not limited.
	Resources   *Resources `json:"resources,omitempty"`
	Description string     `json:"description,omitempty"`
}

// Job is a template for runs: an artifact (a file or an unpacked project), an entrypoint and defaults.
type Job struct {
	JobSpec
	Kind      string    `json:"kind"`   // one of the Entry* kinds
	Digest    string    `json:"digest"` // identifies the uploaded artifact: sha256 of its content's sha256 and its file name
	Files     []string  `json:"files"`  // paths of the artifact's files
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
}

// JobRun is one execution of a job or of a pipeline step.
type JobRun struct {
	ID          string            `json:"id"`
	Job         string            `json:"job,omitempty"`
	PipelineRun string            `json:"pipeline_run,omitempty"`
	Step        string            `json:"step,omitempty"`
	Attempt     int               `json:"attempt,omitempty"`
	State       RunState          `json:"state"`
	ExitCode    *int              `json:"exit_code"`
	Reason      string            `json:"reason"`
	Args        []string          `json:"args"`
	Env         map[string]string `json:"env,omitempty"`
	Outputs     map[string]any    `json:"outputs,omitempty"` // $SLIPWAY_OUTPUT_DIR/outputs.json
	CreatedAt   time.Time         `json:"created_at"`
	StartedAt   *time.Time        `json:"started_at"`
	FinishedAt  *time.Time        `json:"finished_at"`
	CreatedBy   string            `json:"created_by"`
	PID         int               `json:"pid,omitempty"`

	// Kept by the server, not shown.
	Spec         RunSpec `json:"-"`
	ProcStart    uint64  `json:"-"` // start time of PID (clock ticks since boot): tells PID reuse apart
	TokenID      string  `json:"-"`
	OutputDigest string  `json:"-"` // sha256 over the output folder's files, for step caching

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
}

// RunSpec is the resolved command of a run, frozen when the run is created.
type RunSpec struct {
	Kind              string            `json:"kind"`
	Entrypoint        string            `json:"entrypoint,omitempty"`
	Script            string            `json:"script,omitempty"`
	ArtifactDir       string            `json:"artifact_dir,omitempty"` // copied into the run's working folder
	Args              []string          `json:"args"`
	Env               map[string]string `json:"env"`
	MaxRuntimeSeconds int               `json:"max_runtime_seconds"`
	Limits            JobLimits         `json:"limits"`
	Resources         *Resources        `json:"resources,omitempty"`
}

// JobRunFilter selects job runs; empty fields match everything.
type JobRunFilter struct {
	Job         string
	PipelineRun string
	State       RunState
	Offset      int
	Limit       int
}

// JobStore persists jobs and their runs.
type JobStore interface {
	CreateJob(ctx context.Context, j *Job) error
	FindJob(ctx context.Context, name string) (*Job, error)
	FindJobs(ctx context.Context) ([]*Job, error)
	DeleteJob(ctx context.Context, name string) error

	CreateJobRun(ctx context.Context, r *JobRun) error
	FindJobRun(ctx context.Context, id string) (*JobRun, error)
	FindJobRuns(ctx context.Context, f JobRunFilter) ([]*JobRun, int, error)
	// NextAcceptedJobRun returns the oldest ACCEPTED run (ENOTFOUND when the queue is empty).
	NextAcceptedJobRun(ctx context.Context) (*JobRun, error)
	// StartJobRun moves an ACCEPTED run to IN_PROGRESS (ECONFLICT if it is no longer ACCEPTED).
	StartJobRun(ctx context.Context, id string, at time.Time) error
	// SetJobRunProcess records the process and token of an IN_PROGRESS run.
	SetJobRunProcess(ctx context.Context, id string, pid int, procStart uint64, tokenID string) error
	// FinishJobRun moves r from ACCEPTED or IN_PROGRESS to r.State with its exit code, reason and outputs
	// (ECONFLICT when it was already over).
	FinishJobRun(ctx context.Context, r *JobRun) error
	// RequestJobRunCancel flags an IN_PROGRESS run for cancellation by its owner server, with the reason its
	// end will carry (ECONFLICT when it is no longer in progress).
	RequestJobRunCancel(ctx context.Context, id, reason string) error
	// CancelRequestedJobRuns returns the IN_PROGRESS runs this server owns that are flagged for cancellation:
	// run id → the cancel's reason.
	CancelRequestedJobRuns(ctx context.Context) (map[string]string, error)
}

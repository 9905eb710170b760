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
	Description       string            `json:"description,omitempty"`
}

// Job is a template for runs: an artifact (a file or an unpacked project), an entrypoint and defaults.
type Job struct {
	JobSpec
	Kind      string    `json:"kind"`   // one of the Entry* kinds
	Digest    string    `json:"digest"` // identifies the uploaded artifact: sha256 of its content's sha256 and its file name
	Files     []string  `json:"files"`  // paths of the artifact's files
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
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
}

// StepState is the state of one step of a pipeline run.
type StepState string

const (
	StepPending    StepState = "PENDING"
	StepInProgress StepState = "IN_PROGRESS"
	StepRetryWait  StepState = "RETRY_WAIT" // an attempt failed; the next starts at next_attempt_at
	StepSucceeded  StepState = "SUCCEEDED"
	StepFailed     StepState = "FAILED"
	StepSkipped    StepState = "SKIPPED"
	StepCanceled   StepState = "CANCELED"
)

// Terminal reports whether a step in state s is settled.
func (s StepState) Terminal() bool {
	return s == StepSucceeded || s == StepFailed || s == StepSkipped || s == StepCanceled
}

// PipelineSpec is a pipeline definition (JSON or YAML with the same fields).
type PipelineSpec struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Params      map[string]any `json:"params,omitempty"` // defaults; null marks a parameter every run must give
	Steps       []StepSpec     `json:"steps"`
	OnExit      *StepSpec      `json:"on_exit,omitempty"`
}

// StepSpec is one step: exactly one of Job, Script and Builtin.
type StepSpec struct {
	Name                string         `json:"name"`
	Job                 string         `json:"job,omitempty"`
	Script              string         `json:"script,omitempty"`
	Builtin             string         `json:"builtin,omitempty"` // register, evaluate, deploy
	With                map[string]any `json:"with,omitempty"`
	DependsOn           []string       `json:"depends_on,omitempty"`
	Retries             int            `json:"retries,omitempty"`
	RetryBackoffSeconds float64        `json:"retry_backoff_seconds,omitempty"`
	TimeoutSeconds      int            `json:"timeout_seconds,omitempty"`
	Cache               bool           `json:"cache,omitempty"`
}

// Pipeline is a stored pipeline definition with its optional project artifact (the working folder of its
// script steps).
type Pipeline struct {
	Name           string       `json:"name"`
	Spec           PipelineSpec `json:"spec"`
	ArtifactDigest string       `json:"artifact_digest,omitempty"`
	CreatedAt      time.Time    `json:"created_at"`
	CreatedBy      string       `json:"created_by"`
}

// PipelineRun is one run of a pipeline: its parameters and the state of every step (a DAG: each step lists
// what it depends on).
type PipelineRun struct {
	ID         string         `json:"id"`
	Pipeline   string         `json:"pipeline"`
	State      RunState       `json:"state"`
	Reason     string         `json:"reason"`
	Params     map[string]any `json:"params"`
	Trigger    string         `json:"trigger"` // "api", "schedule:NAME"
	Retries    int            `json:"retries"` // times it was resumed from its failed steps
	Steps      []*StepRun     `json:"steps"`
	CreatedAt  time.Time      `json:"created_at"`
	StartedAt  *time.Time     `json:"started_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	CreatedBy  string         `json:"created_by"`

	Spec            PipelineSpec `json:"-"` // frozen at creation
	ArtifactDigest  string       `json:"-"`
	CancelRequested bool         `json:"-"`
}

// StepRun is the record of one step in a pipeline run.
type StepRun struct {
	Name          string         `json:"name"`
	Kind          string         `json:"kind"` // job, script, builtin:NAME
	DependsOn     []string       `json:"depends_on"`
	OnExit        bool           `json:"on_exit,omitempty"`
	State         StepState      `json:"state"`
	Reason        string         `json:"reason"`
	Attempts      int            `json:"attempts"`
	JobRun        string         `json:"job_run,omitempty"` // the latest attempt's job run
	Cached        bool           `json:"cached"`
	Outputs       map[string]any `json:"outputs,omitempty"`
	StartedAt     *time.Time     `json:"started_at"`
	FinishedAt    *time.Time     `json:"finished_at"`
	NextAttemptAt *time.Time     `json:"next_attempt_at,omitempty"`
	History       []StepAttempt  `json:"history"`

	Position     int    `json:"-"`
	RetryBase    int    `json:"-"` // attempts made before the last resume: the retry budget counts from here
	CacheKey     string `json:"-"`
	OutputDir    string `json:"-"`
	OutputDigest string `json:"-"`
}

// StepAttempt is one finished attempt of a step.
type StepAttempt struct {
	Attempt    int        `json:"attempt"`
	JobRun     string     `json:"job_run,omitempty"`
	State      StepState  `json:"state"`
	Reason     string     `json:"reason,omitempty"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// PipelineStore persists pipelines and their runs.
type PipelineStore interface {
	CreatePipeline(ctx context.Context, p *Pipeline) error
	FindPipeline(ctx context.Context, name string) (*Pipeline, error)
	FindPipelines(ctx context.Context) ([]*Pipeline, error)
	DeletePipeline(ctx context.Context, name string) error

	CreatePipelineRun(ctx context.Context, r *PipelineRun) error
	FindPipelineRun(ctx context.Context, id string) (*PipelineRun, error)
	FindPipelineRuns(ctx context.Context, pipeline string, offset, limit int) ([]*PipelineRun, int, error)
	// FindActivePipelineRuns returns the IN_PROGRESS runs (the ones a server start resumes).
	FindActivePipelineRuns(ctx context.Context) ([]*PipelineRun, error)
	// UpdatePipelineRun stores the run's state, reason and times (not the cancel flag).
	UpdatePipelineRun(ctx context.Context, r *PipelineRun) error
	// RequestPipelineRunCancel flags an IN_PROGRESS run for cancellation (ECONFLICT when it is over).
	RequestPipelineRunCancel(ctx context.Context, id, reason string) error
	// ResumePipelineRun moves a FAILED or CANCELED run back to IN_PROGRESS, clearing its cancel flag, end
	// time and reason, and counting the retry.
	ResumePipelineRun(ctx context.Context, id string) error
	UpdateStepRun(ctx context.Context, runID string, s *StepRun) error
	// FindCachedStep returns a SUCCEEDED step of pipeline whose cache key is key (ENOTFOUND if none).
	FindCachedStep(ctx context.Context, pipeline, key string) (*StepRun, error)
}

// Schedule concurrency policies: what a tick does while the previous run is still going.
const (
	PolicyAllow   = "allow"   // start another run
	PolicyForbid  = "forbid"  // skip the tick
	PolicyReplace = "replace" // cancel the previous run, then start
)

// Schedule target kinds.
const (
	TargetJob      = "job"
	TargetPipeline = "pipeline"
	TargetBatch    = "batch"
)

// Schedule starts a job or a pipeline on a cron expression.
type Schedule struct {
	Name              string            `json:"name"`
	Cron              string            `json:"cron"`     // 5 fields, or 6 with seconds first
	Timezone          string            `json:"timezone"` // IANA name; default UTC
	Target            ScheduleTarget    `json:"target"`
	Args              []string          `json:"args,omitempty"`   // job runs
	Env               map[string]string `json:"env,omitempty"`    // job runs
	Params            map[string]any    `json:"params,omitempty"` // pipeline runs
	Batch             *BatchSpec        `json:"batch,omitempty"`  // batch prediction runs (target kind "batch")
	ConcurrencyPolicy string            `json:"concurrency_policy"`
	// CatchUp starts one run at server start when ticks were missed while it was down (default true).
	CatchUp    *bool      `json:"catch_up,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	LastTickAt *time.Time `json:"last_tick_at"`
	LastRunID  string     `json:"last_run_id,omitempty"`
	NextTickAt *time.Time `json:"next_tick_at,omitempty"` // computed, not stored
	Ticks      []*Tick    `json:"recent_ticks,omitempty"` // filled by get
}

// ScheduleTarget is what a schedule starts: a job, a pipeline or a batch prediction (Kind is a Target
// constant), by name.
type ScheduleTarget struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// ScheduleSpec is the body that creates a schedule: the Schedule fields a client chooses.
type ScheduleSpec struct {
	Name              string            `json:"name"`
	Cron              string            `json:"cron"`               // 5 fields, 6 with seconds first, or @daily...
	Timezone          string            `json:"timezone,omitempty"` // IANA name, default UTC
	Target            ScheduleTarget    `json:"target"`
	Args              []string          `json:"args,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	Params            map[string]any    `json:"params,omitempty"`
	Batch             *BatchSpec        `json:"batch,omitempty"`              // target kind batch
	ConcurrencyPolicy string            `json:"concurrency_policy,omitempty"` // allow, forbid (default), replace
	CatchUp           *bool             `json:"catch_up,omitempty"`
}

// Tick is a decision a schedule took at one cron time, recorded before any run starts.
type Tick struct {
	Schedule   string    `json:"schedule"`
	At         time.Time `json:"at"`          // the cron time
	RecordedAt time.Time `json:"recorded_at"` // when the server decided
	Action     string    `json:"action"`      // started, skipped, replaced, failed
	RunID      string    `json:"run_id,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}

// ScheduleStore persists schedules and their ticks.
type ScheduleStore interface {
	CreateSchedule(ctx context.Context, s *Schedule) error
	FindSchedule(ctx context.Context, name string) (*Schedule, error)
	FindSchedules(ctx context.Context) ([]*Schedule, error)
	DeleteSchedule(ctx context.Context, name string) error
	// RecordTick stores t and moves the schedule's last tick to t.At, only if the last tick is before t.At
	// (ECONFLICT otherwise): a tick is decided once.
	RecordTick(ctx context.Context, t *Tick) error
	// UpdateTick stores the outcome of a recorded tick (action, run id, reason) and the schedule's last run.
	UpdateTick(ctx context.Context, t *Tick) error
	FindTicks(ctx context.Context, schedule string, limit int) ([]*Tick, error)
}

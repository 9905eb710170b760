package slipway

import (
	"context"
	"time"
)

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

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
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

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
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

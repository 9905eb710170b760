package slipway

import (
	"context"
	"time"
)

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

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
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

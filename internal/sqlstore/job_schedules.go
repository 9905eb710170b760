package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/slipway-ml/slipway"
)

var _ slipway.ScheduleStore = (*DB)(nil)

// scheduleInput is what a schedule passes to the runs it starts.
type scheduleInput struct {
	Args   []string           `json:"args,omitempty"`
	Env    map[string]string  `json:"env,omitempty"`
	Params map[string]any     `json:"params,omitempty"`
	Batch  *slipway.BatchSpec `json:"batch,omitempty"`
}

const scheduleColumns = `name, cron, timezone, target_kind, target_name, input, policy, catch_up, created_at, created_by, last_tick_at, last_run_id, project`

// CreateSchedule inserts s; ECONFLICT when the name is taken.
func (db *DB) CreateSchedule(ctx context.Context, s *slipway.Schedule) error {
	if s.CreatedAt.IsZero() {
		s.CreatedAt = db.now().UTC()
	}
	input, err := json.Marshal(scheduleInput{Args: s.Args, Env: s.Env, Params: s.Params, Batch: s.Batch})
	if err != nil {
		return fmt.Errorf("sqlstore: encode schedule %s: %w", s.Name, err)
	}
	catchUp := s.CatchUp == nil || *s.CatchUp
	s.Project = slipway.ProjectForCreate(ctx)
	_, err = db.w.ExecContext(ctx, `INSERT INTO schedules (`+scheduleColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.Name, s.Cron, s.Timezone, s.Target.Kind, s.Target.Name, string(input), s.ConcurrencyPolicy, catchUp,
		formatTime(s.CreatedAt), s.CreatedBy, nullTime(s.LastTickAt), s.LastRunID, s.Project)
	return mapErr(err, fmt.Sprintf("schedule %q", s.Name))
}

// scheduleTable reads and deletes schedules by name.
var scheduleTable = byName[slipway.Schedule]{table: "schedules", columns: scheduleColumns, kind: "schedule", scan: scanSchedule}

func scanSchedule(row interface{ Scan(...any) error }) (*slipway.Schedule, error) {
	var s slipway.Schedule
	var input, created string
	var catchUp bool
	var last sql.NullString
	if err := row.Scan(&s.Name, &s.Cron, &s.Timezone, &s.Target.Kind, &s.Target.Name, &input, &s.ConcurrencyPolicy, &catchUp,
		&created, &s.CreatedBy, &last, &s.LastRunID, &s.Project); err != nil {
		return nil, err
	}
	var in scheduleInput
	if err := json.Unmarshal([]byte(input), &in); err != nil {
		return nil, fmt.Errorf("decode input of schedule %s: %w", s.Name, err)
	}
	s.Args, s.Env, s.Params, s.Batch = in.Args, in.Env, in.Params, in.Batch
	s.CatchUp = &catchUp
	s.CreatedAt, s.LastTickAt = parseTime(created), parseNullTime(last)
	return &s, nil
}

// FindSchedule returns one schedule.
func (db *DB) FindSchedule(ctx context.Context, name string) (*slipway.Schedule, error) {
	return scheduleTable.find(ctx, db, name)
}

// FindSchedules lists schedules by name.
func (db *DB) FindSchedules(ctx context.Context) ([]*slipway.Schedule, error) {
	return scheduleTable.all(ctx, db)
}

// DeleteSchedule removes a schedule and its ticks.
func (db *DB) DeleteSchedule(ctx context.Context, name string) error {
	return scheduleTable.delete(ctx, db, name)
}

// RecordTick stores t and advances the schedule's last tick, only when t is later than the last tick.
func (db *DB) RecordTick(ctx context.Context, t *slipway.Tick) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		at := formatTime(t.At)
		res, err := tx.ExecContext(ctx, `UPDATE schedules SET last_tick_at = ? WHERE name = ? AND (last_tick_at IS NULL OR last_tick_at < ?)`,
			at, t.Schedule, at)
		if err != nil {
			return mapErr(err, "schedule "+t.Schedule)
		}
		if n, err := res.RowsAffected(); err != nil {
			return mapErr(err, "schedule "+t.Schedule)
		} else if n == 0 {
			return slipway.Errorf(slipway.ECONFLICT, "tick %s of schedule %s was already decided (or the schedule is gone)", at, t.Schedule)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO schedule_ticks (schedule, at, recorded_at, action, run_id, reason) VALUES (?, ?, ?, ?, ?, ?)`,
			t.Schedule, at, formatTime(t.RecordedAt), t.Action, t.RunID, t.Reason)
		return mapErr(err, fmt.Sprintf("tick %s of schedule %s", at, t.Schedule))
	})
}

// UpdateTick stores the outcome of a tick and, when it started a run, the schedule's last run.
func (db *DB) UpdateTick(ctx context.Context, t *slipway.Tick) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE schedule_ticks SET action = ?, run_id = ?, reason = ? WHERE schedule = ? AND at = ?`,
			t.Action, t.RunID, t.Reason, t.Schedule, formatTime(t.At))
		if err := affectedOne(res, err, "tick of schedule "+t.Schedule); err != nil {
			return err
		}
		if t.RunID != "" {
			_, err := tx.ExecContext(ctx, `UPDATE schedules SET last_run_id = ? WHERE name = ?`, t.RunID, t.Schedule)
			return mapErr(err, "schedule "+t.Schedule)
		}
		return nil
	})
}

// FindTicks returns a schedule's most recent ticks, newest first.
func (db *DB) FindTicks(ctx context.Context, schedule string, limit int) ([]*slipway.Tick, error) {
	return queryAll(ctx, db.r, func(rs rowScanner) (*slipway.Tick, error) {
		var t slipway.Tick
		var at, recorded string
		if err := rs.Scan(&t.Schedule, &at, &recorded, &t.Action, &t.RunID, &t.Reason); err != nil {
			return nil, err
		}
		t.At, t.RecordedAt = parseTime(at), parseTime(recorded)
		return &t, nil
	}, "ticks", `SELECT schedule, at, recorded_at, action, run_id, reason FROM schedule_ticks
		WHERE schedule = ? ORDER BY at DESC LIMIT ?`, schedule, limit)
}

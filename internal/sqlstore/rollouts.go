package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/slipway-ml/slipway"
)

var _ slipway.RolloutStore = (*DB)(nil)

const rolloutColumns = `id, deployment, model, version, from_version, state, reason, steps, gates, step, step_phase,
	step_started_at, decisions, created_by, created_at, updated_at, ended_at`

// CreateRollout inserts r; ECONFLICT when its deployment already has a RUNNING rollout (the partial unique
// index), ENOTFOUND-like conflict when the deployment is gone.
func (db *DB) CreateRollout(ctx context.Context, r *slipway.Rollout) error {
	now := db.now().UTC()
	r.CreatedAt, r.UpdatedAt = now, now
	steps, gates, decisions, err := encodeRollout(r)
	if err != nil {
		return err
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO rollouts (`+rolloutColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Deployment, r.Model, r.Version, r.From, string(r.State), r.Reason, steps, gates, r.Step, r.StepPhase,
		nullTime(r.StepStartedAt), decisions, r.CreatedBy, formatTime(now), formatTime(now), nullTime(r.EndedAt))
	if err := mapErr(err, fmt.Sprintf("a running rollout of deployment %q", r.Deployment)); err != nil {
		if slipway.ErrorCode(err) == slipway.ECONFLICT {
			return slipway.Errorf(slipway.ECONFLICT, "deployment %s already has a RUNNING rollout: wait for it to end or cancel it", r.Deployment)
		}
		return err
	}
	return nil
}

func encodeRollout(r *slipway.Rollout) (steps, gates, decisions string, err error) {
	ds := r.Decisions
	if ds == nil {
		ds = []slipway.RolloutDecision{}
	}
	out := [3]string{}
	for i, v := range []any{r.Steps, r.Gates, ds} {
		b, err := json.Marshal(v)
		if err != nil {
			return "", "", "", fmt.Errorf("sqlstore: encode rollout %s: %w", r.ID, err)
		}
		out[i] = string(b)
	}
	return out[0], out[1], out[2], nil
}

func scanRollout(row rowScanner) (*slipway.Rollout, error) {
	var r slipway.Rollout
	var steps, gates, decisions, created, updated string
	var started, ended sql.NullString
	if err := row.Scan(&r.ID, &r.Deployment, &r.Model, &r.Version, &r.From, &r.State, &r.Reason, &steps, &gates, &r.Step,
		&r.StepPhase, &started, &decisions, &r.CreatedBy, &created, &updated, &ended); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name, src string
		dst       any
	}{{"steps", steps, &r.Steps}, {"gates", gates, &r.Gates}, {"decisions", decisions, &r.Decisions}} {
		if err := json.Unmarshal([]byte(c.src), c.dst); err != nil {
			return nil, fmt.Errorf("decode %s of rollout %s: %w", c.name, r.ID, err)
		}
	}
	r.StepStartedAt, r.EndedAt = parseNullTime(started), parseNullTime(ended)
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	return &r, nil
}

// FindRollout returns one rollout of a deployment.
func (db *DB) FindRollout(ctx context.Context, deployment, id string) (*slipway.Rollout, error) {
	r, err := scanRollout(db.r.QueryRowContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE deployment = ? AND id = ?`, deployment, id))
	return r, mapErr(err, fmt.Sprintf("rollout %q of deployment %q", id, deployment))
}

// FindRollouts lists a deployment's rollouts, newest first.
func (db *DB) FindRollouts(ctx context.Context, deployment string, limit int) ([]*slipway.Rollout, error) {
	return queryAll(ctx, db.r, scanRollout, "rollouts", `SELECT `+rolloutColumns+` FROM rollouts WHERE deployment = ?
		ORDER BY created_at DESC, id DESC LIMIT ?`, deployment, limit)
}

// FindRunningRollouts lists every RUNNING rollout, oldest first.
func (db *DB) FindRunningRollouts(ctx context.Context) ([]*slipway.Rollout, error) {
	return queryAll(ctx, db.r, scanRollout, "rollouts", `SELECT `+rolloutColumns+` FROM rollouts WHERE state = ?
		ORDER BY created_at, id`, string(slipway.RolloutRunning))
}

// UpdateRollout stores r's progress when its stored state is still from.
func (db *DB) UpdateRollout(ctx context.Context, r *slipway.Rollout, from slipway.RolloutState) error {
	r.UpdatedAt = db.now().UTC()
	_, _, decisions, err := encodeRollout(r)
	if err != nil {
		return err
	}
	res, err := db.w.ExecContext(ctx, `UPDATE rollouts SET state = ?, reason = ?, step = ?, step_phase = ?, step_started_at = ?,
		decisions = ?, updated_at = ?, ended_at = ? WHERE id = ? AND state = ?`,
		string(r.State), r.Reason, r.Step, r.StepPhase, nullTime(r.StepStartedAt), decisions, formatTime(r.UpdatedAt),
		nullTime(r.EndedAt), r.ID, string(from))
	what := fmt.Sprintf("rollout %q", r.ID)
	if err := affectedOne(res, err, what); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		return err
	}
	cur, err := db.FindRollout(ctx, r.Deployment, r.ID)
	if err != nil {
		return err
	}
	return slipway.Errorf(slipway.ECONFLICT, "rollout %s is %s, no longer %s", r.ID, cur.State, from)
}

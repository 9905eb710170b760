package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/slipway-ml/slipway"
)

var _ slipway.ReplayStore = (*DB)(nil)

const replayColumns = `id, deployment, model, spec, state, reason, sent, total, attempt, report, owner, created_by,
	created_at, updated_at, ended_at`

// CreateReplay inserts r.
func (db *DB) CreateReplay(ctx context.Context, r *slipway.Replay) error {
	now := db.now().UTC()
	r.CreatedAt, r.UpdatedAt = now, now
	spec, report, err := encodeReplay(r)
	if err != nil {
		return err
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO replays (`+replayColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Deployment, r.Model, spec, string(r.State), r.Reason, r.Sent, r.Total, r.Attempt, report, r.Owner,
		r.CreatedBy, formatTime(now), formatTime(now), nullTime(r.EndedAt))
	return mapErr(err, fmt.Sprintf("replay of deployment %q", r.Deployment))
}

func encodeReplay(r *slipway.Replay) (spec, report string, err error) {
	s, err := json.Marshal(r.Spec)
	if err != nil {
		return "", "", fmt.Errorf("sqlstore: encode replay %s: %w", r.ID, err)
	}
	rep, err := json.Marshal(r.Report)
	if err != nil {
		return "", "", fmt.Errorf("sqlstore: encode replay %s: %w", r.ID, err)
	}
	return string(s), string(rep), nil
}

func scanReplay(row rowScanner) (*slipway.Replay, error) {
	var r slipway.Replay
	var spec, report, created, updated string
	var ended sql.NullString
	if err := row.Scan(&r.ID, &r.Deployment, &r.Model, &spec, &r.State, &r.Reason, &r.Sent, &r.Total, &r.Attempt,
		&report, &r.Owner, &r.CreatedBy, &created, &updated, &ended); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return nil, fmt.Errorf("decode the spec of replay %s: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(report), &r.Report); err != nil {
		return nil, fmt.Errorf("decode the report of replay %s: %w", r.ID, err)
	}
	r.EndedAt = parseNullTime(ended)
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	return &r, nil
}

// FindReplay returns one replay of a deployment.
func (db *DB) FindReplay(ctx context.Context, deployment, id string) (*slipway.Replay, error) {
	r, err := scanReplay(db.r.QueryRowContext(ctx, `SELECT `+replayColumns+` FROM replays WHERE deployment = ? AND id = ?`, deployment, id))
	return r, mapErr(err, fmt.Sprintf("replay %q of deployment %q", id, deployment))
}

// FindReplays lists a deployment's replays, newest first.
func (db *DB) FindReplays(ctx context.Context, deployment string, limit int) ([]*slipway.Replay, error) {
	return queryAll(ctx, db.r, scanReplay, "replays", `SELECT `+replayColumns+` FROM replays WHERE deployment = ?
		ORDER BY created_at DESC, id DESC LIMIT ?`, deployment, limit)
}

// FindRunningReplays lists every RUNNING replay, oldest first.
func (db *DB) FindRunningReplays(ctx context.Context) ([]*slipway.Replay, error) {
	return queryAll(ctx, db.r, scanReplay, "replays", `SELECT `+replayColumns+` FROM replays WHERE state = ?
		ORDER BY created_at, id`, string(slipway.ReplayRunning))
}

// UpdateReplay stores r when the stored replay is still RUNNING under attempt.
func (db *DB) UpdateReplay(ctx context.Context, r *slipway.Replay, attempt int) error {
	r.UpdatedAt = db.now().UTC()
	_, report, err := encodeReplay(r)
	if err != nil {
		return err
	}
	res, err := db.w.ExecContext(ctx, `UPDATE replays SET state = ?, reason = ?, sent = ?, total = ?, attempt = ?, report = ?,
		owner = ?, updated_at = ?, ended_at = ? WHERE id = ? AND state = ? AND attempt = ?`,
		string(r.State), r.Reason, r.Sent, r.Total, r.Attempt, report, r.Owner, formatTime(r.UpdatedAt), nullTime(r.EndedAt),
		r.ID, string(slipway.ReplayRunning), attempt)
	what := fmt.Sprintf("replay %q", r.ID)
	if err := affectedOne(res, err, what); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		return err
	}
	cur, err := db.FindReplay(ctx, r.Deployment, r.ID)
	if err != nil {
		return err
	}
	if cur.State.Ended() {
		return slipway.Errorf(slipway.ECONFLICT, "replay %s is already %s", r.ID, cur.State)
	}
	return slipway.Errorf(slipway.ECONFLICT, "replay %s was taken over (attempt %d, not %d)", r.ID, cur.Attempt, attempt)
}

package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/slipway-ml/slipway"
)

var _ slipway.RunOwnerStore = (*DB)(nil)

// FenceRuns makes this process the run owner server: from now on, the statements that claim a run (a job run
// started, a pipeline run created or resumed, a batch run started) record server as its owner, and the writes
// of a run's progress apply only while server still owns it. Call it once, before the services start. Without
// it (one server) nothing is fenced.
func (db *DB) FenceRuns(server string) { db.runOwner = server }

// ownerFence is the condition that limits a write to the runs this server owns (nothing on one server), with
// its argument; column is the owner column as the statement names it.
func (db *DB) ownerFence(column string) (string, []any) {
	if db.runOwner == "" {
		return "", nil
	}
	return " AND " + column + " = ?", []any{db.runOwner}
}

// runTables: each kind's table and its states that are not over.
var runTables = map[slipway.RunKind]struct {
	table  string
	active []string
}{
	slipway.RunKindJob:      {"job_runs", []string{string(slipway.RunInProgress)}},
	slipway.RunKindPipeline: {"pipeline_runs", []string{string(slipway.RunAccepted), string(slipway.RunInProgress)}},
	slipway.RunKindBatch:    {"batch_runs", []string{string(slipway.BatchAccepted), string(slipway.BatchInProgress)}},
}

func runTable(kind slipway.RunKind) (table, states string, args []any, err error) {
	t, ok := runTables[kind]
	if !ok {
		return "", "", nil, fmt.Errorf("sqlstore: unknown run kind %q", kind)
	}
	for _, s := range t.active {
		args = append(args, s)
	}
	return t.table, "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.active)), ", ") + ")", args, nil
}

// ActiveRuns lists the runs of kind not yet over, oldest first, with their owners.
func (db *DB) ActiveRuns(ctx context.Context, kind slipway.RunKind) ([]slipway.OwnedRun, error) {
	table, states, args, err := runTable(kind)
	if err != nil {
		return nil, err
	}
	scan := func(row rowScanner) (*slipway.OwnedRun, error) {
		var r slipway.OwnedRun
		return &r, row.Scan(&r.ID, &r.State, &r.Owner)
	}
	runs, err := queryAll(ctx, db.r, scan, string(kind)+" runs", `SELECT id, state, owner FROM `+table+
		` WHERE state IN `+states+` ORDER BY created_at, id`, args...)
	out := make([]slipway.OwnedRun, len(runs))
	for i, r := range runs {
		out[i] = *r
	}
	return out, err
}

// ClaimRun moves a run not yet over from owner from to owner to, in one compare-and-set statement.
func (db *DB) ClaimRun(ctx context.Context, kind slipway.RunKind, id, from, to string) error {
	table, states, args, err := runTable(kind)
	if err != nil {
		return err
	}
	res, err := db.w.ExecContext(ctx, `UPDATE `+table+` SET owner = ? WHERE id = ? AND owner = ? AND state IN `+states,
		append([]any{to, id, from}, args...)...)
	if err := affectedOne(res, err, fmt.Sprintf("%s run %s", kind, id)); slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return db.runConflict(ctx, kind, id)
	} else if err != nil {
		return err
	}
	return nil
}

// runConflict explains why a fenced write or a claim changed nothing: the run is over, or another server owns
// it now.
func (db *DB) runConflict(ctx context.Context, kind slipway.RunKind, id string) error {
	table, _, _, err := runTable(kind)
	if err != nil {
		return err
	}
	var state, owner string
	err = db.r.QueryRowContext(ctx, `SELECT state, owner FROM `+table+` WHERE id = ?`, id).Scan(&state, &owner)
	if err != nil {
		return mapErr(err, fmt.Sprintf("%s run %s", kind, id))
	}
	if owner != "" && owner != db.runOwner {
		return slipway.Errorf(slipway.ECONFLICT, "%s run %s is %s and owned by server %s now, not by this server (%s)", kind, id, state, owner, db.runOwner)
	}
	return slipway.Errorf(slipway.ECONFLICT, "%s run %s is %s", kind, id, state)
}

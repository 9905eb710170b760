package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"

	"github.com/slipway-ml/slipway"
)

var _ slipway.BatchStore = (*DB)(nil)

const batchColumns = `id, state, reason, model, version, spec, rows_total, rows_done, rows_skipped, rows_per_second,
	errors, output, created_by, created_at, started_at, finished_at, updated_at, project`

// CreateBatchRun inserts r (its ID is set by the caller).
func (db *DB) CreateBatchRun(ctx context.Context, r *slipway.BatchRun) error {
	now := db.now().UTC()
	r.CreatedAt, r.UpdatedAt = now, now
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return fmt.Errorf("sqlstore: encode batch spec: %w", err)
	}
	errs, _ := json.Marshal(nonNilErrors(r.Errors))
	out, _ := json.Marshal(r.Output)
	r.Project = slipway.ProjectForCreate(ctx)
	_, err = db.w.ExecContext(ctx, `INSERT INTO batch_runs (`+batchColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)`,
		r.ID, string(r.State), r.Reason, r.Model, r.Version, string(spec), r.RowsTotal, r.RowsDone, r.RowsSkipped,
		r.RowsPerSecond, string(errs), string(out), r.CreatedBy, formatTime(now), formatTime(now), r.Project)
	return mapErr(err, fmt.Sprintf("batch prediction %q", r.ID))
}

func nonNilErrors(e []slipway.BatchError) []slipway.BatchError {
	if e == nil {
		return []slipway.BatchError{}
	}
	return e
}

func scanBatchRun(row interface{ Scan(...any) error }) (*slipway.BatchRun, error) {
	var r slipway.BatchRun
	var spec, errs, out, created, updated string
	var started, finished sql.NullString
	if err := row.Scan(&r.ID, &r.State, &r.Reason, &r.Model, &r.Version, &spec, &r.RowsTotal, &r.RowsDone, &r.RowsSkipped,
		&r.RowsPerSecond, &errs, &out, &r.CreatedBy, &created, &started, &finished, &updated, &r.Project); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return nil, fmt.Errorf("decode spec of batch %s: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(errs), &r.Errors); err != nil {
		return nil, fmt.Errorf("decode errors of batch %s: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(out), &r.Output); err != nil {
		return nil, fmt.Errorf("decode output of batch %s: %w", r.ID, err)
	}
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	r.StartedAt, r.FinishedAt = parseNullTime(started), parseNullTime(finished)
	return &r, nil
}

// FindBatchRun returns one run.
func (db *DB) FindBatchRun(ctx context.Context, id string) (*slipway.BatchRun, error) {
	cond, args := inProject(ctx, "project")
	r, err := scanBatchRun(db.r.QueryRowContext(ctx, `SELECT `+batchColumns+` FROM batch_runs WHERE id = ? AND `+cond, append([]any{id}, args...)...))
	return r, mapErr(err, fmt.Sprintf("batch prediction %q", id))
}

// FindBatchRuns lists runs, newest first, with the total matching the filter.
func (db *DB) FindBatchRuns(ctx context.Context, f slipway.BatchFilter) ([]*slipway.BatchRun, int, error) {
	scope, args := inProject(ctx, "project")
	where := " WHERE " + scope
	if f.State != nil {
		where, args = where+` AND state = ?`, append(args, string(*f.State))
	}
	var total int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM batch_runs`+where, args...).Scan(&total); err != nil {
		return nil, 0, mapErr(err, "batch predictions")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = math.MaxInt64 // no limit: SQLite reads LIMIT -1 so, PostgreSQL refuses it
	}
	out, err := queryAll(ctx, db.r, scanBatchRun, "batch predictions", `SELECT `+batchColumns+` FROM batch_runs`+where+
		` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, append(args, limit, f.Offset)...)
	return out, total, err
}

// SetBatchState moves a run from → to (ECONFLICT when it is no longer in from), stamping started_at on the
// first move to IN_PROGRESS and finished_at on a terminal state.
func (db *DB) SetBatchState(ctx context.Context, id string, from, to slipway.BatchState, reason string) error {
	now := formatTime(db.now())
	var started, finished any
	if to == slipway.BatchInProgress {
		started = now
	}
	if to.Terminal() {
		finished = now
	}
	// Starting a run claims it for this server; only its owner ends a run in progress (anybody cancels it).
	owner := "owner"
	if to == slipway.BatchInProgress {
		owner = "?"
	}
	fence, fenceArgs := "", []any(nil)
	if from == slipway.BatchInProgress && to != slipway.BatchCanceled {
		fence, fenceArgs = db.ownerFence("owner")
	}
	args := []any{string(to), reason, now, started, finished}
	if to == slipway.BatchInProgress {
		args = append(args, db.runOwner)
	}
	res, err := db.w.ExecContext(ctx, `UPDATE batch_runs SET state = ?, reason = ?, updated_at = ?,
		started_at = COALESCE(started_at, ?), finished_at = COALESCE(?, finished_at), owner = `+owner+`
		WHERE id = ? AND state = ?`+fence, append(append(args, id, string(from)), fenceArgs...)...)
	if err != nil {
		return mapErr(err, fmt.Sprintf("batch prediction %q", id))
	}
	if n, err := res.RowsAffected(); err != nil {
		return mapErr(err, fmt.Sprintf("batch prediction %q", id))
	} else if n == 0 {
		if _, err := db.FindBatchRun(ctx, id); err != nil {
			return err
		}
		if fence != "" {
			return db.runConflict(ctx, slipway.RunKindBatch, id)
		}
		return slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is no longer %s", id, from)
	}
	return nil
}

// UpdateBatchProgress records rows done/total, the rate and the errors of a run.
func (db *DB) UpdateBatchProgress(ctx context.Context, id string, p slipway.BatchProgress) error {
	errs, _ := json.Marshal(nonNilErrors(p.Errors))
	fence, fenceArgs := db.ownerFence("owner")
	res, err := db.w.ExecContext(ctx, `UPDATE batch_runs SET rows_total = ?, rows_done = ?, rows_skipped = ?,
		rows_per_second = ?, errors = ?, updated_at = ? WHERE id = ?`+fence,
		append([]any{p.RowsTotal, p.RowsDone, p.RowsSkipped, p.RowsPerSecond, string(errs), formatTime(db.now()), id}, fenceArgs...)...)
	return db.fencedBatchWrite(ctx, res, err, id, fence, fmt.Sprintf("batch prediction %q", id))
}

// SetBatchOutput records where a run's output is.
func (db *DB) SetBatchOutput(ctx context.Context, id string, out slipway.BatchOutput) error {
	b, _ := json.Marshal(out)
	fence, fenceArgs := db.ownerFence("owner")
	res, err := db.w.ExecContext(ctx, `UPDATE batch_runs SET output = ?, output_digest = ?, updated_at = ? WHERE id = ?`+fence,
		append([]any{string(b), out.SHA256, formatTime(db.now()), id}, fenceArgs...)...)
	return db.fencedBatchWrite(ctx, res, err, id, fence, fmt.Sprintf("batch prediction %q", id))
}

// fencedBatchWrite is the outcome of a write to a run that its owner only may make.
func (db *DB) fencedBatchWrite(ctx context.Context, res sql.Result, err error, id, fence, what string) error {
	if err := affectedOne(res, err, what); slipway.ErrorCode(err) == slipway.ENOTFOUND && fence != "" {
		return db.runConflict(ctx, slipway.RunKindBatch, id)
	} else if err != nil {
		return err
	}
	return nil
}

// DeleteBatchRun removes a finished run's record. The state condition is in the statement, so that a run
// cannot be resumed or moved while it is being deleted.
func (db *DB) DeleteBatchRun(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM batch_runs WHERE id = ? AND state IN (?, ?, ?)`, id,
		string(slipway.BatchSucceeded), string(slipway.BatchFailed), string(slipway.BatchCanceled))
	if err != nil {
		return mapErr(err, fmt.Sprintf("batch prediction %q", id))
	}
	if n, err := res.RowsAffected(); err != nil {
		return mapErr(err, fmt.Sprintf("batch prediction %q", id))
	} else if n == 0 {
		r, err := db.FindBatchRun(ctx, id)
		if err != nil {
			return err
		}
		return slipway.Errorf(slipway.ECONFLICT, "batch prediction %s is %s: cancel it first, only finished runs can be deleted", id, r.State)
	}
	return nil
}

// CreateUploadedFile records an uploaded input file.
func (db *DB) CreateUploadedFile(ctx context.Context, f *slipway.UploadedFile) error {
	f.CreatedAt = db.now().UTC()
	f.Project = slipway.ProjectForCreate(ctx)
	_, err := db.w.ExecContext(ctx, `INSERT INTO batch_files (id, name, size, sha256, created_by, created_at, project)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, f.ID, f.Name, f.Size, f.SHA256, f.CreatedBy, formatTime(f.CreatedAt), f.Project)
	return mapErr(err, fmt.Sprintf("file %q", f.ID))
}

const fileColumns = `id, name, size, sha256, created_by, created_at, project`

func scanUploadedFile(row interface{ Scan(...any) error }) (*slipway.UploadedFile, error) {
	var f slipway.UploadedFile
	var created string
	if err := row.Scan(&f.ID, &f.Name, &f.Size, &f.SHA256, &f.CreatedBy, &created, &f.Project); err != nil {
		return nil, err
	}
	f.CreatedAt = parseTime(created)
	return &f, nil
}

// FindUploadedFile returns one uploaded file's record.
func (db *DB) FindUploadedFile(ctx context.Context, id string) (*slipway.UploadedFile, error) {
	cond, args := inProject(ctx, "project")
	f, err := scanUploadedFile(db.r.QueryRowContext(ctx, `SELECT `+fileColumns+` FROM batch_files WHERE id = ? AND `+cond, append([]any{id}, args...)...))
	return f, mapErr(err, fmt.Sprintf("file %q", id))
}

// FindUploadedFiles lists uploaded files, newest first.
func (db *DB) FindUploadedFiles(ctx context.Context) ([]*slipway.UploadedFile, error) {
	cond, args := inProject(ctx, "project")
	return queryAll(ctx, db.r, scanUploadedFile, "files", `SELECT `+fileColumns+` FROM batch_files WHERE `+cond+` ORDER BY created_at DESC, id`, args...)
}

// DeleteUploadedFile removes a file's record.
func (db *DB) DeleteUploadedFile(ctx context.Context, id string) error {
	cond, args := inProject(ctx, "project")
	res, err := db.w.ExecContext(ctx, `DELETE FROM batch_files WHERE id = ? AND `+cond, append([]any{id}, args...)...)
	return affectedOne(res, err, fmt.Sprintf("file %q", id))
}

// CommitBatchPart records a chunk of a run's file output, once (the primary key), and only while this server
// owns the run (its owner fence): a server that lost the run never adds a part behind the new owner's back.
func (db *DB) CommitBatchPart(ctx context.Context, runID string, p slipway.BatchPart) error {
	errs, _ := json.Marshal(nonNilErrors(p.Errors))
	fence, fenceArgs := db.ownerFence("owner")
	what := fmt.Sprintf("chunk %d of batch prediction %q", p.Chunk, runID)
	res, err := db.w.ExecContext(ctx, `INSERT INTO batch_parts (run_id, chunk, digest, row_count, skipped_rows, errors)
		SELECT ?, ?, ?, ?, ?, ? FROM batch_runs WHERE id = ?`+fence,
		append([]any{runID, p.Chunk, p.Digest, p.Rows, p.Skipped, string(errs), runID}, fenceArgs...)...)
	return db.fencedBatchWrite(ctx, res, err, runID, fence, what)
}

// FindBatchParts lists a run's committed parts in chunk order.
func (db *DB) FindBatchParts(ctx context.Context, runID string) ([]slipway.BatchPart, error) {
	return queryAll(ctx, db.r, func(row rowScanner) (slipway.BatchPart, error) {
		var p slipway.BatchPart
		var errs string
		if err := row.Scan(&p.Chunk, &p.Digest, &p.Rows, &p.Skipped, &errs); err != nil {
			return p, err
		}
		if err := json.Unmarshal([]byte(errs), &p.Errors); err != nil {
			return p, fmt.Errorf("decode errors of chunk %d of batch %s: %w", p.Chunk, runID, err)
		}
		return p, nil
	}, "batch parts", `SELECT chunk, digest, row_count, skipped_rows, errors FROM batch_parts WHERE run_id = ? ORDER BY chunk`, runID)
}

// DeleteBatchParts forgets a run's parts.
func (db *DB) DeleteBatchParts(ctx context.Context, runID string) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM batch_parts WHERE run_id = ?`, runID)
	return mapErr(err, fmt.Sprintf("parts of batch prediction %q", runID))
}

// BlobReferenced reports whether a record still refers to digest: a model version (its manifest or one of its
// files), an uploaded file, a batch part or a batch output.
func (db *DB) BlobReferenced(ctx context.Context, digest string) (bool, error) {
	if !validDigest(digest) { // it goes into a LIKE pattern below: only hex may
		return false, fmt.Errorf("sqlstore: %q is not a blob digest", digest)
	}
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM batch_files WHERE sha256 = ?) +
		(SELECT COUNT(*) FROM batch_parts WHERE digest = ?) +
		(SELECT COUNT(*) FROM batch_runs WHERE output_digest = ?) +
		(SELECT COUNT(*) FROM model_versions WHERE digest = ? OR files LIKE ?)`,
		digest, digest, digest, digest, "%"+digest+"%").Scan(&n)
	if err != nil {
		return false, mapErr(err, "blob references")
	}
	return n > 0, nil
}

func validDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for _, c := range d {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

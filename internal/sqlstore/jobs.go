package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

var _ slipway.JobStore = (*DB)(nil)

// CreateJob inserts j; ECONFLICT when the name is taken.
func (db *DB) CreateJob(ctx context.Context, j *slipway.Job) error {
	j.CreatedAt = db.now().UTC()
	spec, err := json.Marshal(j.JobSpec)
	if err != nil {
		return fmt.Errorf("sqlstore: encode job %s: %w", j.Name, err)
	}
	files, _ := json.Marshal(nonNilStrings(j.Files))
	j.Project = slipway.ProjectForCreate(ctx)
	_, err = db.w.ExecContext(ctx, `INSERT INTO jobs (name, spec, kind, digest, files, created_at, created_by, project) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		j.Name, string(spec), j.Kind, j.Digest, string(files), formatTime(j.CreatedAt), j.CreatedBy, j.Project)
	return mapErr(err, fmt.Sprintf("job %q", j.Name))
}

const jobColumns = `name, spec, kind, digest, files, created_at, created_by, project`

// jobTable reads and deletes jobs by name.
var jobTable = byName[slipway.Job]{table: "jobs", columns: jobColumns, kind: "job", scan: scanJob}

func scanJob(row interface{ Scan(...any) error }) (*slipway.Job, error) {
	var j slipway.Job
	var name, spec, files, created string
	if err := row.Scan(&name, &spec, &j.Kind, &j.Digest, &files, &created, &j.CreatedBy, &j.Project); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &j.JobSpec); err != nil {
		return nil, fmt.Errorf("decode spec of job %s: %w", name, err)
	}
	if err := json.Unmarshal([]byte(files), &j.Files); err != nil {
		return nil, fmt.Errorf("decode files of job %s: %w", name, err)
	}
	j.Name, j.CreatedAt = name, parseTime(created)
	return &j, nil
}

// FindJob returns one job.
func (db *DB) FindJob(ctx context.Context, name string) (*slipway.Job, error) {
	return jobTable.find(ctx, db, name)
}

// FindJobs lists every job by name.
func (db *DB) FindJobs(ctx context.Context) ([]*slipway.Job, error) {
	return jobTable.all(ctx, db)
}

// DeleteJob removes a job; its runs stay.
func (db *DB) DeleteJob(ctx context.Context, name string) error {
	return jobTable.delete(ctx, db, name)
}

const jobRunColumns = `id, job, pipeline_run, step, attempt, state, exit_code, reason, args, env, spec, outputs, output_digest,
	pid, proc_start, token_id, created_at, started_at, finished_at, created_by, project`

// CreateJobRun inserts r (normally ACCEPTED).
func (db *DB) CreateJobRun(ctx context.Context, r *slipway.JobRun) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = db.now().UTC()
	}
	args, _ := json.Marshal(nonNilStrings(r.Args))
	env, _ := json.Marshal(nonNilTags(r.Env))
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return fmt.Errorf("sqlstore: encode run %s: %w", r.ID, err)
	}
	outputs, _ := json.Marshal(nonNilMap(r.Outputs))
	if r.Project, err = db.runProject(ctx, r); err != nil {
		return err
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO job_runs (`+jobRunColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Job, r.PipelineRun, r.Step, r.Attempt, string(r.State), r.ExitCode, r.Reason, string(args), string(env),
		string(spec), string(outputs), r.OutputDigest, r.PID, int64(r.ProcStart), r.TokenID, formatTime(r.CreatedAt),
		nullTime(r.StartedAt), nullTime(r.FinishedAt), r.CreatedBy, r.Project)
	return mapErr(err, fmt.Sprintf("job run %s", r.ID))
}

func scanJobRun(row interface{ Scan(...any) error }) (*slipway.JobRun, error) {
	var r slipway.JobRun
	var exit sql.NullInt64
	var args, env, spec, outputs, created string
	var started, finished sql.NullString
	var procStart int64
	if err := row.Scan(&r.ID, &r.Job, &r.PipelineRun, &r.Step, &r.Attempt, &r.State, &exit, &r.Reason, &args, &env,
		&spec, &outputs, &r.OutputDigest, &r.PID, &procStart, &r.TokenID, &created, &started, &finished, &r.CreatedBy, &r.Project); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		what string
		src  string
		dst  any
	}{{"args", args, &r.Args}, {"env", env, &r.Env}, {"spec", spec, &r.Spec}, {"outputs", outputs, &r.Outputs}} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return nil, fmt.Errorf("decode %s of run %s: %w", f.what, r.ID, err)
		}
	}
	if exit.Valid {
		c := int(exit.Int64)
		r.ExitCode = &c
	}
	if len(r.Outputs) == 0 {
		r.Outputs = nil
	}
	r.ProcStart = uint64(procStart)
	r.CreatedAt, r.StartedAt, r.FinishedAt = parseTime(created), parseNullTime(started), parseNullTime(finished)
	return &r, nil
}

// FindJobRun returns one run.
func (db *DB) FindJobRun(ctx context.Context, id string) (*slipway.JobRun, error) {
	cond, args := inProject(ctx, "project")
	r, err := scanJobRun(db.r.QueryRowContext(ctx, `SELECT `+jobRunColumns+` FROM job_runs WHERE id = ? AND `+cond, append([]any{id}, args...)...))
	return r, mapErr(err, fmt.Sprintf("job run %s", id))
}

// FindJobRuns lists runs, newest first.
func (db *DB) FindJobRuns(ctx context.Context, f slipway.JobRunFilter) ([]*slipway.JobRun, int, error) {
	scope, args := inProject(ctx, "project")
	where := []string{scope}
	for _, c := range []struct{ col, v string }{{"job", f.Job}, {"pipeline_run", f.PipelineRun}, {"state", string(f.State)}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	cond := " WHERE " + strings.Join(where, " AND ")
	var total int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM job_runs`+cond, args...).Scan(&total); err != nil {
		return nil, 0, mapErr(err, "job runs")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	out, err := queryAll(ctx, db.r, scanJobRun, "job runs", `SELECT `+jobRunColumns+` FROM job_runs`+cond+
		` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, append(args, limit, f.Offset)...)
	return out, total, err
}

// NextAcceptedJobRun returns the oldest queued run.
func (db *DB) NextAcceptedJobRun(ctx context.Context) (*slipway.JobRun, error) {
	r, err := scanJobRun(db.r.QueryRowContext(ctx, `SELECT `+jobRunColumns+` FROM job_runs WHERE state = ?
		ORDER BY created_at, id LIMIT 1`, string(slipway.RunAccepted)))
	return r, mapErr(err, "queued job run")
}

// StartJobRun moves an ACCEPTED run to IN_PROGRESS.
func (db *DB) StartJobRun(ctx context.Context, id string, at time.Time) error {
	res, err := db.w.ExecContext(ctx, `UPDATE job_runs SET state = ?, started_at = ?, owner = ? WHERE id = ? AND state = ?`,
		string(slipway.RunInProgress), formatTime(at), db.runOwner, id, string(slipway.RunAccepted))
	if err := affectedOne(res, err, "job run "+id); slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return slipway.Errorf(slipway.ECONFLICT, "job run %s is no longer ACCEPTED", id)
	} else if err != nil {
		return err
	}
	return nil
}

// SetJobRunProcess records the process and token of a run.
func (db *DB) SetJobRunProcess(ctx context.Context, id string, pid int, procStart uint64, tokenID string) error {
	fence, fenceArgs := db.ownerFence("owner")
	res, err := db.w.ExecContext(ctx, `UPDATE job_runs SET pid = ?, proc_start = ?, token_id = ? WHERE id = ?`+fence,
		append([]any{pid, int64(procStart), tokenID, id}, fenceArgs...)...)
	if err := affectedOne(res, err, "job run "+id); slipway.ErrorCode(err) == slipway.ENOTFOUND && fence != "" {
		return db.runConflict(ctx, slipway.RunKindJob, id)
	} else if err != nil {
		return err
	}
	return nil
}

// FinishJobRun moves a run that is not over to r.State.
func (db *DB) FinishJobRun(ctx context.Context, r *slipway.JobRun) error {
	outputs, _ := json.Marshal(nonNilMap(r.Outputs))
	// A queued run is anybody's to cancel; a run in progress is its owner's to finish.
	fence, fenceArgs := db.ownerFence("owner")
	res, err := db.w.ExecContext(ctx, `UPDATE job_runs SET state = ?, exit_code = ?, reason = ?, outputs = ?, output_digest = ?,
		started_at = COALESCE(started_at, ?), finished_at = ? WHERE id = ? AND (state = ? OR (state = ?`+fence+`))`,
		append([]any{string(r.State), r.ExitCode, r.Reason, string(outputs), r.OutputDigest, nullTime(r.StartedAt), nullTime(r.FinishedAt),
			r.ID, string(slipway.RunAccepted), string(slipway.RunInProgress)}, fenceArgs...)...)
	if err := affectedOne(res, err, "job run "+r.ID); slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return db.runConflict(ctx, slipway.RunKindJob, r.ID)
	} else if err != nil {
		return err
	}
	return nil
}

// RequestJobRunCancel flags an IN_PROGRESS run for cancellation by its owner, with the reason its end will
// carry (ECONFLICT when the run is no longer in progress).
func (db *DB) RequestJobRunCancel(ctx context.Context, id, reason string) error {
	scope, scopeArgs := inProject(ctx, "project")
	res, err := db.w.ExecContext(ctx, `UPDATE job_runs SET cancel_requested = 1, reason = ? WHERE id = ? AND state = ? AND `+scope,
		append([]any{reason, id, string(slipway.RunInProgress)}, scopeArgs...)...)
	if err := affectedOne(res, err, "job run "+id); slipway.ErrorCode(err) == slipway.ENOTFOUND {
		r, ferr := db.FindJobRun(ctx, id)
		if ferr != nil {
			return ferr
		}
		return slipway.Errorf(slipway.ECONFLICT, "job run %s is already %s", id, r.State)
	} else if err != nil {
		return err
	}
	return nil
}

// CancelRequestedJobRuns returns the IN_PROGRESS runs owned by this server (FenceRuns) that were flagged for
// cancellation, run id → the cancel's reason. One statement for all of them: the owner asks every second.
func (db *DB) CancelRequestedJobRuns(ctx context.Context) (map[string]string, error) {
	type flagged struct{ id, reason string }
	scan := func(row rowScanner) (flagged, error) {
		var f flagged
		return f, row.Scan(&f.id, &f.reason)
	}
	runs, err := queryAll(ctx, db.r, scan, "job runs to cancel",
		`SELECT id, reason FROM job_runs WHERE state = ? AND cancel_requested = 1 AND owner = ?`, string(slipway.RunInProgress), db.runOwner)
	out := make(map[string]string, len(runs))
	for _, f := range runs {
		out[f.id] = f.reason
	}
	return out, err
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// runProject is the project of a new job run: its pipeline run's, else its job's, else the project of ctx
// (runs of a job deleted meanwhile).
func (db *DB) runProject(ctx context.Context, r *slipway.JobRun) (string, error) {
	var p string
	var err error
	switch {
	case r.PipelineRun != "":
		p, err = parentProject(ctx, db.r, "pipeline_runs", r.PipelineRun)
	case r.Job != "":
		p, err = parentProject(ctx, db.r, "jobs", r.Job)
	}
	if p == "" && err == nil {
		p = slipway.ProjectForCreate(ctx)
	}
	return p, err
}

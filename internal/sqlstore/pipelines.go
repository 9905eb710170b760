package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/slipway-ml/slipway"
)

var _ slipway.PipelineStore = (*DB)(nil)

// CreatePipeline inserts p; ECONFLICT when the name is taken.
func (db *DB) CreatePipeline(ctx context.Context, p *slipway.Pipeline) error {
	p.CreatedAt = db.now().UTC()
	spec, err := json.Marshal(p.Spec)
	if err != nil {
		return fmt.Errorf("sqlstore: encode pipeline %s: %w", p.Name, err)
	}
	p.Project = slipway.ProjectForCreate(ctx)
	_, err = db.w.ExecContext(ctx, `INSERT INTO pipelines (name, spec, artifact_digest, created_at, created_by, project) VALUES (?, ?, ?, ?, ?, ?)`,
		p.Name, string(spec), p.ArtifactDigest, formatTime(p.CreatedAt), p.CreatedBy, p.Project)
	return mapErr(err, fmt.Sprintf("pipeline %q", p.Name))
}

// pipelineTable reads and deletes pipelines by name.
var pipelineTable = byName[slipway.Pipeline]{table: "pipelines", columns: `name, spec, artifact_digest, created_at, created_by, project`, kind: "pipeline", scan: scanPipeline}

func scanPipeline(row interface{ Scan(...any) error }) (*slipway.Pipeline, error) {
	var p slipway.Pipeline
	var spec, created string
	if err := row.Scan(&p.Name, &spec, &p.ArtifactDigest, &created, &p.CreatedBy, &p.Project); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &p.Spec); err != nil {
		return nil, fmt.Errorf("decode spec of pipeline %s: %w", p.Name, err)
	}
	p.CreatedAt = parseTime(created)
	return &p, nil
}

// FindPipeline returns one pipeline.
func (db *DB) FindPipeline(ctx context.Context, name string) (*slipway.Pipeline, error) {
	return pipelineTable.find(ctx, db, name)
}

// FindPipelines lists pipelines by name.
func (db *DB) FindPipelines(ctx context.Context) ([]*slipway.Pipeline, error) {
	return pipelineTable.all(ctx, db)
}

// DeletePipeline removes a pipeline; its runs stay.
func (db *DB) DeletePipeline(ctx context.Context, name string) error {
	return pipelineTable.delete(ctx, db, name)
}

const pipelineRunColumns = `id, pipeline, spec, artifact_digest, params, state, reason, trigger, retries, cancel_requested,
	created_at, started_at, finished_at, created_by, project`

// CreatePipelineRun inserts r and its steps in one transaction.
func (db *DB) CreatePipelineRun(ctx context.Context, r *slipway.PipelineRun) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = db.now().UTC()
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return fmt.Errorf("sqlstore: encode pipeline run %s: %w", r.ID, err)
	}
	params, err := json.Marshal(nonNilMap(r.Params))
	if err != nil {
		return fmt.Errorf("sqlstore: encode params of %s: %w", r.ID, err)
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		// The run is its pipeline's project's (a schedule starts it without one).
		p, err := parentProject(ctx, tx, "pipelines", r.Pipeline)
		if err != nil {
			return err
		}
		if r.Project = p; p == "" {
			r.Project = slipway.ProjectForCreate(ctx)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO pipeline_runs (`+pipelineRunColumns+`, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Pipeline, string(spec), r.ArtifactDigest, string(params), string(r.State), r.Reason, r.Trigger, r.Retries,
			r.CancelRequested, formatTime(r.CreatedAt), nullTime(r.StartedAt), nullTime(r.FinishedAt), r.CreatedBy, r.Project, db.runOwner)
		if err != nil {
			return mapErr(err, "pipeline run "+r.ID)
		}
		for _, s := range r.Steps {
			deps, _ := json.Marshal(nonNilStrings(s.DependsOn))
			_, err := tx.ExecContext(ctx, `INSERT INTO pipeline_steps (run_id, name, position, kind, depends_on, on_exit, state)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, r.ID, s.Name, s.Position, s.Kind, string(deps), s.OnExit, string(s.State))
			if err != nil {
				return mapErr(err, fmt.Sprintf("step %s of pipeline run %s", s.Name, r.ID))
			}
		}
		return nil
	})
}

func scanPipelineRun(row interface{ Scan(...any) error }) (*slipway.PipelineRun, error) {
	var r slipway.PipelineRun
	var spec, params, created string
	var started, finished sql.NullString
	if err := row.Scan(&r.ID, &r.Pipeline, &spec, &r.ArtifactDigest, &params, &r.State, &r.Reason, &r.Trigger, &r.Retries,
		&r.CancelRequested, &created, &started, &finished, &r.CreatedBy, &r.Project); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return nil, fmt.Errorf("decode spec of pipeline run %s: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(params), &r.Params); err != nil {
		return nil, fmt.Errorf("decode params of pipeline run %s: %w", r.ID, err)
	}
	r.CreatedAt, r.StartedAt, r.FinishedAt = parseTime(created), parseNullTime(started), parseNullTime(finished)
	return &r, nil
}

const stepColumns = `name, position, kind, depends_on, on_exit, state, reason, attempts, retry_base, job_run, cached, cache_key,
	outputs, output_dir, output_digest, history, started_at, finished_at, next_attempt_at`

func scanStep(row interface{ Scan(...any) error }) (*slipway.StepRun, error) {
	var s slipway.StepRun
	var deps, outputs, history string
	var started, finished, next sql.NullString
	if err := row.Scan(&s.Name, &s.Position, &s.Kind, &deps, &s.OnExit, &s.State, &s.Reason, &s.Attempts, &s.RetryBase,
		&s.JobRun, &s.Cached, &s.CacheKey, &outputs, &s.OutputDir, &s.OutputDigest, &history, &started, &finished, &next); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		src string
		dst any
	}{{deps, &s.DependsOn}, {outputs, &s.Outputs}, {history, &s.History}} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return nil, fmt.Errorf("decode step %s: %w", s.Name, err)
		}
	}
	if len(s.Outputs) == 0 {
		s.Outputs = nil
	}
	s.StartedAt, s.FinishedAt, s.NextAttemptAt = parseNullTime(started), parseNullTime(finished), parseNullTime(next)
	return &s, nil
}

func (db *DB) findSteps(ctx context.Context, runID string) ([]*slipway.StepRun, error) {
	return queryAll(ctx, db.r, scanStep, "steps of pipeline run "+runID,
		`SELECT `+stepColumns+` FROM pipeline_steps WHERE run_id = ? ORDER BY position`, runID)
}

// FindPipelineRun returns a run with its steps.
func (db *DB) FindPipelineRun(ctx context.Context, id string) (*slipway.PipelineRun, error) {
	cond, args := inProject(ctx, "project")
	r, err := scanPipelineRun(db.r.QueryRowContext(ctx, `SELECT `+pipelineRunColumns+` FROM pipeline_runs WHERE id = ? AND `+cond,
		append([]any{id}, args...)...))
	if err != nil {
		return nil, mapErr(err, "pipeline run "+id)
	}
	if r.Steps, err = db.findSteps(ctx, id); err != nil {
		return nil, err
	}
	return r, nil
}

func (db *DB) findPipelineRuns(ctx context.Context, query string, args ...any) ([]*slipway.PipelineRun, error) {
	out, err := queryAll(ctx, db.r, scanPipelineRun, "pipeline runs", query, args...)
	if err != nil {
		return nil, err
	}
	for _, r := range out { // after queryAll closed its rows: SQLite's read pool may hold one connection
		if r.Steps, err = db.findSteps(ctx, r.ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// FindPipelineRuns lists runs (of one pipeline when pipeline is not empty), newest first.
func (db *DB) FindPipelineRuns(ctx context.Context, pipeline string, offset, limit int) ([]*slipway.PipelineRun, int, error) {
	scope, args := inProject(ctx, "project")
	cond := " WHERE " + scope
	if pipeline != "" {
		cond, args = cond+" AND pipeline = ?", append(args, pipeline)
	}
	var total int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM pipeline_runs`+cond, args...).Scan(&total); err != nil {
		return nil, 0, mapErr(err, "pipeline runs")
	}
	if limit <= 0 {
		limit = 100
	}
	out, err := db.findPipelineRuns(ctx, `SELECT `+pipelineRunColumns+` FROM pipeline_runs`+cond+
		` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	return out, total, err
}

// FindActivePipelineRuns returns the runs a server start must resume.
func (db *DB) FindActivePipelineRuns(ctx context.Context) ([]*slipway.PipelineRun, error) {
	return db.findPipelineRuns(ctx, `SELECT `+pipelineRunColumns+` FROM pipeline_runs WHERE state IN (?, ?) ORDER BY created_at`,
		string(slipway.RunAccepted), string(slipway.RunInProgress))
}

// UpdatePipelineRun stores the run's state, reason and times. The cancel flag is left alone: a cancel request
// may arrive while the run's driver writes.
func (db *DB) UpdatePipelineRun(ctx context.Context, r *slipway.PipelineRun) error {
	fence, fenceArgs := db.ownerFence("owner")
	res, err := db.w.ExecContext(ctx, `UPDATE pipeline_runs SET state = ?, reason = ?, started_at = ?, finished_at = ? WHERE id = ?`+fence,
		append([]any{string(r.State), r.Reason, nullTime(r.StartedAt), nullTime(r.FinishedAt), r.ID}, fenceArgs...)...)
	if err := affectedOne(res, err, "pipeline run "+r.ID); slipway.ErrorCode(err) == slipway.ENOTFOUND && fence != "" {
		return db.runConflict(ctx, slipway.RunKindPipeline, r.ID)
	} else if err != nil {
		return err
	}
	return nil
}

// RequestPipelineRunCancel flags an IN_PROGRESS run for cancellation.
func (db *DB) RequestPipelineRunCancel(ctx context.Context, id, reason string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE pipeline_runs SET cancel_requested = 1, reason = ? WHERE id = ? AND state = ?`,
		reason, id, string(slipway.RunInProgress))
	if err := affectedOne(res, err, "pipeline run "+id); slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return slipway.Errorf(slipway.ECONFLICT, "pipeline run %s is not in progress", id)
	} else if err != nil {
		return err
	}
	return nil
}

// ResumePipelineRun moves a FAILED or CANCELED run back to IN_PROGRESS.
func (db *DB) ResumePipelineRun(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE pipeline_runs SET state = ?, reason = '', cancel_requested = 0, finished_at = NULL,
		retries = retries + 1, owner = ? WHERE id = ? AND state IN (?, ?)`, string(slipway.RunInProgress), db.runOwner, id, string(slipway.RunFailed), string(slipway.RunCanceled))
	if err := affectedOne(res, err, "pipeline run "+id); slipway.ErrorCode(err) == slipway.ENOTFOUND {
		return slipway.Errorf(slipway.ECONFLICT, "pipeline run %s is not FAILED or CANCELED", id)
	} else if err != nil {
		return err
	}
	return nil
}

// UpdateStepRun stores a step's mutable fields.
func (db *DB) UpdateStepRun(ctx context.Context, runID string, s *slipway.StepRun) error {
	outputs, err := json.Marshal(nonNilMap(s.Outputs))
	if err != nil {
		return fmt.Errorf("sqlstore: encode outputs of step %s: %w", s.Name, err)
	}
	history, _ := json.Marshal(s.History)
	if s.History == nil {
		history = []byte("[]")
	}
	// The steps are the driver's: only the server that owns the run writes them.
	fence, fenceArgs := db.ownerFence("(SELECT owner FROM pipeline_runs WHERE id = pipeline_steps.run_id)")
	res, err := db.w.ExecContext(ctx, `UPDATE pipeline_steps SET state = ?, reason = ?, attempts = ?, retry_base = ?, job_run = ?,
		cached = ?, cache_key = ?, outputs = ?, output_dir = ?, output_digest = ?, history = ?, started_at = ?, finished_at = ?,
		next_attempt_at = ? WHERE run_id = ? AND name = ?`+fence,
		append([]any{string(s.State), s.Reason, s.Attempts, s.RetryBase, s.JobRun, s.Cached, s.CacheKey, string(outputs), s.OutputDir,
			s.OutputDigest, string(history), nullTime(s.StartedAt), nullTime(s.FinishedAt), nullTime(s.NextAttemptAt), runID, s.Name}, fenceArgs...)...)
	if err := affectedOne(res, err, fmt.Sprintf("step %s of pipeline run %s", s.Name, runID)); slipway.ErrorCode(err) == slipway.ENOTFOUND && fence != "" {
		return db.runConflict(ctx, slipway.RunKindPipeline, runID)
	} else if err != nil {
		return err
	}
	return nil
}

// FindCachedStep returns the newest SUCCEEDED step of pipeline with the cache key.
func (db *DB) FindCachedStep(ctx context.Context, pipeline, key string) (*slipway.StepRun, error) {
	s, err := scanStep(db.r.QueryRowContext(ctx, `SELECT `+stepColumnsOf("s.")+` FROM pipeline_steps s
		JOIN pipeline_runs r ON r.id = s.run_id
		WHERE s.cache_key = ? AND s.state = ? AND r.pipeline = ? ORDER BY s.finished_at DESC LIMIT 1`,
		key, string(slipway.StepSucceeded), pipeline))
	return s, mapErr(err, "cached step")
}

func stepColumnsOf(prefix string) string {
	parts := strings.Split(stepColumns, ",")
	for i, c := range parts {
		parts[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

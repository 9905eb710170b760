package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// The `batch` step runs a batch prediction: its with is the body of POST /api/v1/batch-predictions. The step
// starts the run, records its id in the step's outputs (with the attempt that started it) as soon as it
// exists, follows its progress into the step's outputs and reason, and ends as the run ends. Cancelling the
// pipeline run or the step's timeout cancels the batch run; a server shutdown does not (batch runs resume
// with the server, and the resumed step re-attaches to the same run instead of starting a second one).

// batchTag is the created_by of the batch run an attempt starts: it names the pipeline run, the step and the
// attempt, so that a server that stopped between starting the batch run and recording its id still finds it.
func batchTag(runID, step string, attempt int) string {
	return fmt.Sprintf("pipeline:%s/%s#%d", runID, step, attempt)
}

// BatchSpecOf turns a batch step's resolved with into a batch prediction request. Numbers may come as
// strings (a substituted ${params.x}); with.version may be "@alias".
func BatchSpecOf(with map[string]any) (slipway.BatchSpec, error) {
	var spec slipway.BatchSpec
	w := maps.Clone(with)
	for k, v := range w {
		if v == nil {
			delete(w, k) // an unset param: as if not given
		}
	}
	if v, ok := w["version"].(string); ok {
		if alias, isAlias := strings.CutPrefix(strings.TrimSpace(v), "@"); isAlias {
			if _, both := w["alias"]; both {
				return spec, slipway.Errorf(slipway.EINVALID, "with.version %q and with.alias are both given: give one", v)
			}
			w["alias"] = alias
			delete(w, "version")
		}
	}
	for _, k := range []string{"version", "chunk_size", "parallelism", "chunk_timeout_ms"} {
		switch t := w[k].(type) {
		case string:
			n, err := strconv.Atoi(strings.TrimSpace(t))
			if err != nil {
				return spec, slipway.Errorf(slipway.EINVALID, "with.%s %q is not a whole number", k, t)
			}
			w[k] = n
		case float64:
			if t != math.Trunc(t) {
				return spec, slipway.Errorf(slipway.EINVALID, "with.%s %v is not a whole number", k, t)
			}
		}
	}
	delete(w, "source_fingerprint") // the server's own field, never the step's
	b, err := json.Marshal(w)
	if err != nil {
		return spec, slipway.Errorf(slipway.EINVALID, "with of the batch step: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return spec, slipway.Errorf(slipway.EINVALID, "with of the batch step is not a batch prediction request (the body of POST /api/v1/batch-predictions): %v", err)
	}
	return spec, nil
}

// batchOutputs are a batch step's outputs: the run's id, state, rows and where its predictions are.
func batchOutputs(b *slipway.BatchRun, attempt int) map[string]any {
	out := map[string]any{"batch_id": b.ID, "attempt": attempt, "state": string(b.State), "model": b.Model, "version": b.Version,
		"rows_done": b.RowsDone, "rows_total": b.RowsTotal, "rows_skipped": b.RowsSkipped}
	if b.Output.Table != "" {
		out["connection"], out["table"] = b.Output.Connection, b.Output.Table
	} else {
		out["format"] = b.Output.Format
		out["download"] = "/api/v1/batch-predictions/" + b.ID + "/output"
	}
	return out
}

// batchProgress is the step's reason while its batch run goes on.
func batchProgress(b *slipway.BatchRun) string {
	total := "?"
	if b.RowsTotal >= 0 {
		total = strconv.FormatInt(b.RowsTotal, 10)
	}
	msg := fmt.Sprintf("batch prediction %s %s: %d/%s rows", b.ID, b.State, b.RowsDone, total)
	if b.RowsSkipped > 0 {
		msg += fmt.Sprintf(" (%d skipped)", b.RowsSkipped)
	}
	return msg
}

// builtinBatch runs one attempt of a batch step: it starts a batch run (or, with attach, follows the run an
// earlier server started for this attempt) and waits until it ends.
func (s *Service) builtinBatch(ctx context.Context, run *slipway.PipelineRun, step string, attempt int, with map[string]any, attach string, bs *builtinState) (map[string]any, error) {
	if s.cfg.Batch == nil {
		return nil, slipway.Errorf(slipway.EUNAVAILABLE, "this server cannot run batch predictions from pipelines")
	}
	log := s.log.With("pipeline_run", run.ID, "step", step, "attempt", attempt)
	var b *slipway.BatchRun
	var err error
	if attach == "" {
		spec, err := BatchSpecOf(with)
		if err != nil {
			return nil, err
		}
		// Not canceled half-way: a run that exists must be known to the step, which cancels it below if need be.
		if b, err = s.cfg.Batch.Create(context.WithoutCancel(ctx), spec, batchTag(run.ID, step, attempt)); err != nil {
			if slipway.ErrorCode(err) == slipway.EINTERNAL {
				return nil, fmt.Errorf("start the batch prediction: %w", err)
			}
			return nil, slipway.Wrap(slipway.ErrorCode(err), err, "batch prediction refused: %s", slipway.ErrorMessage(err))
		}
		log.InfoContext(ctx, "pipeline step started a batch prediction", "batch_id", b.ID, "model", b.Model, "version", b.Version)
	} else if b, err = s.cfg.Batch.Get(ctx, attach); err != nil {
		return nil, fmt.Errorf("find batch prediction %s: %w", attach, err)
	}
	id := b.ID
	last := ""
	tick := time.NewTicker(s.cfg.BatchPoll)
	defer tick.Stop()
	for {
		if p := batchProgress(b); p != last {
			last = p
			s.report(bs, stepProgress{outputs: batchOutputs(b, attempt), reason: p})
		}
		if b.State.Terminal() {
			break
		}
		select {
		case <-ctx.Done():
			return batchOutputs(b, attempt), s.stopBatch(ctx, run, id, log)
		case <-tick.C:
		}
		cur, err := s.cfg.Batch.Get(ctx, id)
		switch {
		case err == nil:
			b = cur
		case slipway.ErrorCode(err) == slipway.ENOTFOUND:
			return nil, slipway.Errorf(slipway.ENOTFOUND, "batch prediction %s is gone", id)
		case ctx.Err() == nil:
			log.WarnContext(ctx, "pipeline step: read batch prediction progress", "batch_id", id, "error", err) // next tick
		}
	}
	out := batchOutputs(b, attempt)
	log.InfoContext(ctx, "pipeline step's batch prediction ended", "batch_id", id, "state", b.State, "rows_done", b.RowsDone, "reason", b.Reason)
	switch b.State {
	case slipway.BatchSucceeded:
		return out, nil
	case slipway.BatchCanceled:
		return out, errBatchCanceled{slipway.Errorf(slipway.EINVALID, "batch prediction %s was %s", id, reasonOr(b.Reason, "canceled"))}
	}
	return out, slipway.Errorf(slipway.EINVALID, "batch prediction %s %s: %s", id, b.State, reasonOr(b.Reason, "no reason given"))
}

func reasonOr(reason, def string) string {
	if reason == "" {
		return def
	}
	return reason
}

// errBatchCanceled is a batch run canceled by someone else than the step: the step ends CANCELED (no retry).
type errBatchCanceled struct{ err *slipway.Error }

func (e errBatchCanceled) Error() string { return e.err.Error() }
func (e errBatchCanceled) Unwrap() error { return e.err }

// stepCanceled marks errors that end a step CANCELED rather than FAILED.
func (e errBatchCanceled) stepCanceled() {}

// stopBatch handles the end of the step's context while its batch run goes on: a server shutdown leaves the
// run alone (it resumes with the server, and so does the step); a canceled pipeline run or a timeout cancels it.
func (s *Service) stopBatch(ctx context.Context, run *slipway.PipelineRun, id string, log *slog.Logger) error {
	if s.ctx.Err() != nil {
		return slipway.Errorf(slipway.EUNAVAILABLE, "server shut down; batch prediction %s resumes with the server", id)
	}
	why := "pipeline run " + run.ID + " was canceled"
	if ctx.Err() == context.DeadlineExceeded {
		why = "the pipeline step ran out of time"
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Batch.Cancel(cctx, id, why); err != nil && slipway.ErrorCode(err) != slipway.ECONFLICT {
		log.WarnContext(cctx, "pipeline step: cancel its batch prediction", "batch_id", id, "error", err)
		return fmt.Errorf("cancel batch prediction %s (%s): %w", id, why, err)
	}
	log.InfoContext(cctx, "pipeline step canceled its batch prediction", "batch_id", id, "why", why)
	return slipway.Errorf(slipway.EINVALID, "batch prediction %s canceled: %s", id, why)
}

// reattachBatch makes a batch step that a previous server left IN_PROGRESS follow its batch run again: the id
// recorded in its outputs for the current attempt or, when the server stopped before recording it, the run
// created for this attempt (its created_by names it). Without either, the attempt had not started a batch run:
// the driver fails it as interrupted and the step's retries apply.
func (s *Service) reattachBatch(ctx context.Context, run *slipway.PipelineRun, st *slipway.StepRun, spec *slipway.StepSpec) error {
	key := run.ID + "/" + st.Name
	s.mu.Lock()
	running := s.builtins[key] != nil
	s.mu.Unlock()
	if running || s.cfg.Batch == nil || spec == nil {
		return nil
	}
	var b *slipway.BatchRun
	if id, _ := st.Outputs["batch_id"].(string); id != "" && formatValue(st.Outputs["attempt"]) == strconv.Itoa(st.Attempts) {
		found, err := s.cfg.Batch.Get(ctx, id)
		if err != nil && slipway.ErrorCode(err) != slipway.ENOTFOUND {
			return fmt.Errorf("jobs: find batch prediction %s of step %s: %w", id, st.Name, err)
		}
		b = found
	} else {
		found, err := s.findTaggedBatch(ctx, batchTag(run.ID, st.Name, st.Attempts), st.StartedAt)
		if err != nil {
			return err
		}
		b = found
	}
	if b == nil {
		return nil
	}
	s.log.InfoContext(ctx, "pipeline step re-attached to its batch prediction", "pipeline_run", run.ID, "step", st.Name,
		"attempt", st.Attempts, "batch_id", b.ID, "state", b.State)
	step, attempt, id := st.Name, st.Attempts, b.ID
	s.goBuiltin(run.ID, step, b.CreatedAt, builtinTimeout(spec), func(ctx context.Context, bs *builtinState) (map[string]any, error) {
		return s.builtinBatch(inRunProject(ctx, run), run, step, attempt, nil, id, bs)
	})
	return nil
}

// findTaggedBatch looks for the batch run created with tag, among the runs created since the step started
// (newest first, so the search stops at the first older run).
func (s *Service) findTaggedBatch(ctx context.Context, tag string, since *time.Time) (*slipway.BatchRun, error) {
	const page = 100
	for off := 0; ; off += page {
		runs, _, err := s.cfg.Batch.List(ctx, slipway.BatchFilter{Offset: off, Limit: page})
		if err != nil {
			return nil, fmt.Errorf("jobs: look for the batch prediction of %s: %w", tag, err)
		}
		for _, r := range runs {
			if r.CreatedBy == tag {
				return r, nil
			}
			if since != nil && r.CreatedAt.Before(since.Add(-time.Second)) {
				return nil, nil
			}
		}
		if len(runs) < page {
			return nil, nil
		}
	}
}

package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/inference"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/serving"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// maxBisectBadRows bounds how many rows of one chunk the model may reject before a skip run gives up: a
// model that fails on everything is a broken model, not bad rows.
const maxBisectBadRows = 50

// launch starts a run's goroutine, owned by the service: it waits for a run slot, scores, and records the
// outcome. Close stops it (the run stays IN_PROGRESS and resumes at the next start).
func (s *Service) launch(run *slipway.BatchRun) {
	ctx, cancel := context.WithCancelCause(s.ctx)
	prog := newProgress(run)
	s.mu.Lock()
	s.active[run.ID] = &activeRun{cancel: cancel, prog: prog}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var input string
		defer func() {
			cancel(nil)
			s.mu.Lock()
			delete(s.active, run.ID)
			s.mu.Unlock()
			s.evictCached(input) // a copy fetched from the bucket for this run
			if err := os.RemoveAll(s.runDir(run.ID)); err != nil {
				s.log.Warn("remove a batch prediction's scratch folder", "run_id", run.ID, "error", err)
			}
			s.releaseRun(run.ID) // over, or stopped here: another server resumes it at once
		}()
		if id := run.Spec.Input.File; id != "" {
			if f, err := s.store.FindUploadedFile(ctx, id); err == nil {
				input = f.SHA256
				s.mu.Lock()
				s.active[run.ID].input = input
				s.mu.Unlock()
			}
		}
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.slots }()
		if run.State == slipway.BatchAccepted {
			if err := s.store.SetBatchState(ctx, run.ID, slipway.BatchAccepted, slipway.BatchInProgress, ""); err != nil {
				if slipway.ErrorCode(err) != slipway.ECONFLICT && ctx.Err() == nil {
					s.log.Error("start batch prediction", "run_id", run.ID, "error", err)
				}
				return
			}
			run.State = slipway.BatchInProgress
		}
		out, err := s.execute(ctx, run, prog)
		s.finish(ctx, run, prog, out, err)
	}()
}

// finish records a run's outcome.
func (s *Service) finish(ctx context.Context, run *slipway.BatchRun, prog *progress, out slipway.BatchOutput, err error) {
	bg := context.WithoutCancel(ctx)
	switch {
	case errors.Is(context.Cause(ctx), errCanceled):
		s.flush(bg, run.ID, prog)
		s.log.Info("batch prediction canceled", "run_id", run.ID)
		return // Cancel recorded the state
	case errors.Is(context.Cause(ctx), errLostLease):
		s.log.Warn("batch prediction stopped here: another server owns it now and resumes it from its checkpoints", "run_id", run.ID)
		return
	case s.ctx.Err() != nil:
		s.flush(bg, run.ID, prog)
		s.log.Info("batch prediction interrupted by shutdown; it resumes at the next start (or on another server)", "run_id", run.ID)
		return
	}
	s.flush(bg, run.ID, prog)
	to, reason := slipway.BatchSucceeded, ""
	if err != nil {
		to, reason = slipway.BatchFailed, failureReason(err)
		if slipway.ErrorCode(err) == slipway.EINTERNAL {
			s.log.Error("batch prediction failed", "run_id", run.ID, "error", err)
			reason = fmt.Sprintf("internal error: %s (the server log has the details under run_id=%s)", err.Error(), run.ID)
		}
	} else if err := s.store.SetBatchOutput(bg, run.ID, out); err != nil {
		s.log.Error("record batch output", "run_id", run.ID, "error", err)
	}
	if err := s.store.SetBatchState(bg, run.ID, slipway.BatchInProgress, to, reason); err != nil {
		if slipway.ErrorCode(err) != slipway.ECONFLICT {
			s.log.Error("record batch state", "run_id", run.ID, "state", to, "error", err)
		}
		return
	}
	s.log.Info("batch prediction finished", "run_id", run.ID, "state", to, "reason", reason,
		"rows_done", prog.snapshot().RowsDone)
	if to == slipway.BatchSucceeded && run.Spec.Output.Format != "" {
		if err := s.dropParts(bg, run.ID); err != nil {
			s.log.Warn("remove the merged parts of a batch output (the next lone start collects them)", "run_id", run.ID, "error", err)
		}
	}
}

func failureReason(err error) string {
	var se *slipway.Error
	if errors.As(err, &se) {
		return se.Message
	}
	return err.Error()
}

func (s *Service) flush(ctx context.Context, id string, prog *progress) {
	if err := s.store.UpdateBatchProgress(ctx, id, prog.snapshot()); err != nil {
		s.log.Warn("record batch progress", "run_id", id, "error", err)
	}
}

// execute scores a run from its first uncommitted chunk to the end.
func (s *Service) execute(ctx context.Context, run *slipway.BatchRun, prog *progress) (_ slipway.BatchOutput, err error) {
	sp := run.Spec
	v, err := s.models.FindVersion(ctx, run.Model, slipway.VersionRef{Number: run.Version})
	if err != nil {
		return slipway.BatchOutput{}, err
	}
	src, _, err := s.openSource(ctx, sp)
	if err != nil {
		return slipway.BatchOutput{}, err
	}
	defer s.closeSource(src, "run_id", run.ID)
	p, err := buildPlan(ctx, src, v, sp.KeyColumns)
	if err != nil {
		return slipway.BatchOutput{}, err
	}
	total, err := src.total(ctx)
	if err != nil {
		return slipway.BatchOutput{}, err
	}
	snk, err := s.openSink(run)
	if err != nil {
		return slipway.BatchOutput{}, err
	}
	defer func() {
		if cerr := snk.close(); cerr != nil && err == nil {
			err = fmt.Errorf("batch: close the output: %w", cerr)
		}
	}()
	done, err := snk.committed(ctx)
	if err != nil {
		return slipway.BatchOutput{}, err
	}
	prog.start(total, done)
	s.flush(ctx, run.ID, prog)

	dir, err := s.files.Materialize(ctx, v)
	if err != nil {
		return slipway.BatchOutput{}, fmt.Errorf("prepare model files: %w", err)
	}
	pool := serving.NewPool("batch-"+run.ID, serving.Options{MaxQueue: 2 * sp.Parallel, Timeout: time.Duration(sp.TimeoutMS) * time.Millisecond},
		s.log.With("run_id", run.ID), nil)
	defer pool.Close()
	if err := pool.Rollout(ctx, v.Version, sp.Parallel, s.starter(run, v, dir)); err != nil {
		return slipway.BatchOutput{}, slipway.Wrap(slipway.EUNAVAILABLE, err, "the model's replicas could not start: %v", err)
	}
	if err := src.start(ctx, p.sel); err != nil {
		return slipway.BatchOutput{}, err
	}
	r := &runner{svc: s, run: run, v: v, plan: p, src: src, snk: snk, pool: pool, prog: prog, done: done}
	if err := r.scoreAll(ctx); err != nil {
		return slipway.BatchOutput{}, err
	}
	return snk.finish(ctx)
}

// closeSource closes a run's input. The rows are read by then (or the run failed already): an error cannot
// change the outcome, so it is logged.
func (s *Service) closeSource(src source, logAttrs ...any) {
	if err := src.close(); err != nil {
		s.log.Warn("close batch input", append(logAttrs, "error", err)...)
	}
}

func (s *Service) openSink(run *slipway.BatchRun) (sink, error) {
	out := run.Spec.Output
	if out.Format != "" {
		return newFileSink(s, s.runDir(run.ID), out.Format, run.ID, run.Model, run.Version, s.log), nil
	}
	c, err := s.conn(out.Connection)
	if err != nil {
		return nil, err
	}
	t, err := parseTable(c.Driver, out.Table)
	if err != nil {
		return nil, err
	}
	return newSQLSink(c, t, run.ID, run.Model, run.Version, run.Spec.OnBadRows == slipway.BadRowsSkip)
}

// starter starts one replica of v for the run: the same process a deployment starts.
func (s *Service) starter(run *slipway.BatchRun, v *slipway.ModelVersion, dir string) serving.Starter {
	log := s.log.With("run_id", run.ID, "model", v.Model, "version", v.Version)
	env := modelruntime.ThreadEnv(run.Spec.Parallel, nil)
	return func(ctx context.Context) (*modelruntime.Replica, error) {
		spec, err := s.runtimes.VersionSpec(v, dir, env)
		if err != nil {
			return nil, err
		}
		return s.runtimes.Start(ctx, spec, s.ready, func(line string) { log.Debug("replica output", "line", line) })
	}
}

// runner is one execution of a run.
type runner struct {
	svc  *Service
	run  *slipway.BatchRun
	v    *slipway.ModelVersion
	plan *plan
	src  source
	snk  sink
	pool *serving.Pool
	prog *progress
	done map[int]chunkRecord

	outs    []outSpec      // the model's outputs, fixed by the first scored chunk
	pending []pendingChunk // chunks read before the output existed (all their rows were bad)
}

type pendingChunk struct {
	c  *chunk
	sc *scored
}

// outSpec is one model output as it lands in columns: 1-D outputs give one column, [N, K] outputs K.
type outSpec struct {
	tensor string
	dt     kind
	width  int // 0: one column named tensor; K: tensor_0 … tensor_{K-1}
}

func (o outSpec) columns() []outCol {
	if o.width == 0 {
		return []outCol{{o.tensor, o.dt}}
	}
	out := make([]outCol, o.width)
	for j := range out {
		out[j] = outCol{fmt.Sprintf("%s_%d", o.tensor, j), o.dt}
	}
	return out
}

// scoreAll scores the first chunk with readable rows on this goroutine (its outputs fix the output columns, so
// that the table can be created or checked before any row is written), then the rest on parallelism
// workers. A chunk is committed once; chunks committed before a crash are read and skipped.
func (r *runner) scoreAll(ctx context.Context) error {
	var first *chunk
	var firstScore *scored
	for first == nil {
		c, err := r.src.next(ctx, r.run.Spec.ChunkSize)
		if err != nil {
			return err
		}
		if c == nil {
			break
		}
		sc, err := r.score(ctx, c)
		if err != nil {
			return err
		}
		if len(sc.rows) > 0 {
			first, firstScore = c, sc
			break
		}
		if err := r.commitFirstless(ctx, c, sc); err != nil {
			return err
		}
	}
	if first == nil {
		if r.prog.snapshot().RowsSkipped > 0 {
			return slipway.Errorf(slipway.EINVALID, "no row of the input could be scored (every row was bad: see errors)")
		}
		if _, err := r.prepare(ctx, nil); err != nil { // empty input: create the table all the same
			return err
		}
		return nil
	}
	cols, err := r.prepare(ctx, firstScore.outputs)
	if err != nil {
		return err
	}
	if _, ok := r.done[first.index]; !ok {
		if err := r.commit(ctx, first, firstScore, cols); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var once sync.Once
	var firstErr error
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel(err) })
	}
	chunks := make(chan *chunk, r.run.Spec.Parallel)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // feeder: owned by run, ends at the input's end or when ctx ends
		defer wg.Done()
		defer close(chunks)
		for {
			c, err := r.src.next(ctx, r.run.Spec.ChunkSize)
			if err != nil {
				fail(err)
				return
			}
			if c == nil {
				return
			}
			if _, ok := r.done[c.index]; ok {
				continue
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Scoring and writing are separate stages, so that a replica gets its next chunk while the previous one
	// is written: at most 4 × parallelism chunks are in memory (read ahead, scoring, queued, writing).
	type scoredChunk struct {
		c  *chunk
		sc *scored
	}
	writes := make(chan scoredChunk, r.run.Spec.Parallel)
	var scorers sync.WaitGroup
	for range r.run.Spec.Parallel {
		scorers.Add(1)
		go func() { // scorer: owned by scoreAll, ends when the feeder closes chunks
			defer scorers.Done()
			for c := range chunks {
				if ctx.Err() != nil {
					continue // drain
				}
				sc, err := r.score(ctx, c)
				if err != nil {
					fail(err)
					continue
				}
				select {
				case writes <- scoredChunk{c, sc}:
				case <-ctx.Done():
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // closes writes once every scorer is done
		defer wg.Done()
		scorers.Wait()
		close(writes)
	}()
	for range r.run.Spec.Parallel {
		wg.Add(1)
		go func() { // writer: owned by scoreAll, ends when writes is closed
			defer wg.Done()
			for w := range writes {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := r.commit(ctx, w.c, w.sc, cols); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return context.Cause(ctx)
}

// commitFirstless handles a chunk before the first scorable one: every row was bad (skip policy).
func (r *runner) commitFirstless(ctx context.Context, c *chunk, sc *scored) error {
	// The output does not exist yet: such chunks are recorded as skipped once it does (prepare replays them).
	r.prog.add(0, 0, nil)
	r.pending = append(r.pending, pendingChunk{c, sc})
	return nil
}

// prepare fixes the output columns from the first scored outputs and creates or checks the destination.
func (r *runner) prepare(ctx context.Context, outputs []workerproto.Tensor) ([]outCol, error) {
	cols := append([]outCol{}, r.plan.keyCols...)
	taken := map[string]string{}
	for _, k := range r.plan.keyCols {
		taken[k.name] = "key column"
	}
	for _, m := range metaCols {
		taken[m.name] = "column every output row carries"
	}
	for _, t := range outputs {
		o := outSpec{tensor: t.Name, dt: kindOfDatatype(t.Datatype)}
		switch {
		case len(t.Shape) == 1 || len(t.Shape) == 2 && t.Shape[1] == 1:
		case len(t.Shape) == 2:
			o.width = int(t.Shape[1])
		default:
			return nil, slipway.Errorf(slipway.EINVALID, "model output %q has shape %v: batch outputs take one value, or one row of values, per input row", t.Name, t.Shape)
		}
		if o.dt == kindNone {
			return nil, slipway.Errorf(slipway.EINVALID, "model output %q has datatype %s, which batch outputs cannot store", t.Name, t.Datatype)
		}
		for _, c := range o.columns() {
			if what, clash := taken[c.name]; clash {
				return nil, slipway.Errorf(slipway.EINVALID, "model output column %q has the name of a %s: rename the key column in the input", c.name, what)
			}
			taken[c.name] = "model output"
			cols = append(cols, c)
		}
		r.outs = append(r.outs, o)
	}
	if err := r.snk.prepare(ctx, cols); err != nil {
		return nil, err
	}
	for _, pc := range r.pending {
		if _, ok := r.done[pc.c.index]; ok {
			continue
		}
		if err := r.commit(ctx, pc.c, pc.sc, cols); err != nil {
			return nil, err
		}
	}
	r.pending = nil
	return cols, nil
}

// scored is a chunk's predictions: rows (offsets in the chunk) that were scored, in order, with their
// outputs, and the rows that were skipped.
type scored struct {
	rows    []int
	outputs []workerproto.Tensor // concatenated over rows
	parts   [][]workerproto.Tensor
	errors  []slipway.BatchError
	skipped int
}

// score runs a chunk through the model. Rows that cannot be read, or that the model rejects (EINVALID from
// the input schema, or an exception from predict()), fail the run or, with on_bad_rows=skip, are found by
// bisection and left out with their row numbers.
func (r *runner) score(ctx context.Context, c *chunk) (*scored, error) {
	skip := r.run.Spec.OnBadRows == slipway.BadRowsSkip
	sc := &scored{}
	for i := range c.n {
		msg, bad := c.bad[i]
		if !bad {
			for _, f := range r.plan.features {
				col := c.cols[f.sel]
				if col.kind != kindFloat && col.isNull(i) {
					msg, bad = fmt.Sprintf("column %q: missing value (only float features may be empty: they become NaN)", f.name), true
					break
				}
			}
		}
		if bad {
			if !skip {
				return nil, slipway.Errorf(slipway.EINVALID, "row %d (chunk %d): %s. Fix the input, or run with on_bad_rows=skip to leave such rows out", c.start+int64(i), c.index, msg)
			}
			sc.errors = append(sc.errors, slipway.BatchError{Chunk: c.index, RowStart: c.start + int64(i), RowEnd: c.start + int64(i), Message: msg})
			sc.skipped++
			continue
		}
		sc.rows = append(sc.rows, i)
	}
	if len(sc.rows) == 0 {
		return sc, nil
	}
	rejected := 0
	var rec func(idx []int) error
	rec = func(idx []int) error {
		out, err := r.predict(ctx, c, idx)
		if err == nil {
			sc.parts = append(sc.parts, out)
			return nil
		}
		if !dataError(err) {
			return err
		}
		lo, hi := c.start+int64(idx[0]), c.start+int64(idx[len(idx)-1])
		if !skip {
			return slipway.Wrap(slipway.EINVALID, err, "rows %d-%d (chunk %d): %s. Fix the input, or run with on_bad_rows=skip to find and leave out the rows the model rejects",
				lo, hi, c.index, modelMessage(err))
		}
		if len(idx) == 1 {
			rejected++
			if rejected > maxBisectBadRows {
				return slipway.Wrap(slipway.EINVALID, err, "the model rejected more than %d rows of chunk %d (rows from %d): is the model broken? Last error: %s",
					maxBisectBadRows, c.index, c.start, modelMessage(err))
			}
			sc.errors = append(sc.errors, slipway.BatchError{Chunk: c.index, RowStart: lo, RowEnd: lo, Message: modelMessage(err)})
			sc.skipped++
			return nil
		}
		mid := len(idx) / 2
		if err := rec(idx[:mid]); err != nil {
			return err
		}
		return rec(idx[mid:])
	}
	if err := rec(sc.rows); err != nil {
		return nil, err
	}
	if sc.skipped > 0 {
		kept := sc.rows[:0:0]
		bad := map[int64]bool{}
		for _, e := range sc.errors {
			bad[e.RowStart] = true
		}
		for _, i := range sc.rows {
			if !bad[c.start+int64(i)] {
				kept = append(kept, i)
			}
		}
		sc.rows = kept
		sort.Slice(sc.errors, func(a, b int) bool { return sc.errors[a].RowStart < sc.errors[b].RowStart })
	}
	if len(sc.parts) == 1 {
		sc.outputs = sc.parts[0]
	} else if len(sc.parts) > 1 {
		merged, _, err := inference.Concat(sc.parts)
		if err != nil {
			return nil, fmt.Errorf("chunk %d: merge the outputs of its parts: %w", c.index, err)
		}
		sc.outputs = merged
	}
	sc.parts = nil
	return sc, nil
}

// predict scores rows idx of c. A replica that died is retried once more than the pool's own retry.
func (r *runner) predict(ctx context.Context, c *chunk, idx []int) ([]workerproto.Tensor, error) {
	in := make([]workerproto.Tensor, len(r.plan.features))
	for j, f := range r.plan.features {
		t, err := c.cols[f.sel].tensor(f.name, f.dt, idx)
		if err != nil {
			return nil, err
		}
		in[j] = t
	}
	if err := inference.ValidateSchema(in, r.v.InputSchema); err != nil {
		return nil, err
	}
	var res serving.Result
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		res, err = r.pool.PredictTensors(ctx, in)
		if slipway.ErrorCode(err) != slipway.EUNAVAILABLE || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		if slipway.ErrorCode(err) == slipway.ETIMEOUT {
			return nil, slipway.Wrap(slipway.ETIMEOUT, err, "chunk %d (rows from %d) took longer than chunk_timeout_ms (%d ms): use smaller chunks or a longer timeout", c.index, c.start, r.run.Spec.TimeoutMS)
		}
		return nil, err
	}
	for _, t := range res.Outputs {
		if len(t.Shape) == 0 || t.Shape[0] != int64(len(idx)) {
			return nil, slipway.Errorf(slipway.EINVALID, "model output %q has shape %v for %d input rows: batch predictions need one output row per input row", t.Name, t.Shape, len(idx))
		}
	}
	return res.Outputs, nil
}

// dataError reports errors caused by the rows sent (as opposed to the replicas or the server).
func dataError(err error) bool {
	var merr interface{ ModelErrorType() string }
	if errors.As(err, &merr) {
		return true
	}
	return slipway.ErrorCode(err) == slipway.EINVALID
}

func modelMessage(err error) string {
	var merr *workerproto.ModelError
	if errors.As(err, &merr) {
		msg, _, _ := strings.Cut(strings.TrimSpace(merr.Message), "\n")
		return "the model raised " + merr.Type + ": " + msg
	}
	return slipway.ErrorMessage(err)
}

// commit converts a scored chunk to output columns and writes it with its checkpoint.
func (r *runner) commit(ctx context.Context, c *chunk, sc *scored, cols []outCol) error {
	out := &chunkOut{index: c.index, rows: len(sc.rows), skipped: sc.skipped, errors: sc.errors, scoredAt: time.Now().UTC()}
	for _, k := range r.plan.keys {
		out.cols = append(out.cols, c.cols[k].take(sc.rows))
	}
	if len(sc.rows) > 0 {
		pcols, err := r.outputColumns(c, sc.outputs)
		if err != nil {
			return err
		}
		out.cols = append(out.cols, pcols...)
	} else {
		for _, oc := range cols[len(r.plan.keys):] {
			out.cols = append(out.cols, newColumn(oc.kind, 0))
		}
	}
	if err := r.snk.write(ctx, out); err != nil {
		return err
	}
	r.prog.add(int64(c.n), int64(sc.skipped), sc.errors)
	if hook := r.svc.afterCommit; hook != nil {
		hook(r.run.ID, c.index)
	}
	if r.prog.due(r.svc.ProgressEvery) {
		r.svc.flush(ctx, r.run.ID, r.prog)
	}
	return nil
}

// outputColumns splits a chunk's output tensors into the run's output columns.
func (r *runner) outputColumns(c *chunk, outputs []workerproto.Tensor) ([]*column, error) {
	var cols []*column
	for _, o := range r.outs {
		var t *workerproto.Tensor
		for i := range outputs {
			if outputs[i].Name == o.tensor {
				t = &outputs[i]
			}
		}
		if t == nil {
			return nil, slipway.Errorf(slipway.EINVALID, "chunk %d: the model did not return output %q this time (it did for the first chunk): batch outputs need the same outputs for every chunk", c.index, o.tensor)
		}
		width := 0
		if len(t.Shape) == 2 && t.Shape[1] != 1 {
			width = int(t.Shape[1])
		}
		if width != o.width || kindOfDatatype(t.Datatype) != o.dt {
			return nil, slipway.Errorf(slipway.EINVALID, "chunk %d: model output %q is %s %v, the first chunk's was %s with %d columns: batch outputs need the same shape and type for every chunk",
				c.index, o.tensor, t.Datatype, t.Shape, o.dt, max(o.width, 1))
		}
		for j := range max(width, 1) {
			col, err := fromTensor(*t, j, max(width, 1))
			if err != nil {
				return nil, slipway.Wrap(slipway.EINVALID, err, "chunk %d: %v", c.index, err)
			}
			cols = append(cols, col)
		}
	}
	return cols, nil
}

// progress counts a run's rows; safe for concurrent use.
type progress struct {
	mu          sync.Mutex
	total       int64
	done        int64
	skipped     int64
	errors      []slipway.BatchError
	attemptRows int64
	attemptFrom time.Time
	lastFlush   time.Time
}

func newProgress(run *slipway.BatchRun) *progress {
	return &progress{total: run.RowsTotal, done: run.RowsDone, skipped: run.RowsSkipped, errors: run.Errors}
}

// start sets the totals from the output's checkpoints (the truth after a crash, not the last flush).
func (p *progress) start(total int64, done map[int]chunkRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total, p.done, p.skipped, p.errors = total, 0, 0, nil
	idx := make([]int, 0, len(done))
	for i := range done {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		rec := done[i]
		p.done += rec.rows + rec.skipped
		p.skipped += rec.skipped
		p.addErrorsLocked(rec.errors)
	}
	p.attemptRows, p.attemptFrom = 0, time.Now()
}

func (p *progress) addErrorsLocked(errs []slipway.BatchError) {
	for _, e := range errs {
		if len(p.errors) < maxRunErrors {
			p.errors = append(p.errors, e)
		}
	}
}

func (p *progress) add(rows, skipped int64, errs []slipway.BatchError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += rows
	p.skipped += skipped
	p.attemptRows += rows
	p.addErrorsLocked(errs)
}

// due reports whether the progress should be written to the store now.
func (p *progress) due(every time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.lastFlush) < every {
		return false
	}
	p.lastFlush = time.Now()
	return true
}

func (p *progress) snapshot() slipway.BatchProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	rate := 0.0
	if el := time.Since(p.attemptFrom).Seconds(); !p.attemptFrom.IsZero() && el > 0 {
		rate = float64(p.attemptRows) / el
	}
	errs := append([]slipway.BatchError{}, p.errors...)
	sort.SliceStable(errs, func(a, b int) bool { return errs[a].RowStart < errs[b].RowStart })
	return slipway.BatchProgress{RowsTotal: p.total, RowsDone: p.done, RowsSkipped: p.skipped, RowsPerSecond: rate, Errors: errs}
}

package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// defaultBuiltinTimeout bounds a built-in step without timeout_seconds (registration runs the model's checks).
const defaultBuiltinTimeout = time.Hour

// builtinState is a built-in step running in this server.
type builtinState struct {
	cancel  context.CancelFunc
	started time.Time
	done    bool
	result  stepResult
	// progress is what a long built-in (batch) reported since the driver last recorded it in the step.
	progress *stepProgress
}

// stepProgress is a running built-in's outputs and reason so far (the batch step: its batch id and rows).
type stepProgress struct {
	outputs map[string]any
	reason  string
}

// stepResult is how one attempt of a step ended.
type stepResult struct {
	ok, canceled bool
	reason       string
	outputs      map[string]any
	dir, digest  string
	started      *time.Time
	finished     *time.Time
}

// startDriver starts the goroutine that moves a pipeline run forward, unless one is already running.
// On several servers the driver runs while this server holds the run's lease: it ends when the lease is lost
// (stopDriver), and releases the lease when it ends, so that another server drives the run at once if it is
// not over (a shutdown hands it over).
func (s *Service) startDriver(id string) {
	s.mu.Lock()
	if s.drivers[id] != nil {
		s.mu.Unlock()
		return
	}
	dctx, cancel := context.WithCancel(s.ctx)
	s.drivers[id] = cancel
	s.mu.Unlock()
	s.goFunc(func(context.Context) {
		defer func() {
			cancel()
			s.mu.Lock()
			delete(s.drivers, id)
			s.mu.Unlock()
			s.releaseRun(slipway.RunKindPipeline, id)
			s.changed.notify() // waiters for "over and no longer driven" (retry, tests) see it
		}()
		s.drive(dctx, id)
	})
}

// stopDriver ends the driver of a run (its lease was lost: another server drives it now).
func (s *Service) stopDriver(id string) {
	s.mu.Lock()
	cancel := s.drivers[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (s *Service) driving(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drivers[id] != nil
}

// drive advances a run each time something changes (or a retry is due) until the run is over. The driver is
// the only writer of the run's steps, so passes never race each other.
func (s *Service) drive(ctx context.Context, id string) {
	log := s.log.With("pipeline_run", id)
	for {
		wake := s.changed.wait()
		next, done, err := s.advance(ctx, id)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("pipeline run: advance", "error", err)
			next = s.now().Add(2 * time.Second)
		}
		if done {
			return
		}
		// With other servers, a step's job run may run on another server, and a cancel may arrive through one:
		// neither wakes this server's waiters, so the driver also looks every second.
		if poll := s.now().Add(s.cfg.AdoptEvery); s.cfg.Leases != nil && (next.IsZero() || next.After(poll)) {
			next = poll
		}
		var due <-chan time.Time
		var timer *time.Timer
		if !next.IsZero() {
			timer = time.NewTimer(max(0, next.Sub(s.now())))
			due = timer.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// advance is one pass over a run: settle finished attempts, cancel or skip what must not run, start what is
// ready, and finish the run once every step is settled. It returns when the next retry is due (zero: none).
func (s *Service) advance(ctx context.Context, id string) (next time.Time, done bool, err error) {
	run, err := s.store.FindPipelineRun(ctx, id)
	if err != nil {
		return next, false, err
	}
	if run.State.Terminal() {
		return next, true, nil
	}
	specs := map[string]*slipway.StepSpec{}
	for i := range run.Spec.Steps {
		specs[run.Spec.Steps[i].Name] = &run.Spec.Steps[i]
	}
	if run.Spec.OnExit != nil {
		specs[run.Spec.OnExit.Name] = run.Spec.OnExit
	}
	steps := map[string]*slipway.StepRun{}
	var main []*slipway.StepRun
	var exit *slipway.StepRun
	for _, st := range run.Steps {
		steps[st.Name] = st
		if st.OnExit {
			exit = st
		} else {
			main = append(main, st)
		}
	}

	// 1. Settle attempts that ended; stop running steps of a canceled run.
	for _, st := range run.Steps {
		if st.State != slipway.StepInProgress {
			continue
		}
		if st.Kind == "builtin:"+BuiltinBatch {
			if err := s.reattachBatch(ctx, run, st, specs[st.Name]); err != nil {
				return next, false, err
			}
		}
		res, finished, err := s.poll(ctx, st, run.ID)
		if err != nil {
			return next, false, err
		}
		if finished {
			if err := s.applyResult(ctx, run, st, specs[st.Name], res); err != nil {
				return next, false, err
			}
			continue
		}
		if p := s.takeProgress(run.ID, st.Name); p != nil {
			st.Outputs, st.Reason = p.outputs, p.reason
			if err := s.store.UpdateStepRun(ctx, run.ID, st); err != nil {
				return next, false, err
			}
			s.changed.notify() // followers of the run see the progress
		}
		if run.CancelRequested && !st.OnExit {
			s.stopStep(ctx, run.ID, st)
		}
	}

	// 2. Decide what must not run: everything pending after a cancel; after a failure (fail fast) or when a
	// dependency did not succeed.
	failed := ""
	for _, st := range main {
		if st.State == slipway.StepFailed || st.State == slipway.StepCanceled {
			failed = st.Name
			break
		}
	}
	for _, st := range main {
		if st.State != slipway.StepPending && st.State != slipway.StepRetryWait {
			continue
		}
		to, reason := slipway.StepState(""), ""
		switch {
		case run.CancelRequested:
			to, reason = slipway.StepCanceled, "the run was canceled"
		case failed != "":
			to, reason = slipway.StepSkipped, "not started: step "+failed+" did not succeed"
		default:
			for _, d := range st.DependsOn {
				if ds := steps[d]; ds != nil && ds.State.Terminal() && ds.State != slipway.StepSucceeded {
					to, reason = slipway.StepSkipped, "not started: step "+d+" is "+string(ds.State)
				}
			}
		}
		if to != "" {
			st.State, st.Reason, st.NextAttemptAt = to, reason, nil
			st.FinishedAt = ptr(s.now().UTC())
			if err := s.store.UpdateStepRun(ctx, run.ID, st); err != nil {
				return next, false, err
			}
		}
	}

	// 3. Start the steps that are ready.
	start := func(st *slipway.StepRun, status string) error {
		switch st.State {
		case slipway.StepPending:
			for _, d := range st.DependsOn {
				if steps[d] == nil || steps[d].State != slipway.StepSucceeded {
					return nil
				}
			}
		case slipway.StepRetryWait:
			if st.NextAttemptAt != nil && s.now().Before(*st.NextAttemptAt) {
				if next.IsZero() || st.NextAttemptAt.Before(next) {
					next = *st.NextAttemptAt
				}
				return nil
			}
		default:
			return nil
		}
		return s.launch(ctx, run, st, specs[st.Name], status)
	}
	for _, st := range main {
		if err := start(st, ""); err != nil {
			return next, false, err
		}
	}

	// 4. Once every main step is settled: the exit step, then the run's end.
	for _, st := range main {
		if !st.State.Terminal() {
			return next, false, nil
		}
	}
	state, reason := slipway.RunSucceeded, ""
	for _, st := range main {
		if st.State == slipway.StepFailed || st.State == slipway.StepCanceled {
			state, reason = slipway.RunFailed, fmt.Sprintf("step %s %s: %s", st.Name, strings.ToLower(string(st.State)), st.Reason)
			break
		}
	}
	if run.CancelRequested {
		state, reason = slipway.RunCanceled, run.Reason
	}
	if exit != nil && !exit.State.Terminal() {
		if err := start(exit, string(state)); err != nil {
			return next, false, err
		}
		return next, false, nil
	}
	if exit != nil && exit.State != slipway.StepSucceeded && state == slipway.RunSucceeded {
		state, reason = slipway.RunFailed, fmt.Sprintf("on_exit step %s %s: %s", exit.Name, strings.ToLower(string(exit.State)), exit.Reason)
	}
	run.State, run.Reason, run.FinishedAt = state, reason, ptr(s.now().UTC())
	if err := s.store.UpdatePipelineRun(ctx, run); err != nil {
		return next, false, err
	}
	s.log.InfoContext(ctx, "pipeline run finished", "pipeline", run.Pipeline, "pipeline_run", run.ID, "state", state, "reason", reason)
	s.changed.notify()
	return next, true, nil
}

// scopeOf is what references of a run's steps resolve against: its params and its succeeded steps' outputs.
func (s *Service) scopeOf(run *slipway.PipelineRun, lenient bool) *scope {
	sc := &scope{runID: run.ID, params: run.Params, outputs: map[string]map[string]any{}, dirs: map[string]string{}, lenient: lenient}
	for _, st := range run.Steps {
		if st.State == slipway.StepSucceeded {
			sc.outputs[st.Name] = st.Outputs
			if st.OutputDir != "" {
				sc.dirs[st.Name] = st.OutputDir
			}
		}
	}
	return sc
}

// poll reports whether the current attempt of a running step has ended, and how.
func (s *Service) poll(ctx context.Context, st *slipway.StepRun, runID string) (stepResult, bool, error) {
	if !strings.HasPrefix(st.Kind, "builtin:") {
		jr, err := s.store.FindJobRun(ctx, st.JobRun)
		if slipway.ErrorCode(err) == slipway.ENOTFOUND {
			return stepResult{reason: "its job run " + st.JobRun + " is gone"}, true, nil
		} else if err != nil {
			return stepResult{}, false, err
		}
		if !jr.State.Terminal() {
			return stepResult{}, false, nil
		}
		return stepResult{ok: jr.State == slipway.RunSucceeded, canceled: jr.State == slipway.RunCanceled, reason: jr.Reason,
			outputs: jr.Outputs, dir: s.outputDir(jr.ID), digest: jr.OutputDigest, started: jr.StartedAt, finished: jr.FinishedAt}, true, nil
	}
	key := runID + "/" + st.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := s.builtins[key]
	if bs == nil {
		return stepResult{reason: "server restarted while the step was running", finished: ptr(s.now().UTC())}, true, nil
	}
	if !bs.done {
		return stepResult{}, false, nil
	}
	delete(s.builtins, key)
	return bs.result, true, nil
}

// stopStep cancels the current attempt of a running step.
func (s *Service) stopStep(ctx context.Context, runID string, st *slipway.StepRun) {
	if strings.HasPrefix(st.Kind, "builtin:") {
		s.mu.Lock()
		if bs := s.builtins[runID+"/"+st.Name]; bs != nil {
			bs.cancel()
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	ar := s.running[st.JobRun]
	s.mu.Unlock()
	if ar != nil {
		ar.requestCancel("the pipeline run was canceled")
		return
	}
	jr, err := s.store.FindJobRun(ctx, st.JobRun)
	switch {
	case err != nil:
	case jr.State == slipway.RunAccepted:
		jr.State, jr.Reason, jr.FinishedAt = slipway.RunCanceled, "the pipeline run was canceled", ptr(s.now().UTC())
		if err := s.store.FinishJobRun(ctx, jr); err == nil {
			s.changed.notify()
		}
	case jr.State == slipway.RunInProgress && s.cfg.Leases != nil:
		// Its process runs on another server, the job run's owner: it stops it within a second. The driver
		// asks on each pass until the attempt is over: asking again rewrites the same flag.
		if err := s.store.RequestJobRunCancel(ctx, jr.ID, "the pipeline run was canceled"); err != nil && slipway.ErrorCode(err) != slipway.ECONFLICT {
			s.log.Warn("ask the owner of a step's job run to cancel it", "run_id", jr.ID, "error", err)
		}
	}
}

// applyResult records how an attempt ended: success, cancel, a retry after backoff, or failure.
func (s *Service) applyResult(ctx context.Context, run *slipway.PipelineRun, st *slipway.StepRun, spec *slipway.StepSpec, res stepResult) error {
	now := s.now().UTC()
	if res.finished == nil {
		res.finished = &now
	}
	entry := slipway.StepAttempt{Attempt: st.Attempts, Reason: res.reason, StartedAt: res.started, FinishedAt: res.finished}
	if !strings.HasPrefix(st.Kind, "builtin:") {
		entry.JobRun = st.JobRun
	}
	used := st.Attempts - st.RetryBase
	if !res.ok && res.outputs != nil {
		st.Outputs = res.outputs // a failed built-in's last word (a rollout's ROLLED_BACK), not its last progress
	}
	switch {
	case res.ok:
		st.State, st.Reason = slipway.StepSucceeded, ""
		st.Outputs, st.OutputDir, st.OutputDigest = res.outputs, res.dir, res.digest
	case res.canceled || run.CancelRequested:
		st.State, st.Reason = slipway.StepCanceled, res.reason
	case used <= spec.Retries:
		wait := time.Duration(spec.RetryBackoffSeconds * math.Pow(2, float64(used-1)) * float64(time.Second))
		at := now.Add(wait)
		st.State, st.NextAttemptAt = slipway.StepRetryWait, &at
		st.Reason = fmt.Sprintf("attempt %d failed (%s); attempt %d of %d starts in %s", st.Attempts, res.reason, used+1, spec.Retries+1, humanDuration(wait))
	default:
		st.State, st.Reason = slipway.StepFailed, res.reason
		if used > 1 {
			st.Reason = fmt.Sprintf("%s (after %d attempts)", res.reason, used)
		}
	}
	entry.State = st.State
	if st.State == slipway.StepRetryWait {
		entry.State = slipway.StepFailed
	}
	st.History = append(st.History, entry)
	if st.State.Terminal() {
		st.FinishedAt = res.finished
	}
	if err := s.store.UpdateStepRun(ctx, run.ID, st); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "pipeline step attempt ended", "pipeline_run", run.ID, "step", st.Name, "attempt", st.Attempts, "state", st.State, "reason", st.Reason)
	s.changed.notify()
	return nil
}

// launch starts the next attempt of a step: resolve its references, reuse a cached result, or queue its job
// run / start its built-in.
func (s *Service) launch(ctx context.Context, run *slipway.PipelineRun, st *slipway.StepRun, spec *slipway.StepSpec, status string) error {
	now := s.now().UTC()
	sc := s.scopeOf(run, st.OnExit) // from the steps as they are now: one pass may settle several
	st.Attempts++
	st.NextAttemptAt = nil
	if st.StartedAt == nil || st.Attempts == st.RetryBase+1 {
		st.StartedAt = &now
	}
	fail := func(reason string) error {
		st.State, st.Reason, st.FinishedAt = slipway.StepFailed, reason, &now
		st.History = append(st.History, slipway.StepAttempt{Attempt: st.Attempts, State: slipway.StepFailed, Reason: reason, StartedAt: &now, FinishedAt: &now})
		if err := s.store.UpdateStepRun(ctx, run.ID, st); err != nil {
			return err
		}
		s.changed.notify()
		return nil
	}
	withAny, err := sc.substituteAny(map[string]any(spec.With))
	if err != nil {
		return fail(err.Error())
	}
	with, _ := withAny.(map[string]any)
	var rs *slipway.RunSpec
	var job *slipway.Job
	switch {
	case spec.Job != "":
		if job, err = s.store.FindJob(ctx, spec.Job); err != nil {
			return fail(fmt.Sprintf("job %s: %s", spec.Job, slipway.ErrorMessage(err)))
		}
		rs = &slipway.RunSpec{Kind: job.Kind, Entrypoint: job.Entrypoint, ArtifactDir: job.Digest, Args: job.Args,
			Env: maps.Clone(job.Env), MaxRuntimeSeconds: job.MaxRuntimeSeconds, Limits: job.Limits,
			Resources: job.Resources}
		if a, ok := with["args"].([]any); ok {
			rs.Args = make([]string, len(a))
			for i, v := range a {
				rs.Args[i] = formatValue(v)
			}
		}
	case spec.Script != "":
		script, err := sc.substituteString(spec.Script)
		if err != nil {
			return fail(err.Error())
		}
		rs = &slipway.RunSpec{Kind: slipway.EntryScript, Script: script, ArtifactDir: run.ArtifactDigest, MaxRuntimeSeconds: DefaultMaxRuntime}
	}
	if rs != nil {
		if rs.Env == nil {
			rs.Env = map[string]string{}
		}
		if e, ok := with["env"].(map[string]any); ok {
			for k, v := range e {
				rs.Env[k] = formatValue(v)
			}
		}
		for k, v := range run.Params {
			rs.Env["SLIPWAY_PARAM_"+strings.ToUpper(k)] = formatValue(v)
		}
		if status != "" {
			rs.Env["SLIPWAY_PIPELINE_STATUS"] = status
		}
		if spec.TimeoutSeconds > 0 {
			rs.MaxRuntimeSeconds = spec.TimeoutSeconds
		}
	}
	if spec.Cache {
		st.CacheKey = cacheKey(run, spec, rs, job, with)
		if hit, err := s.store.FindCachedStep(ctx, run.Pipeline, st.CacheKey); err == nil && (hit.OutputDir == "" || dirExists(hit.OutputDir)) {
			st.State, st.Cached, st.FinishedAt = slipway.StepSucceeded, true, &now
			st.Outputs, st.OutputDir, st.OutputDigest, st.JobRun = hit.Outputs, hit.OutputDir, hit.OutputDigest, hit.JobRun
			st.Reason = "cached: reused the outputs of job run " + hit.JobRun
			st.History = append(st.History, slipway.StepAttempt{Attempt: st.Attempts, JobRun: hit.JobRun, State: slipway.StepSucceeded,
				Reason: "cache hit", StartedAt: &now, FinishedAt: &now})
			if err := s.store.UpdateStepRun(ctx, run.ID, st); err != nil {
				return err
			}
			s.log.InfoContext(ctx, "pipeline step cache hit", "pipeline_run", run.ID, "step", st.Name, "job_run", hit.JobRun)
			s.changed.notify()
			return nil
		} else if err != nil && slipway.ErrorCode(err) != slipway.ENOTFOUND {
			return err
		}
	}
	st.Cached = false
	if rs != nil {
		jr := &slipway.JobRun{ID: newID("jr"), PipelineRun: run.ID, Step: st.Name, Attempt: st.Attempts, State: slipway.RunAccepted,
			Args: rs.Args, Env: rs.Env, Spec: *rs, CreatedAt: now, CreatedBy: run.CreatedBy}
		if job != nil {
			jr.Job = job.Name
		}
		st.State, st.JobRun, st.Reason = slipway.StepInProgress, jr.ID, ""
		if err := s.store.UpdateStepRun(ctx, run.ID, st); err != nil {
			return err
		}
		return s.enqueue(ctx, jr)
	}
	st.State, st.JobRun, st.Reason = slipway.StepInProgress, "", ""
	if err := s.store.UpdateStepRun(ctx, run.ID, st); err != nil {
		return err
	}
	s.startBuiltin(run, st, spec, with)
	s.changed.notify()
	return nil
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// cacheKey hashes what determines a step's result: its kind and resolved definition (references already
// substituted, so the inputs' values and the params it uses are in), the artifact it runs, and the output
// digests of the steps it depends on.
func cacheKey(run *slipway.PipelineRun, spec *slipway.StepSpec, rs *slipway.RunSpec, job *slipway.Job, with map[string]any) string {
	var key struct {
		Kind    string            `json:"kind"`
		Job     string            `json:"job,omitempty"`
		Digest  string            `json:"digest,omitempty"`
		Run     *slipway.RunSpec  `json:"run,omitempty"`
		Builtin string            `json:"builtin,omitempty"`
		With    map[string]any    `json:"with,omitempty"`
		Inputs  map[string]string `json:"inputs"`
	}
	key.Kind, key.Builtin, key.With, key.Inputs = stepKind(*spec), spec.Builtin, with, map[string]string{}
	if rs != nil {
		c := *rs
		key.Digest, c.ArtifactDir = c.ArtifactDir, ""
		key.Run = &c
	}
	if job != nil {
		key.Job = job.Name
	}
	deps := map[string]bool{}
	for _, d := range spec.DependsOn {
		deps[d] = true
	}
	for _, st := range run.Steps {
		if deps[st.Name] {
			outs, _ := json.Marshal(st.Outputs)
			key.Inputs[st.Name] = st.OutputDigest + ":" + string(outs)
		}
	}
	b, _ := json.Marshal(key)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// startBuiltin runs a built-in step in a goroutine owned by the service; the driver picks up its result.
func (s *Service) startBuiltin(run *slipway.PipelineRun, st *slipway.StepRun, spec *slipway.StepSpec, with map[string]any) {
	outputDirs := map[string]string{}
	for _, other := range run.Steps {
		if other.State == slipway.StepSucceeded {
			outputDirs[other.Name] = other.OutputDir
		}
	}
	step, attempt := st.Name, st.Attempts
	s.goBuiltin(run.ID, step, s.now().UTC(), builtinTimeout(spec), func(ctx context.Context, bs *builtinState) (map[string]any, error) {
		ctx = inRunProject(ctx, run)
		var outputs map[string]any
		var err error
		switch spec.Builtin {
		case BuiltinBatch:
			outputs, err = s.builtinBatch(ctx, run, step, attempt, with, "", bs)
		case BuiltinRollout:
			outputs, err = s.builtinRollout(ctx, run, step, with, bs)
		default:
			outputs, err = s.runBuiltin(ctx, run, spec.Builtin, with, outputDirs)
		}
		s.auditBuiltin(ctx, run, step, spec.Builtin, outputs, err)
		return outputs, err
	})
}

// builtinTimeout bounds each attempt of a built-in step.
func builtinTimeout(spec *slipway.StepSpec) time.Duration {
	if spec != nil && spec.TimeoutSeconds > 0 {
		return time.Duration(spec.TimeoutSeconds) * time.Second
	}
	return defaultBuiltinTimeout
}

// goBuiltin runs fn as the current attempt of a built-in step, started at started and bounded by timeout
// from then, in a goroutine owned by the service. Its result waits in s.builtins for the driver.
func (s *Service) goBuiltin(runID, step string, started time.Time, timeout time.Duration, fn func(ctx context.Context, bs *builtinState) (map[string]any, error)) {
	ctx, cancel := context.WithDeadline(s.ctx, started.Add(timeout))
	bs := &builtinState{cancel: cancel, started: started}
	s.mu.Lock()
	s.builtins[runID+"/"+step] = bs
	s.mu.Unlock()
	s.goFunc(func(context.Context) {
		defer cancel()
		outputs, err := fn(ctx, bs)
		res := stepResult{ok: err == nil, outputs: outputs, started: &bs.started, finished: ptr(s.now().UTC())}
		if err != nil {
			var c interface{ stepCanceled() }
			res.canceled = errors.As(err, &c)
			res.reason = slipway.ErrorMessage(err)
			if slipway.ErrorCode(err) == slipway.EINTERNAL {
				res.reason = err.Error()
			}
			if ctx.Err() == context.DeadlineExceeded {
				res.reason = "exceeded timeout " + humanDuration(timeout) + ": " + res.reason
			}
		}
		s.mu.Lock()
		bs.done, bs.result = true, res
		s.mu.Unlock()
		s.changed.notify()
	})
}

// report records a running built-in's progress for the driver to store in the step, and wakes the driver.
func (s *Service) report(bs *builtinState, p stepProgress) {
	s.mu.Lock()
	bs.progress = &p
	s.mu.Unlock()
	s.changed.notify()
}

// takeProgress returns the progress a running built-in reported since the last call (nil: none).
func (s *Service) takeProgress(runID, step string) *stepProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := s.builtins[runID+"/"+step]
	if bs == nil || bs.done {
		return nil
	}
	p := bs.progress
	bs.progress = nil
	return p
}

// resumePipelines starts a driver for every run left in progress by a previous server.
func (s *Service) resumePipelines(ctx context.Context) error {
	runs, err := s.store.FindActivePipelineRuns(ctx)
	if err != nil {
		return fmt.Errorf("jobs: find pipeline runs to resume: %w", err)
	}
	for _, r := range runs {
		s.log.InfoContext(ctx, "resuming pipeline run", "pipeline_run", r.ID, "pipeline", r.Pipeline)
		s.startDriver(r.ID)
	}
	return nil
}

package jobs

import (
	"context"

	"github.com/slipway-ml/slipway"
)

// CreatePipeline validates a definition and stores it, with the optional project artifact (up.Path empty:
// none) in which its script steps run.
func (s *Service) CreatePipeline(ctx context.Context, spec *slipway.PipelineSpec, up Upload, by string) (*slipway.Pipeline, error) {
	if err := ValidatePipeline(spec, func(name string) bool {
		_, err := s.store.FindJob(ctx, name)
		return err == nil
	}); err != nil {
		return nil, err
	}
	if _, err := s.store.FindPipeline(ctx, spec.Name); err == nil {
		return nil, slipway.Errorf(slipway.ECONFLICT, "pipeline %q already exists: delete it first or pick another name", spec.Name)
	}
	p := &slipway.Pipeline{Name: spec.Name, Spec: *spec, CreatedBy: by}
	if up.Path != "" {
		digest, _, err := s.storeArtifact(ctx, up)
		if err != nil {
			return nil, err
		}
		p.ArtifactDigest = digest
	}
	if err := s.store.CreatePipeline(ctx, p); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "pipeline created", "pipeline", p.Name, "steps", len(spec.Steps))
	return p, nil
}

// GetPipeline returns a pipeline.
func (s *Service) GetPipeline(ctx context.Context, name string) (*slipway.Pipeline, error) {
	return s.store.FindPipeline(ctx, name)
}

// ListPipelines returns every pipeline.
func (s *Service) ListPipelines(ctx context.Context) ([]*slipway.Pipeline, error) {
	return s.store.FindPipelines(ctx)
}

// DeletePipeline deletes a pipeline without runs in progress; the runs' records stay.
func (s *Service) DeletePipeline(ctx context.Context, name string) error {
	if _, err := s.store.FindPipeline(ctx, name); err != nil {
		return err
	}
	active, err := s.store.FindActivePipelineRuns(ctx)
	if err != nil {
		return err
	}
	for _, r := range active {
		if r.Pipeline == name {
			return slipway.Errorf(slipway.ECONFLICT, "pipeline %s has a run in progress (%s): cancel it first", name, r.ID)
		}
	}
	return s.store.DeletePipeline(ctx, name)
}

// RunPipeline starts a run with params merged over the pipeline's defaults.
func (s *Service) RunPipeline(ctx context.Context, name string, params map[string]any, trigger, by string) (*slipway.PipelineRun, error) {
	p, err := s.store.FindPipeline(ctx, name)
	if err != nil {
		return nil, err
	}
	resolved, err := ResolveParams(&p.Spec, params)
	if err != nil {
		return nil, err
	}
	if trigger == "" {
		trigger = "api"
	}
	now := s.now().UTC()
	r := &slipway.PipelineRun{ID: newID("pr"), Pipeline: p.Name, State: slipway.RunInProgress, Params: resolved,
		Trigger: trigger, CreatedAt: now, StartedAt: &now, CreatedBy: by, Spec: p.Spec, ArtifactDigest: p.ArtifactDigest}
	add := func(st slipway.StepSpec, onExit bool) {
		r.Steps = append(r.Steps, &slipway.StepRun{Name: st.Name, Kind: stepKind(st), DependsOn: st.DependsOn, OnExit: onExit,
			State: slipway.StepPending, Position: len(r.Steps)})
	}
	for _, st := range p.Spec.Steps {
		add(st, false)
	}
	if p.Spec.OnExit != nil {
		add(*p.Spec.OnExit, true)
	}
	// The lease before the run exists: no other server may take it for an orphan.
	if _, err := s.acquireRun(ctx, slipway.RunKindPipeline, r.ID, func() { s.lostPipelineRun(r.ID) }); err != nil {
		return nil, err // a fresh id's lease is free: only an error stops it
	}
	if err := s.store.CreatePipelineRun(ctx, r); err != nil {
		s.releaseRun(slipway.RunKindPipeline, r.ID)
		return nil, err
	}
	s.log.InfoContext(ctx, "pipeline run started", "pipeline", p.Name, "pipeline_run", r.ID, "trigger", trigger)
	s.startDriver(r.ID)
	return s.store.FindPipelineRun(ctx, r.ID)
}

func stepKind(st slipway.StepSpec) string {
	switch {
	case st.Job != "":
		return "job"
	case st.Script != "":
		return "script"
	}
	return "builtin:" + st.Builtin
}

// GetPipelineRun returns a run with its steps.
func (s *Service) GetPipelineRun(ctx context.Context, id string) (*slipway.PipelineRun, error) {
	return s.store.FindPipelineRun(ctx, id)
}

// ListPipelineRuns returns runs, newest first.
func (s *Service) ListPipelineRuns(ctx context.Context, pipeline string, offset, limit int) ([]*slipway.PipelineRun, int, error) {
	if pipeline != "" {
		if err := slipway.ValidateName("pipeline", pipeline); err != nil {
			return nil, 0, err
		}
	}
	return s.store.FindPipelineRuns(ctx, pipeline, offset, limit)
}

// CancelPipelineRun asks a run to stop: running steps are canceled, pending ones never start, then the
// on_exit step runs and the run ends CANCELED. It returns at once.
func (s *Service) CancelPipelineRun(ctx context.Context, id, by string) (*slipway.PipelineRun, error) {
	r, err := s.store.FindPipelineRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.State.Terminal() {
		return nil, slipway.Errorf(slipway.ECONFLICT, "pipeline run %s is already %s", id, r.State)
	}
	if err := s.store.RequestPipelineRunCancel(ctx, id, "canceled by "+by); err != nil {
		return nil, err
	}
	s.changed.notify()
	return s.store.FindPipelineRun(ctx, id)
}

// RetryPipelineRun resumes a FAILED or CANCELED run from its failed, skipped and canceled steps: steps that
// succeeded keep their outputs and do not run again. Each resumed step gets its full retry budget.
func (s *Service) RetryPipelineRun(ctx context.Context, id, by string) (*slipway.PipelineRun, error) {
	r, err := s.store.FindPipelineRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.State != slipway.RunFailed && r.State != slipway.RunCanceled {
		return nil, slipway.Errorf(slipway.ECONFLICT, "pipeline run %s is %s: only FAILED or CANCELED runs can be retried", id, r.State)
	}
	if s.driving(id) {
		return nil, slipway.Errorf(slipway.ECONFLICT, "pipeline run %s is still finishing: retry in a moment", id)
	}
	if owned, err := s.acquireRun(ctx, slipway.RunKindPipeline, id, func() { s.lostPipelineRun(id) }); err != nil {
		return nil, err
	} else if !owned {
		return nil, slipway.Errorf(slipway.ECONFLICT, "pipeline run %s is still finishing on another server: retry in a moment", id)
	}
	// Resumed (and so owned by this server) before its steps are reset: the store takes the steps' writes from
	// the run's owner only.
	if err := s.store.ResumePipelineRun(ctx, id); err != nil {
		s.releaseRun(slipway.RunKindPipeline, id)
		return nil, err
	}
	for _, st := range r.Steps {
		if st.State == slipway.StepSucceeded && !st.OnExit {
			continue
		}
		st.State, st.Reason, st.RetryBase = slipway.StepPending, "", st.Attempts
		st.FinishedAt, st.NextAttemptAt = nil, nil
		if err := s.store.UpdateStepRun(ctx, id, st); err != nil {
			s.startDriver(id) // it ends the run again from the steps as they are, and releases the lease
			return nil, err
		}
	}
	s.log.InfoContext(ctx, "pipeline run resumed from its failed steps", "pipeline_run", id, "by", by)
	s.startDriver(id)
	return s.store.FindPipelineRun(ctx, id)
}

package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// The `rollout` step starts a gated rollout (the body of POST /api/v1/deployments/{name}/rollouts) of
// with.version on with.deployment, follows its decisions into the step's reason, and ends as the rollout
// ends: SUCCEEDED when PROMOTED, FAILED with the rollout's reason when ROLLED_BACK or CANCELED. The rollout
// is tagged with the pipeline run and the step, so that a retried attempt (after a server restart, which
// ends a running built-in step) follows the same rollout instead of starting a second one. Cancelling the
// pipeline run, or the step's timeout, cancels the rollout; a server shutdown does not (it resumes with the
// server).

// Rollouts is the rollouts service as the `rollout` step uses it (nil: the step refuses to run).
type Rollouts interface {
	Start(ctx context.Context, deployment string, spec slipway.RolloutSpec, by string) (*slipway.Rollout, error)
	Get(ctx context.Context, deployment, id string) (*slipway.Rollout, error)
	List(ctx context.Context, deployment string) ([]*slipway.Rollout, error)
	Cancel(ctx context.Context, deployment, id, by string) (*slipway.Rollout, error)
}

// rolloutTag is the created_by of the rollout a step starts.
func rolloutTag(runID, step string) string { return fmt.Sprintf("pipeline:%s/%s", runID, step) }

// RolloutSpecOf reads a rollout step's resolved with.steps and with.gates. A step is an object
// ({"shadow": "10m"}, {"canary": 10, "for": "10m"}) or text ("shadow=10m", "canary=10:10m"); numbers may
// come as strings (a substituted ${params.x}).
func RolloutSpecOf(with map[string]any) (slipway.RolloutSpec, error) {
	var sp slipway.RolloutSpec
	steps, ok := with["steps"].([]any)
	if !ok {
		return sp, slipway.Errorf(slipway.EINVALID, "with.steps must be a list of steps, e.g. [\"shadow=10m\", \"canary=50:10m\"]")
	}
	for i, raw := range steps {
		st, err := rolloutStepOf(raw)
		if err != nil {
			return sp, slipway.Errorf(slipway.EINVALID, "with.steps[%d]: %v", i, err)
		}
		sp.Steps = append(sp.Steps, st)
	}
	if g, ok := with["gates"]; ok && g != nil {
		gates, ok := g.(map[string]any)
		if !ok {
			return sp, slipway.Errorf(slipway.EINVALID, "with.gates must be a map of gate to value, e.g. {max_error_rate: 0.01}")
		}
		if err := decodeNumbers(gates, &sp.Gates); err != nil {
			return sp, slipway.Errorf(slipway.EINVALID, "with.gates: %v", err)
		}
	}
	return sp, nil
}

func rolloutStepOf(raw any) (slipway.RolloutStep, error) {
	switch t := raw.(type) {
	case string:
		return slipway.ParseRolloutStep(t)
	case map[string]any:
		var st slipway.RolloutStep
		err := decodeNumbers(t, &st)
		return st, err
	}
	return slipway.RolloutStep{}, fmt.Errorf("a step is text (shadow=10m, canary=50:10m) or an object ({shadow: 10m} or {canary: 50, for: 10m}), not %T", raw)
}

// decodeNumbers decodes m into v strictly, reading numeric text as numbers first.
func decodeNumbers(m map[string]any, v any) error {
	w := make(map[string]any, len(m))
	for k, e := range m {
		if s, ok := e.(string); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				e = f
			}
		}
		w[k] = e
	}
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// builtinRollout runs a rollout step (see the top of this file).
func (s *Service) builtinRollout(ctx context.Context, run *slipway.PipelineRun, step string, with map[string]any, bs *builtinState) (map[string]any, error) {
	if s.cfg.Rollouts == nil || s.cfg.Deployer.Get == nil {
		return nil, slipway.Errorf(slipway.EUNAVAILABLE, "this server cannot run rollouts from pipelines")
	}
	name := str(with, "deployment")
	d, err := s.cfg.Deployer.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	spec, err := RolloutSpecOf(with)
	if err != nil {
		return nil, err
	}
	ref, err := versionRef(with["version"], "version")
	if err != nil {
		return nil, err
	}
	v, err := s.cfg.Models.FindVersion(ctx, d.Model, ref)
	if err != nil {
		return nil, err
	}
	spec.Version = v.Version
	tag := rolloutTag(run.ID, step)
	r, err := s.adoptRollout(ctx, name, tag, v.Version)
	if err != nil {
		return nil, err
	}
	if r == nil {
		if r, err = s.cfg.Rollouts.Start(ctx, name, spec, tag); err != nil {
			return nil, err
		}
	}
	return s.followRollout(ctx, r, bs)
}

// adoptRollout finds the rollout an earlier attempt of the step started, when it runs or promoted.
func (s *Service) adoptRollout(ctx context.Context, deployment, tag string, version int) (*slipway.Rollout, error) {
	rs, err := s.cfg.Rollouts.List(ctx, deployment)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if r.CreatedBy == tag && r.Version == version && (r.State == slipway.RolloutRunning || r.State == slipway.RolloutPromoted) {
			return r, nil
		}
	}
	return nil, nil
}

func rolloutOutputs(r *slipway.Rollout) map[string]any {
	return map[string]any{"rollout_id": r.ID, "deployment": r.Deployment, "state": string(r.State), "version": r.Version,
		"from_version": r.From, "reason": r.Reason}
}

// followRollout reports each new decision until the rollout ends.
func (s *Service) followRollout(ctx context.Context, r *slipway.Rollout, bs *builtinState) (map[string]any, error) {
	poll := s.cfg.BatchPoll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	shown := -1
	for {
		if len(r.Decisions) != shown && !r.State.Ended() {
			shown = len(r.Decisions)
			reason := fmt.Sprintf("rollout %s of version %d: RUNNING", r.ID, r.Version)
			if shown > 0 {
				reason += ": " + r.Decisions[shown-1].Message
			}
			s.report(bs, stepProgress{outputs: rolloutOutputs(r), reason: reason})
		}
		switch r.State {
		case slipway.RolloutPromoted:
			return rolloutOutputs(r), nil
		case slipway.RolloutRolledBack, slipway.RolloutCanceled:
			return rolloutOutputs(r), slipway.Errorf(slipway.ECONFLICT, "rollout %s of version %d %s: %s", r.ID, r.Version, r.State, r.Reason)
		}
		select {
		case <-ctx.Done():
			return rolloutOutputs(r), s.stopRollout(r, ctx.Err())
		case <-t.C:
		}
		next, err := s.cfg.Rollouts.Get(ctx, r.Deployment, r.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue // reported at the top of the loop
			}
			return rolloutOutputs(r), err
		}
		r = next
	}
}

// stopRollout cancels a step's rollout when the step was canceled or timed out; at a server shutdown the
// rollout carries on (it resumes with the server, and the retried step follows it).
func (s *Service) stopRollout(r *slipway.Rollout, cause error) error {
	if s.ctx.Err() != nil {
		return fmt.Errorf("server shutting down while rollout %s runs (it resumes with the server): %w", r.ID, cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Rollouts.Cancel(ctx, r.Deployment, r.ID, "pipeline step"); err != nil && slipway.ErrorCode(err) != slipway.ECONFLICT {
		return fmt.Errorf("step stopped (%v), and rollout %s could not be canceled: %w", cause, r.ID, err)
	}
	return fmt.Errorf("step stopped, rollout %s canceled: %w", r.ID, cause)
}

// validateRolloutWith checks a rollout step's with when the pipeline is created: the fields, and the steps
// and gates as far as they are written out (placeholders stand in for ${...}).
func validateRolloutWith(p *problems, st *slipway.StepSpec) {
	// steps: a list of text or objects (checkWith's "list" is of strings only), checked below.
	checkWith(p, st, map[string]string{"deployment": "string", "version": "scalar", "steps": "steps", "gates": "map"}, []string{"deployment", "version", "steps"})
	if _, ok := st.With["steps"].([]any); !ok {
		if st.With["steps"] != nil {
			p.add("step %s: with.steps must be a list of steps, e.g. [\"shadow=10m\", \"canary=50:10m\"]", st.Name)
		}
		return
	}
	if strings.Contains(fmt.Sprint(st.With["steps"], st.With["gates"]), "${") {
		return // checked when the step runs, once its references are resolved
	}
	sp, err := RolloutSpecOf(st.With)
	if err != nil {
		p.add("step %s: %s", st.Name, slipway.ErrorMessage(err))
		return
	}
	sp.Version = 1 // resolved when the step runs
	if err := sp.Validate(); err != nil {
		p.add("step %s: %s", st.Name, strings.TrimPrefix(slipway.ErrorMessage(err), "invalid rollout: "))
	}
}

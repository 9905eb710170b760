// Package rollout drives gated rollouts: a candidate version goes through a deployment's shadow and canaries
// step by step, each step's window is judged by gates (error rate, latency, agreement with the live version,
// accuracy from ground truth), a failed gate rolls back at once and a passed last step promotes.
//
// The traffic itself is the data plane's (internal/serving routes by the deployment's spec); each step is an
// update of that spec through internal/deploy, as a person's would be. The figures come from the monitor: the
// per-version totals (a canary's requests), the shadow comparison report, and performance from feedback.
// A rollout's progress is stored (slipway.RolloutStore) at every move, so a restarted server resumes it: a
// window that was cut by the restart starts over, since the request counts it was reading lived in the
// previous process's memory.
//
// With several servers, a rollout is driven by the server hosting its deployment (the holder of the
// deployment's lease, the one whose request counts it reads); the API forwards calls about it there.
package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// Deployments is what rollouts need of the deployment service.
type Deployments interface {
	Get(ctx context.Context, name string) (*slipway.Deployment, error)
	Update(ctx context.Context, name string, sp slipway.DeploymentSpec) (*slipway.Deployment, error)
	// AliasMoved rolls the other deployments that follow model@alias out to version.
	AliasMoved(ctx context.Context, model, alias string, version int)
}

// Models finds candidate versions and moves aliases at promotion.
type Models interface {
	FindVersion(ctx context.Context, model string, ref slipway.VersionRef) (*slipway.ModelVersion, error)
	SetAlias(ctx context.Context, model, alias string, version int, by string) (*slipway.AliasMove, error)
}

// Monitor gives the windows' figures and fires the deployment's alerts at a rollback.
type Monitor interface {
	VersionTotals(deployment string, version int) monitor.VersionTotals
	ShadowReport(ctx context.Context, deployment string, from, to time.Time) (*slipway.ShadowReport, error)
	VersionAccuracy(ctx context.Context, deployment string, version int, from, to time.Time) (*float64, int, error)
	// VersionEstimatedAccuracy is CBPE's label-free estimate over the version's captured rows of the window.
	VersionEstimatedAccuracy(ctx context.Context, deployment string, version int, from, to time.Time) (*float64, int, *slipway.EstimateReference, error)
	RolloutRolledBack(ctx context.Context, deployment, message string) error
}

// Config wires a Service.
type Config struct {
	Store       slipway.RolloutStore
	Deployments Deployments
	Models      Models
	Monitor     Monitor
	// Hosted says whether this server runs the deployment's replicas (and so counts its requests): only then
	// does it drive the deployment's rollout.
	Hosted func(deployment string) bool
	Log    *slog.Logger
	// Tick is how often running rollouts are looked at (default 500 ms).
	Tick time.Duration
}

// Service starts, drives and cancels rollouts. Run owns the driver goroutine.
type Service struct {
	cfg  Config
	now  func() time.Time
	wake chan struct{}

	mu      sync.Mutex         // one move at a time: the driver's steps and the API's cancels
	windows map[string]*window // by rollout id: the current window, as this process observes it
}

// window is what this process knows of a rollout's current window: the cumulative totals when it began (the
// request counts are in memory, so a window survives no restart) and whether its extension was recorded.
type window struct {
	step             int
	canaryAt, liveAt monitor.VersionTotals
	liveVersion      int
	extended         bool
}

// Phases of a step.
const (
	phaseStarting  = "starting"  // the step's canary or shadow is being set up and started
	phaseObserving = "observing" // its window runs
	phasePromoting = "promoting" // every step passed: the deployment is rolling out to the candidate
)

// New returns a Service; Run drives the rollouts.
func New(cfg Config) *Service {
	if cfg.Tick <= 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	if cfg.Hosted == nil {
		cfg.Hosted = func(string) bool { return true }
	}
	return &Service{cfg: cfg, now: time.Now, wake: make(chan struct{}, 1), windows: map[string]*window{}}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Start validates spec and starts a rollout of deployment to spec.Version.
func (s *Service) Start(ctx context.Context, deployment string, spec slipway.RolloutSpec, by string) (*slipway.Rollout, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	d, err := s.cfg.Deployments.Get(ctx, deployment)
	if err != nil {
		return nil, err
	}
	if err := s.checkCandidate(ctx, d, spec.Version); err != nil {
		return nil, err
	}
	switch {
	case d.State != slipway.DeploymentActive:
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s is %s: a rollout starts from an ACTIVE deployment", d.Name, d.State)
	case d.Canary != nil:
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s already has a canary (version %d): a rollout sets its own; remove it first (\"canary\": {\"weight\": 0})", d.Name, d.Canary.Version)
	case d.Shadow != nil:
		return nil, slipway.Errorf(slipway.ECONFLICT, "deployment %s already has a shadow (version %d): a rollout sets its own; remove it first (\"shadow\": {\"version\": 0})", d.Name, d.Shadow.Version)
	}
	now := s.now().UTC()
	r := &slipway.Rollout{ID: newID(), Deployment: d.Name, Model: d.Model, Version: spec.Version, From: d.Version,
		State: slipway.RolloutRunning, Steps: spec.Steps, Gates: spec.Gates.WithDefaults(), StepPhase: phaseStarting, CreatedBy: by,
		Decisions: []slipway.RolloutDecision{}}
	if err := s.cfg.Store.CreateRollout(ctx, r); err != nil {
		return nil, err
	}
	s.cfg.Log.Info("rollout started", "deployment", d.Name, "rollout", r.ID, "version", r.Version, "from_version", r.From, "at", now)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return decorate(r), nil
}

// checkCandidate refuses a version that does not exist, is not READY, or already serves.
func (s *Service) checkCandidate(ctx context.Context, d *slipway.Deployment, version int) error {
	v, err := s.cfg.Models.FindVersion(ctx, d.Model, slipway.VersionRef{Number: version})
	switch {
	case slipway.ErrorCode(err) == slipway.ENOTFOUND:
		return slipway.Errorf(slipway.EINVALID, "invalid rollout: version: model %s has no version %d", d.Model, version)
	case err != nil:
		return err
	case v.State != slipway.VersionReady:
		return slipway.Errorf(slipway.EINVALID, "invalid rollout: version: version %d of %s is %s: only READY versions are rolled out", version, d.Model, v.State)
	case version == d.Version:
		return slipway.Errorf(slipway.EINVALID, "invalid rollout: version: version %d already is deployment %s's version", version, d.Name)
	}
	return nil
}

// Get returns one rollout.
func (s *Service) Get(ctx context.Context, deployment, id string) (*slipway.Rollout, error) {
	r, err := s.cfg.Store.FindRollout(ctx, deployment, id)
	if err != nil {
		return nil, err
	}
	return decorate(r), nil
}

// MaxListed bounds a list of a deployment's rollouts.
const MaxListed = 100

// List returns a deployment's rollouts, newest first.
func (s *Service) List(ctx context.Context, deployment string) ([]*slipway.Rollout, error) {
	if _, err := s.cfg.Deployments.Get(ctx, deployment); err != nil {
		return nil, err
	}
	rs, err := s.cfg.Store.FindRollouts(ctx, deployment, MaxListed)
	for _, r := range rs {
		decorate(r)
	}
	if rs == nil {
		rs = []*slipway.Rollout{}
	}
	return rs, err
}

func decorate(r *slipway.Rollout) *slipway.Rollout {
	r.CurrentStep = nil
	if r.State == slipway.RolloutRunning && r.Step < len(r.Steps) {
		st := r.Steps[r.Step]
		r.CurrentStep = &st
	}
	if r.Decisions == nil {
		r.Decisions = []slipway.RolloutDecision{}
	}
	return r
}

// Cancel ends a running rollout: its canary or shadow is removed and the deployment keeps its version.
func (s *Service) Cancel(ctx context.Context, deployment, id, by string) (*slipway.Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.cfg.Store.FindRollout(ctx, deployment, id)
	if err != nil {
		return nil, err
	}
	switch {
	case r.State.Ended():
		return nil, slipway.Errorf(slipway.ECONFLICT, "rollout %s is already %s", id, r.State)
	case r.StepPhase == phasePromoting:
		return nil, slipway.Errorf(slipway.ECONFLICT, "rollout %s passed every step and is promoting version %d: it can no longer be canceled", id, r.Version)
	}
	if err := s.end(ctx, r, slipway.RolloutCanceled, slipway.RolloutDecision{Action: slipway.RolloutCancel,
		Message: fmt.Sprintf("canceled by %s at step %d (%s); version %d keeps serving", by, r.Step+1, r.Steps[r.Step], r.From)}); err != nil {
		return nil, err
	}
	return decorate(r), nil
}

// Run drives the running rollouts until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		s.Step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Step moves every running rollout this server drives as far as it can now.
func (s *Service) Step(ctx context.Context) {
	rs, err := s.cfg.Store.FindRunningRollouts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Warn("rollouts: list the running ones", "error", err)
		}
		return
	}
	running := map[string]bool{}
	for _, r := range rs {
		running[r.ID] = true
		if !s.cfg.Hosted(r.Deployment) {
			continue
		}
		if err := s.advance(ctx, r.Deployment, r.ID); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("rollout not advanced", "deployment", r.Deployment, "rollout", r.ID, "error", err)
		}
	}
	s.mu.Lock()
	for id := range s.windows {
		if !running[id] {
			delete(s.windows, id)
		}
	}
	s.mu.Unlock()
}

// advance takes the next move of one rollout, reading it afresh under the lock (a cancel may have ended it).
func (s *Service) advance(ctx context.Context, deployment, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.cfg.Store.FindRollout(ctx, deployment, id)
	if err != nil || r.State.Ended() {
		return err
	}
	d, err := s.cfg.Deployments.Get(ctx, deployment)
	if err != nil {
		return err
	}
	if r.Step >= len(r.Steps) {
		return s.promote(ctx, r, d)
	}
	switch d.State {
	case slipway.DeploymentActive, slipway.DeploymentNeedsAttention:
	default:
		return nil // an update is running (ours or a person's), or the deployment is not serving: wait
	}
	step := r.Steps[r.Step]
	if !hasSide(d, r, step) {
		if r.StepPhase == phaseObserving {
			return s.rollBack(ctx, r, d, slipway.RolloutDecision{Action: slipway.RolloutCancel,
				Message: fmt.Sprintf("the deployment's %s was changed outside the rollout during step %d (%s)", step.Kind(), r.Step+1, step)}, slipway.RolloutCanceled)
		}
		_, err := s.cfg.Deployments.Update(ctx, d.Name, sideSpec(d, r, step))
		if err != nil {
			return s.rollBack(ctx, r, d, slipway.RolloutDecision{Action: slipway.RolloutFailed,
				Message: fmt.Sprintf("step %d (%s) could not start: %s", r.Step+1, step, slipway.ErrorMessage(err))}, slipway.RolloutRolledBack)
		}
		return nil
	}
	if !sideReady(d, r.Version) {
		reason := d.Reason
		if reason == "" {
			reason = fmt.Sprintf("no replica of version %d is ready", r.Version)
		}
		return s.rollBack(ctx, r, d, slipway.RolloutDecision{Action: slipway.RolloutFailed,
			Message: fmt.Sprintf("the %s of step %d (%s) did not start: %s", step.Kind(), r.Step+1, step, reason)}, slipway.RolloutRolledBack)
	}
	w := s.windows[r.ID]
	if r.StepPhase != phaseObserving || w == nil || w.step != r.Step {
		return s.openWindow(ctx, r, d, step)
	}
	return s.judge(ctx, r, d, step, w)
}

// hasSide says whether d's spec has the step's canary or shadow of the candidate (and not the other).
func hasSide(d *slipway.Deployment, r *slipway.Rollout, step slipway.RolloutStep) bool {
	if step.Shadow != nil {
		return d.Shadow != nil && d.Shadow.Version == r.Version && d.Shadow.Compare && d.Canary == nil
	}
	return d.Canary != nil && d.Canary.Version == r.Version && d.Canary.Weight == step.Canary && d.Shadow == nil
}

// sideSpec is the update that gives d the step's canary or shadow (with as many replicas as d) and removes
// the previous step's.
func sideSpec(d *slipway.Deployment, r *slipway.Rollout, step slipway.RolloutStep) slipway.DeploymentSpec {
	replicas := max(d.Replicas, 1)
	note := fmt.Sprintf("rollout %s: step %d of %d (%s) of version %d", r.ID, r.Step+1, len(r.Steps), step, r.Version)
	if step.Shadow != nil {
		return slipway.DeploymentSpec{Shadow: &slipway.Shadow{Version: r.Version, Replicas: replicas, Compare: true},
			Canary: &slipway.Canary{}, Note: note}
	}
	return slipway.DeploymentSpec{Canary: &slipway.Canary{Version: r.Version, Weight: step.Canary, Replicas: replicas},
		Shadow: &slipway.Shadow{}, Note: note}
}

// sideReady says whether a replica of version serves in d (its canary's or shadow's: the deployment's own
// version is another).
func sideReady(d *slipway.Deployment, version int) bool {
	for _, rs := range d.ReplicaStatus {
		if rs.Version == version && rs.State == "READY" {
			return true
		}
	}
	return false
}

// openWindow begins the step's window now: the step's side serves, or a restarted server resumes the step.
func (s *Service) openWindow(ctx context.Context, r *slipway.Rollout, d *slipway.Deployment, step slipway.RolloutStep) error {
	now := s.now().UTC()
	dec := slipway.RolloutDecision{Action: slipway.RolloutStepStarted,
		Message: fmt.Sprintf("step %d of %d (%s): the %s of version %d serves beside version %d; its window ends at %s at the earliest",
			r.Step+1, len(r.Steps), step, step.Kind(), r.Version, d.Version, now.Add(step.Duration()).Format(time.RFC3339))}
	if r.StepPhase == phaseObserving {
		dec.Action = slipway.RolloutResumed
		dec.Message = fmt.Sprintf("step %d of %d (%s) resumed by this server: its window starts over (the request counts of the previous window were in another process's memory)",
			r.Step+1, len(r.Steps), step)
	}
	r.StepPhase, r.StepStartedAt = phaseObserving, &now
	if err := s.record(ctx, r, dec); err != nil {
		return err
	}
	s.windows[r.ID] = &window{step: r.Step, liveVersion: d.Version,
		canaryAt: s.cfg.Monitor.VersionTotals(d.Name, r.Version), liveAt: s.cfg.Monitor.VersionTotals(d.Name, d.Version)}
	return nil
}

// judge applies the gates once the window has lasted the step's duration.
func (s *Service) judge(ctx context.Context, r *slipway.Rollout, d *slipway.Deployment, step slipway.RolloutStep, w *window) error {
	now := s.now().UTC()
	from := *r.StepStartedAt
	if now.Sub(from) < step.Duration() {
		return nil
	}
	v, err := s.measure(ctx, r, d, step, w, from, now)
	if err != nil {
		return err
	}
	win := &slipway.RolloutWindow{From: from, To: now}
	where := fmt.Sprintf("step %d of %d (%s)", r.Step+1, len(r.Steps), step)
	switch {
	case !v.Enough && now.Sub(from) < 3*step.Duration():
		if !w.extended {
			w.extended = true
			return s.record(ctx, r, slipway.RolloutDecision{Action: slipway.RolloutExtended, Window: win, Checks: v.Checks,
				Message: fmt.Sprintf("%s extended: %s; judged once enough have arrived (rolled back as inconclusive after %s)", where, v.Summary, 3*step.Duration())})
		}
		return nil
	case !v.Enough:
		return s.rollBack(ctx, r, d, slipway.RolloutDecision{Action: slipway.RolloutFailed, Window: win, Checks: v.Checks,
			Message: fmt.Sprintf("%s inconclusive after %s: %s", where, now.Sub(from).Round(time.Second), v.Summary)}, slipway.RolloutRolledBack)
	case !v.Passed:
		return s.rollBack(ctx, r, d, slipway.RolloutDecision{Action: slipway.RolloutFailed, Window: win, Checks: v.Checks,
			Message: fmt.Sprintf("%s failed: %s", where, v.Summary)}, slipway.RolloutRolledBack)
	}
	s.appendDecision(r, slipway.RolloutDecision{Time: now, Action: slipway.RolloutPassed, Window: win, Checks: v.Checks,
		Message: fmt.Sprintf("%s passed: %s", where, v.Summary)})
	r.Step++
	r.StepPhase, r.StepStartedAt = phaseStarting, nil
	delete(s.windows, r.ID)
	return s.save(ctx, r)
}

// measure reads the window's figures and applies the gates.
func (s *Service) measure(ctx context.Context, r *slipway.Rollout, d *slipway.Deployment, step slipway.RolloutStep, w *window, from, to time.Time) (Verdict, error) {
	if step.Shadow != nil {
		rep, err := s.cfg.Monitor.ShadowReport(ctx, d.Name, from, to)
		if err != nil {
			return Verdict{}, fmt.Errorf("shadow report of %s: %w", d.Name, err)
		}
		return JudgeShadow(r.Gates, rep), nil
	}
	cw := CanaryWindow{CanaryVersion: r.Version, LiveVersion: w.liveVersion,
		Canary: s.cfg.Monitor.VersionTotals(d.Name, r.Version).Sub(w.canaryAt),
		Live:   s.cfg.Monitor.VersionTotals(d.Name, w.liveVersion).Sub(w.liveAt)}
	if r.Gates.MaxAccuracyDrop != nil {
		var err error
		if cw.CanaryAccuracy, cw.CanaryLabelled, err = s.cfg.Monitor.VersionAccuracy(ctx, d.Name, r.Version, from, to); err != nil {
			return Verdict{}, fmt.Errorf("accuracy of version %d: %w", r.Version, err)
		}
		if cw.LiveAccuracy, cw.LiveLabelled, err = s.cfg.Monitor.VersionAccuracy(ctx, d.Name, w.liveVersion, from, to); err != nil {
			return Verdict{}, fmt.Errorf("accuracy of version %d: %w", w.liveVersion, err)
		}
	}
	needEstimate := r.Gates.MaxEstimatedAccuracyDrop != nil ||
		r.Gates.MaxAccuracyDrop != nil && (cw.CanaryAccuracy == nil || cw.LiveAccuracy == nil) // no truth yet: the estimate stands in
	if needEstimate {
		var err error
		if cw.CanaryEstimate, cw.CanaryEstRows, cw.CanaryReference, err = s.cfg.Monitor.VersionEstimatedAccuracy(ctx, d.Name, r.Version, from, to); err != nil {
			return Verdict{}, fmt.Errorf("estimated accuracy of version %d: %w", r.Version, err)
		}
		if cw.LiveEstimate, cw.LiveEstRows, cw.LiveReference, err = s.cfg.Monitor.VersionEstimatedAccuracy(ctx, d.Name, w.liveVersion, from, to); err != nil {
			return Verdict{}, fmt.Errorf("estimated accuracy of version %d: %w", w.liveVersion, err)
		}
	}
	return JudgeCanary(r.Gates, cw), nil
}

// promote makes the candidate the deployment's version once every step passed: by moving the alias when the
// deployment follows one (other deployments following it move too), else by setting the version; the
// canary and shadow are removed in the same update, so requests never reach a side being torn down alone.
func (s *Service) promote(ctx context.Context, r *slipway.Rollout, d *slipway.Deployment) error {
	if r.StepPhase != phasePromoting {
		if d.State == slipway.DeploymentUpdating || d.State == slipway.DeploymentCreating {
			return nil
		}
		if d.Version != r.Version {
			if err := s.requestPromotion(ctx, r, d); err != nil {
				return s.rollBack(ctx, r, d, slipway.RolloutDecision{Action: slipway.RolloutFailed,
					Message: fmt.Sprintf("every step passed, but the promotion to version %d was refused: %s", r.Version, slipway.ErrorMessage(err))}, slipway.RolloutRolledBack)
			}
		}
		r.StepPhase = phasePromoting
		return s.save(ctx, r)
	}
	switch {
	case d.State == slipway.DeploymentUpdating || d.State == slipway.DeploymentCreating:
		return nil
	case d.Version == r.Version:
		how := fmt.Sprintf("version %d is the deployment's", r.Version)
		if d.FollowAlias && d.Alias != "" {
			how = fmt.Sprintf("@%s moved to version %d, which the deployment follows", d.Alias, r.Version)
		}
		return s.end(ctx, r, slipway.RolloutPromoted, slipway.RolloutDecision{Action: slipway.RolloutPromote,
			Message: fmt.Sprintf("every step passed: %s (was %d)", how, r.From)})
	}
	msg := fmt.Sprintf("every step passed, but version %d did not start as the deployment's: %s", r.Version, d.Reason)
	if d.FollowAlias && d.Alias != "" {
		msg += "; " + s.restoreAlias(ctx, r, d)
	}
	return s.rollBack(ctx, r, d, slipway.RolloutDecision{Action: slipway.RolloutFailed, Message: msg}, slipway.RolloutRolledBack)
}

// restoreAlias moves the alias a failed promotion moved back to the version it named before, so that the
// deployment (and the others following it) do not roll out to the rejected candidate later, at a restart.
func (s *Service) restoreAlias(ctx context.Context, r *slipway.Rollout, d *slipway.Deployment) string {
	if _, err := s.cfg.Models.SetAlias(context.WithoutCancel(ctx), d.Model, d.Alias, r.From, "rollout:"+r.ID); err != nil {
		s.cfg.Log.Error("rollout: move the alias back", "deployment", d.Name, "alias", d.Alias, "error", err)
		return fmt.Sprintf("@%s could not be moved back to version %d: %v", d.Alias, r.From, err)
	}
	s.cfg.Deployments.AliasMoved(context.WithoutCancel(ctx), d.Model, d.Alias, r.From)
	return fmt.Sprintf("@%s moved back to version %d", d.Alias, r.From)
}

func (s *Service) requestPromotion(ctx context.Context, r *slipway.Rollout, d *slipway.Deployment) error {
	note := fmt.Sprintf("rollout %s promoted version %d (was %d) after %d passed steps", r.ID, r.Version, r.From, len(r.Steps))
	none := slipway.DeploymentSpec{Canary: &slipway.Canary{}, Shadow: &slipway.Shadow{}, Note: note}
	if d.FollowAlias && d.Alias != "" {
		if _, err := s.cfg.Models.SetAlias(ctx, d.Model, d.Alias, r.Version, "rollout:"+r.ID); err != nil {
			return fmt.Errorf("move @%s: %w", d.Alias, err)
		}
		alias, follow := d.Alias, true
		none.Alias, none.FollowAlias = &alias, &follow
		if _, err := s.cfg.Deployments.Update(ctx, d.Name, none); err != nil {
			return fmt.Errorf("%w; %s", err, s.restoreAlias(ctx, r, d))
		}
		s.cfg.Deployments.AliasMoved(ctx, d.Model, d.Alias, r.Version) // the other deployments that follow it
		return nil
	}
	v := r.Version
	none.Version = &v
	_, err := s.cfg.Deployments.Update(ctx, d.Name, none)
	return err
}

// rollBack ends r in state (ROLLED_BACK, or CANCELED when the deployment changed under it) and removes its
// canary or shadow; a rollback fires the deployment's alerts. The end is recorded first: a crash between
// the two leaves a side the next update removes, never a rollout that runs on after its gate failed.
func (s *Service) rollBack(ctx context.Context, r *slipway.Rollout, d *slipway.Deployment, dec slipway.RolloutDecision, state slipway.RolloutState) error {
	if dec.Action == slipway.RolloutFailed {
		if err := s.record(ctx, r, dec); err != nil {
			return err
		}
		dec = slipway.RolloutDecision{Action: slipway.RolloutRollback,
			Message: fmt.Sprintf("rolled back: version %d keeps serving, its canary or shadow of version %d is removed", d.Version, r.Version)}
		r.Reason = r.Decisions[len(r.Decisions)-1].Message
	}
	if err := s.end(ctx, r, state, dec); err != nil {
		return err
	}
	if state == slipway.RolloutRolledBack {
		msg := fmt.Sprintf("rollout %s of version %d rolled back: %s", r.ID, r.Version, r.Reason)
		if err := s.cfg.Monitor.RolloutRolledBack(context.WithoutCancel(ctx), d.Name, msg); err != nil {
			s.cfg.Log.Error("rollout rolled back, but the alerts did not fire", "deployment", d.Name, "rollout", r.ID, "error", err)
		}
	}
	return nil
}

// end records r's end and removes its side from the deployment (when it still has one of r's version).
func (s *Service) end(ctx context.Context, r *slipway.Rollout, state slipway.RolloutState, dec slipway.RolloutDecision) error {
	now := s.now().UTC()
	if r.Reason == "" {
		r.Reason = dec.Message
	}
	r.State, r.EndedAt = state, &now
	if err := s.record(ctx, r, dec); err != nil {
		return err
	}
	delete(s.windows, r.ID)
	s.cfg.Log.Info("rollout ended", "deployment", r.Deployment, "rollout", r.ID, "state", r.State, "reason", r.Reason)
	if state == slipway.RolloutPromoted {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	d, err := s.cfg.Deployments.Get(ctx, r.Deployment)
	if err != nil {
		return nil // deleted meanwhile: nothing left to remove
	}
	if (d.Canary == nil || d.Canary.Version != r.Version) && (d.Shadow == nil || d.Shadow.Version != r.Version) {
		return nil
	}
	note := fmt.Sprintf("rollout %s %s: %s", r.ID, state, r.Reason)
	if _, err := s.cfg.Deployments.Update(ctx, r.Deployment, slipway.DeploymentSpec{Canary: &slipway.Canary{}, Shadow: &slipway.Shadow{}, Note: note}); err != nil {
		s.cfg.Log.Error("rollout ended, but its canary or shadow was not removed", "deployment", r.Deployment, "rollout", r.ID, "error", err)
		return fmt.Errorf("remove the canary or shadow of rollout %s: %w", r.ID, err)
	}
	return nil
}

// record appends a decision and stores r (compare-and-set on RUNNING: a cancel that won is not overwritten).
func (s *Service) record(ctx context.Context, r *slipway.Rollout, dec slipway.RolloutDecision) error {
	s.appendDecision(r, dec)
	return s.save(ctx, r)
}

// appendDecision adds dec, taken at the current step, to r's decisions (the oldest dropped beyond the bound).
func (s *Service) appendDecision(r *slipway.Rollout, dec slipway.RolloutDecision) {
	if dec.Time.IsZero() {
		dec.Time = s.now().UTC()
	}
	dec.Step = r.Step
	if len(r.Decisions) >= slipway.MaxRolloutDecisions {
		r.Decisions = r.Decisions[len(r.Decisions)-slipway.MaxRolloutDecisions+1:]
	}
	r.Decisions = append(r.Decisions, dec)
	s.cfg.Log.Info("rollout decision", "deployment", r.Deployment, "rollout", r.ID, "step", dec.Step, "action", dec.Action, "message", dec.Message)
}

func (s *Service) save(ctx context.Context, r *slipway.Rollout) error {
	return s.cfg.Store.UpdateRollout(context.WithoutCancel(ctx), r, slipway.RolloutRunning)
}

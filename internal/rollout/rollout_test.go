package rollout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// The driver's moves against a deployment service that applies specs at once (the serving side is the e2e
// tests'): what each step asks of the deployment, and how the rollout ends.

type memStore struct {
	mu sync.Mutex
	rs map[string]*slipway.Rollout
}

func (m *memStore) CreateRollout(_ context.Context, r *slipway.Rollout) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.rs {
		if o.Deployment == r.Deployment && o.State == slipway.RolloutRunning {
			return slipway.Errorf(slipway.ECONFLICT, "running")
		}
	}
	c := *r
	m.rs[r.ID] = &c
	return nil
}

func (m *memStore) FindRollout(_ context.Context, dep, id string) (*slipway.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rs[id]
	if !ok || r.Deployment != dep {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "rollout %s not found", id)
	}
	c := *r
	c.Decisions = append([]slipway.RolloutDecision(nil), r.Decisions...)
	return &c, nil
}

func (m *memStore) FindRollouts(ctx context.Context, dep string, _ int) ([]*slipway.Rollout, error) {
	var out []*slipway.Rollout
	for id := range m.rs {
		r, _ := m.FindRollout(ctx, dep, id)
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memStore) FindRunningRollouts(ctx context.Context) ([]*slipway.Rollout, error) {
	var out []*slipway.Rollout
	for _, r := range m.rs {
		if r.State == slipway.RolloutRunning {
			c, _ := m.FindRollout(ctx, r.Deployment, r.ID)
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *memStore) UpdateRollout(_ context.Context, r *slipway.Rollout, from slipway.RolloutState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rs[r.ID].State != from {
		return slipway.Errorf(slipway.ECONFLICT, "moved")
	}
	c := *r
	m.rs[r.ID] = &c
	return nil
}

// fakeDeployments applies a spec at once; failSide makes a side of that version start without a ready replica.
type fakeDeployments struct {
	d        *slipway.Deployment
	failSide int
	updates  []slipway.DeploymentSpec
	moved    []int          // AliasMoved versions
	aliases  map[string]int // the model's aliases (shared with fakeModels)
	reject   int            // a version whose replicas do not start as the deployment's: the update is rejected
}

func (f *fakeDeployments) Get(context.Context, string) (*slipway.Deployment, error) {
	c := *f.d
	c.ReplicaStatus = []slipway.ReplicaStatus{{Version: f.d.Version, State: "READY"}}
	for _, side := range []int{sideVersion(f.d.Canary), shadowVersion(f.d.Shadow)} {
		if side != 0 && side != f.failSide {
			c.ReplicaStatus = append(c.ReplicaStatus, slipway.ReplicaStatus{Version: side, State: "READY"})
		}
	}
	return &c, nil
}

func sideVersion(c *slipway.Canary) int {
	if c == nil {
		return 0
	}
	return c.Version
}

func shadowVersion(s *slipway.Shadow) int {
	if s == nil {
		return 0
	}
	return s.Version
}

func (f *fakeDeployments) Update(_ context.Context, _ string, sp slipway.DeploymentSpec) (*slipway.Deployment, error) {
	f.updates = append(f.updates, sp)
	d := f.d
	prev := d.Version
	if sp.Version != nil {
		d.Version, d.Alias, d.FollowAlias = *sp.Version, "", false
	}
	if sp.Alias != nil {
		d.Alias = *sp.Alias
		d.Version = f.aliases[d.Alias] // the deployment resolves the alias
	}
	if sp.FollowAlias != nil {
		d.FollowAlias = *sp.FollowAlias
	}
	if c := sp.Canary; c != nil {
		d.Canary = nil
		if c.Version != 0 {
			cc := *c
			d.Canary = &cc
		}
	}
	if sh := sp.Shadow; sh != nil {
		d.Shadow = nil
		if sh.Version != 0 {
			s := *sh
			d.Shadow = &s
		}
	}
	d.Reason = sp.Note
	if f.reject != 0 && d.Version == f.reject {
		d.Version, d.Reason = prev, fmt.Sprintf("update rejected, still serving version %d: replica exited", prev)
	}
	return f.Get(context.Background(), d.Name)
}

func (f *fakeDeployments) AliasMoved(_ context.Context, _, _ string, v int) {
	f.moved = append(f.moved, v)
}

type fakeModels struct {
	aliases map[string]int
}

func (m *fakeModels) FindVersion(_ context.Context, model string, ref slipway.VersionRef) (*slipway.ModelVersion, error) {
	if ref.Number > 5 {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "no version")
	}
	return &slipway.ModelVersion{Model: model, Version: ref.Number, State: slipway.VersionReady}, nil
}

func (m *fakeModels) SetAlias(_ context.Context, _, alias string, v int, _ string) (*slipway.AliasMove, error) {
	m.aliases[alias] = v
	return &slipway.AliasMove{Alias: alias, Version: v}, nil
}

// fakeMonitor counts requests per version: each Tick adds n requests (errs of them 5xx) to the candidate.
type fakeMonitor struct {
	totals   map[int]monitor.VersionTotals
	rolled   []string
	agreeing float64
	// estimated is CBPE's estimated accuracy per version (absent: nothing to estimate), over 100 rows.
	estimated map[int]float64
}

func (m *fakeMonitor) VersionTotals(_ string, v int) monitor.VersionTotals { return m.totals[v] }
func (m *fakeMonitor) ShadowReport(context.Context, string, time.Time, time.Time) (*slipway.ShadowReport, error) {
	a := m.agreeing
	return &slipway.ShadowReport{Requests: 100, Compared: 100, Agreement: &a}, nil
}
func (m *fakeMonitor) VersionAccuracy(context.Context, string, int, time.Time, time.Time) (*float64, int, error) {
	return nil, 0, nil
}
func (m *fakeMonitor) VersionEstimatedAccuracy(_ context.Context, _ string, v int, _, _ time.Time) (*float64, int, *slipway.EstimateReference, error) {
	acc, ok := m.estimated[v]
	if !ok {
		return nil, 0, nil, nil
	}
	return &acc, 100, &slipway.EstimateReference{Version: v, Calibration: "none"}, nil
}
func (m *fakeMonitor) RolloutRolledBack(_ context.Context, _, msg string) error {
	m.rolled = append(m.rolled, msg)
	return nil
}

type harness struct {
	svc  *Service
	deps *fakeDeployments
	mods *fakeModels
	mon  *fakeMonitor
	now  time.Time
}

func newHarness(d *slipway.Deployment) *harness {
	h := &harness{deps: &fakeDeployments{d: d}, mon: &fakeMonitor{totals: map[int]monitor.VersionTotals{}, agreeing: 1},
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.mods = &fakeModels{aliases: map[string]int{"champion": d.Version}}
	h.deps.aliases = h.mods.aliases
	h.svc = New(Config{Store: &memStore{rs: map[string]*slipway.Rollout{}}, Deployments: h.deps, Models: h.mods, Monitor: h.mon,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h.svc.now = func() time.Time { return h.now }
	return h
}

// run advances the clock by step and drives, n times; the candidate answers perStep requests (errs 5xx) each time.
func (h *harness) run(t *testing.T, id string, n int, step time.Duration, version int, perStep, errs int64) *slipway.Rollout {
	t.Helper()
	for range n {
		tot := h.mon.totals[version]
		tot.Requests += perStep
		tot.Errors += errs
		h.mon.totals[version] = tot
		h.now = h.now.Add(step)
		h.svc.Step(context.Background())
	}
	r, err := h.svc.Get(context.Background(), h.deps.d.Name, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func spec(version int, steps ...string) slipway.RolloutSpec {
	sp := slipway.RolloutSpec{Version: version}
	for _, s := range steps {
		st, err := slipway.ParseRolloutStep(s)
		if err != nil {
			panic(err)
		}
		sp.Steps = append(sp.Steps, st)
	}
	return sp
}

func active(version int) *slipway.Deployment {
	return &slipway.Deployment{Name: "churn-api", Model: "churn", Version: version, Replicas: 2, State: slipway.DeploymentActive}
}

func TestRolloutPromotesAPinnedDeploymentBySettingItsVersion(t *testing.T) {
	h := newHarness(active(1))
	r, err := h.svc.Start(context.Background(), "churn-api", spec(2, "shadow=10s", "canary=30:10s"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	r = h.run(t, r.ID, 40, time.Second, 2, 10, 0)
	if r.State != slipway.RolloutPromoted || h.deps.d.Version != 2 || h.deps.d.Canary != nil || h.deps.d.Shadow != nil {
		t.Fatalf("rollout %s (%s), deployment %+v", r.State, r.Reason, h.deps.d)
	}
	first := h.deps.updates[0]
	if first.Shadow == nil || first.Shadow.Version != 2 || !first.Shadow.Compare || first.Shadow.Replicas != 2 {
		t.Errorf("the shadow step's update: %+v", first.Shadow)
	}
	second := h.deps.updates[1]
	if second.Canary == nil || second.Canary.Weight != 30 || second.Shadow == nil || second.Shadow.Version != 0 {
		t.Errorf("the canary step's update removes the shadow: %+v", second)
	}
	if last := h.deps.updates[len(h.deps.updates)-1]; last.Version == nil || *last.Version != 2 || h.mods.aliases["champion"] != 1 {
		t.Errorf("a pinned deployment is promoted by its version, the alias stays: %+v, @champion %d", last, h.mods.aliases["champion"])
	}
	var actions []string
	for _, d := range r.Decisions {
		actions = append(actions, d.Action)
	}
	if got := strings.Join(actions, ","); got != "step_started,passed,step_started,passed,promoted" {
		t.Errorf("decisions: %s", got)
	}
}

func TestRolloutFollowingAnAliasMovesIt(t *testing.T) {
	d := active(1)
	d.Alias, d.FollowAlias = "champion", true
	h := newHarness(d)
	r, _ := h.svc.Start(context.Background(), "churn-api", spec(2, "canary=50:5s"), "alice")
	r = h.run(t, r.ID, 10, time.Second, 2, 10, 0)
	if r.State != slipway.RolloutPromoted || h.mods.aliases["champion"] != 2 || h.deps.d.Version != 2 || len(h.deps.moved) != 1 {
		t.Fatalf("rollout %s (%s); @champion %d, deployment version %d, alias moves %v", r.State, r.Reason, h.mods.aliases["champion"], h.deps.d.Version, h.deps.moved)
	}
	if last := h.deps.updates[len(h.deps.updates)-1]; last.Version != nil || last.Alias == nil || last.FollowAlias == nil || !*last.FollowAlias {
		t.Errorf("the promotion must keep the deployment following: %+v", last)
	}
}

func TestRolloutRollsBackWithAlertsAndEvidence(t *testing.T) {
	h := newHarness(active(1))
	r, _ := h.svc.Start(context.Background(), "churn-api", spec(2, "canary=50:5s", "canary=90:5s"), "alice")
	r = h.run(t, r.ID, 10, time.Second, 2, 10, 2) // 20% errors
	failed := r.Decisions[len(r.Decisions)-2]
	if r.State != slipway.RolloutRolledBack || failed.Action != slipway.RolloutFailed || failed.Window == nil ||
		h.deps.d.Canary != nil || h.deps.d.Version != 1 || len(h.mon.rolled) != 1 || !strings.Contains(h.mon.rolled[0], "max_error_rate") {
		t.Fatalf("rollout %s (%s), deployment %+v, alerts %v", r.State, r.Reason, h.deps.d, h.mon.rolled)
	}
}

func TestRolloutSideThatDoesNotStartRollsBack(t *testing.T) {
	h := newHarness(active(1))
	h.deps.failSide = 2
	r, _ := h.svc.Start(context.Background(), "churn-api", spec(2, "shadow=5s"), "alice")
	r = h.run(t, r.ID, 3, time.Second, 2, 0, 0)
	if r.State != slipway.RolloutRolledBack || !strings.Contains(r.Reason, "did not start") || h.deps.d.Shadow != nil {
		t.Fatalf("rollout %s (%s), deployment %+v", r.State, r.Reason, h.deps.d)
	}
}

func TestRolloutTooFewRequestsIsExtendedThenInconclusive(t *testing.T) {
	h := newHarness(active(1))
	r, _ := h.svc.Start(context.Background(), "churn-api", spec(2, "canary=10:10s"), "alice")
	r = h.run(t, r.ID, 15, time.Second, 2, 1, 0) // 15 requests in 14 s: fewer than the default 20
	if r.State != slipway.RolloutRunning || len(decisionsWith(r, slipway.RolloutExtended)) != 1 {
		t.Fatalf("after 15 s: %s, %+v", r.State, r.Decisions)
	}
	r = h.run(t, r.ID, 20, time.Second, 2, 0, 0)
	if r.State != slipway.RolloutRolledBack || !strings.Contains(r.Reason, "inconclusive") {
		t.Fatalf("after 35 s: %s (%s)", r.State, r.Reason)
	}
}

func TestRolloutCancelAndRefusals(t *testing.T) {
	h := newHarness(active(1))
	ctx := context.Background()
	if _, err := h.svc.Start(ctx, "churn-api", spec(9, "shadow=5s"), "a"); slipway.ErrorCode(err) != slipway.EINVALID || !strings.Contains(err.Error(), "version: model churn has no version 9") {
		t.Errorf("unknown version: %v", err)
	}
	r, err := h.svc.Start(ctx, "churn-api", spec(2, "shadow=5s"), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Start(ctx, "churn-api", spec(3, "shadow=5s"), "a"); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Errorf("a second rollout while the shadow runs: %v", err) // the deployment has the first's shadow
	}
	h.run(t, r.ID, 2, time.Second, 2, 10, 0)
	r, err = h.svc.Cancel(ctx, "churn-api", r.ID, "bob")
	if err != nil || r.State != slipway.RolloutCanceled || h.deps.d.Shadow != nil || len(h.mon.rolled) != 0 {
		t.Fatalf("cancel: %+v %v; deployment %+v", r, err, h.deps.d)
	}
	if _, err := h.svc.Cancel(ctx, "churn-api", r.ID, "bob"); slipway.ErrorCode(err) != slipway.ECONFLICT {
		t.Errorf("cancel twice: %v", err)
	}
}

func decisionsWith(r *slipway.Rollout, action string) []slipway.RolloutDecision {
	var out []slipway.RolloutDecision
	for _, d := range r.Decisions {
		if d.Action == action {
			out = append(out, d)
		}
	}
	return out
}

func TestRolloutPromotionRejectedMovesTheAliasBack(t *testing.T) {
	d := active(1)
	d.Alias, d.FollowAlias = "champion", true
	h := newHarness(d)
	h.deps.reject = 2
	r, _ := h.svc.Start(context.Background(), "churn-api", spec(2, "canary=50:5s"), "alice")
	r = h.run(t, r.ID, 10, time.Second, 2, 10, 0)
	if r.State != slipway.RolloutRolledBack || h.mods.aliases["champion"] != 1 || h.deps.d.Version != 1 ||
		!strings.Contains(r.Reason, "@champion moved back to version 1") || len(h.mon.rolled) != 1 {
		t.Fatalf("rollout %s (%s); @champion %d, deployment version %d", r.State, r.Reason, h.mods.aliases["champion"], h.deps.d.Version)
	}
}

// Without ground truth, max_accuracy_drop is judged on CBPE's estimates, and the decision says so: a candidate
// estimated 20 points less accurate is rolled back before a single label has arrived.
func TestRolloutAccuracyGateFallsBackToTheEstimate(t *testing.T) {
	h := newHarness(active(1))
	h.mon.estimated = map[int]float64{1: 0.85, 2: 0.65}
	sp := spec(2, "canary=50:5s")
	sp.Gates.MaxAccuracyDrop = f(0.05)
	r, err := h.svc.Start(context.Background(), "churn-api", sp, "alice")
	if err != nil {
		t.Fatal(err)
	}
	r = h.run(t, r.ID, 10, time.Second, 2, 10, 0)
	failed := r.Decisions[len(r.Decisions)-2]
	c := failed.Checks[len(failed.Checks)-1]
	if r.State != slipway.RolloutRolledBack || c.Gate != "max_accuracy_drop" || c.Source != SourceEstimate || c.Passed ||
		!strings.Contains(c.Evidence, "no ground truth has arrived") || !strings.Contains(c.Evidence, "estimated accuracy (CBPE) 0.650") {
		t.Fatalf("rollout %s (%s), check %+v", r.State, r.Reason, c)
	}
}

package slipway

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RolloutState is the lifecycle of a gated rollout: RUNNING until it ends PROMOTED (the candidate became the
// deployment's version), ROLLED_BACK (a gate failed: the candidate was removed) or CANCELED (by a person, or
// because the deployment changed under it).
type RolloutState string

const (
	RolloutRunning    RolloutState = "RUNNING"
	RolloutPromoted   RolloutState = "PROMOTED"
	RolloutRolledBack RolloutState = "ROLLED_BACK"
	RolloutCanceled   RolloutState = "CANCELED"
)

// CanMoveTo reports whether a rollout may go from s to to: only a RUNNING one moves, and it ends once.
func (s RolloutState) CanMoveTo(to RolloutState) bool {
	return s == RolloutRunning && slices.Contains([]RolloutState{RolloutRunning, RolloutPromoted, RolloutRolledBack, RolloutCanceled}, to)
}

// Ended says whether the rollout is over.
func (s RolloutState) Ended() bool { return s != RolloutRunning }

// Limits of a rollout request.
const (
	MaxRolloutSteps       = 10
	MaxRolloutStepTime    = 7 * 24 * time.Hour
	MinRolloutStepTime    = time.Second
	DefaultRolloutMaxErr  = 0.01
	DefaultRolloutMinReqs = 20
	// maxRolloutMinRequests bounds min_requests: a gate nobody's traffic can reach is a mistake.
	maxRolloutMinRequests = 1_000_000
)

// RolloutStep is one step of a rollout: a shadow that gets a copy of every request for Shadow, or a canary
// that answers Canary percent of the requests For a duration. Exactly one of Shadow and Canary is set.
type RolloutStep struct {
	Shadow *Duration `json:"shadow,omitempty"`
	Canary int       `json:"canary,omitempty"`
	For    *Duration `json:"for,omitempty"`
}

// Kind is "shadow" or "canary".
func (s RolloutStep) Kind() string {
	if s.Shadow != nil {
		return "shadow"
	}
	return "canary"
}

// Duration is how long the step's window lasts.
func (s RolloutStep) Duration() time.Duration {
	if s.Shadow != nil {
		return s.Shadow.D()
	}
	if s.For != nil {
		return s.For.D()
	}
	return 0
}

// String is the step as the CLI writes it: "shadow=10m" or "canary=50:10m".
func (s RolloutStep) String() string {
	if s.Shadow != nil {
		return "shadow=" + s.Shadow.D().String()
	}
	return fmt.Sprintf("canary=%d:%s", s.Canary, s.Duration())
}

// RolloutGates are the rules every step's window must pass. Nil fields are not checked, but MaxErrorRate and
// MinRequests, which take their defaults.
type RolloutGates struct {
	// MaxErrorRate is the highest share of the candidate's requests answered 5xx (the model's errors; a
	// client's 4xx count neither way). Default 0.01.
	MaxErrorRate *float64 `json:"max_error_rate,omitempty"`
	// MaxLatencyRatio is the highest candidate p99 latency as a multiple of the live version's (>= 1).
	MaxLatencyRatio *float64 `json:"max_latency_ratio,omitempty"`
	// MinAgreement is the lowest share of rows on which a shadow predicts the live version's class.
	MinAgreement *float64 `json:"min_agreement,omitempty"`
	// MaxAccuracyDrop is the largest drop of accuracy (live minus candidate, from ground truth that arrived
	// for the window) a canary may show.
	MaxAccuracyDrop *float64 `json:"max_accuracy_drop,omitempty"`
	// MaxEstimatedAccuracyDrop is the largest drop of CBPE's label-free estimated accuracy (live minus
	// candidate, over every captured row of the window) a canary may show.
	MaxEstimatedAccuracyDrop *float64 `json:"max_estimated_accuracy_drop,omitempty"`
	// MinRequests is how many of the candidate's requests a window needs before it is judged; a window with
	// fewer is extended (up to three times its length, then the rollout is rolled back as inconclusive).
	// Default 20.
	MinRequests *int `json:"min_requests,omitempty"`
}

// WithDefaults fills MaxErrorRate and MinRequests.
func (g RolloutGates) WithDefaults() RolloutGates {
	if g.MaxErrorRate == nil {
		v := DefaultRolloutMaxErr
		g.MaxErrorRate = &v
	}
	if g.MinRequests == nil {
		n := DefaultRolloutMinReqs
		g.MinRequests = &n
	}
	return g
}

// RolloutSpec is the body of POST /api/v1/deployments/{name}/rollouts.
type RolloutSpec struct {
	// Version is the candidate: a version number of the deployment's model.
	Version int           `json:"version"`
	Steps   []RolloutStep `json:"steps"`
	Gates   RolloutGates  `json:"gates"`
}

// UnmarshalJSON reads a step strictly: unknown fields are refused so that a misspelt "canray" is not a
// silent shadow-less step.
func (s *RolloutStep) UnmarshalJSON(b []byte) error {
	type plain RolloutStep
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("a step is {\"shadow\": \"10m\"} or {\"canary\": 10, \"for\": \"10m\"}: %w", err)
	}
	*s = RolloutStep(p)
	return nil
}

// Validate checks the spec; each problem names its field (steps[1].canary, gates.min_agreement).
func (sp RolloutSpec) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if sp.Version <= 0 {
		add("version: give the candidate's version number (a READY version of the deployment's model)")
	}
	if len(sp.Steps) == 0 || len(sp.Steps) > MaxRolloutSteps {
		add("steps: give 1-%d steps, e.g. [{\"shadow\": \"10m\"}, {\"canary\": 50, \"for\": \"10m\"}]", MaxRolloutSteps)
	}
	for i, st := range sp.Steps {
		f := fmt.Sprintf("steps[%d]", i)
		switch {
		case st.Shadow != nil && (st.Canary != 0 || st.For != nil):
			add("%s: a step is a shadow or a canary, not both", f)
			continue
		case st.Shadow == nil && st.Canary == 0:
			add("%s: give \"shadow\": DURATION or \"canary\": PERCENT with \"for\": DURATION", f)
			continue
		case st.Shadow == nil && (st.Canary < 1 || st.Canary > 99):
			add("%s.canary: the canary's share of requests must be 1-99 (percent), not %d", f, st.Canary)
		case st.Shadow == nil && st.For == nil:
			add("%s.for: a canary step needs \"for\": DURATION (e.g. \"10m\")", f)
			continue
		}
		field := f + ".shadow"
		if st.Shadow == nil {
			field = f + ".for"
		}
		if d := st.Duration(); d < MinRolloutStepTime || d > MaxRolloutStepTime {
			add("%s: a step lasts %s to %s, not %s", field, MinRolloutStepTime, MaxRolloutStepTime, d)
		}
	}
	g := sp.Gates
	share := func(name string, v *float64) {
		if v != nil && (math.IsNaN(*v) || *v < 0 || *v > 1) {
			add("gates.%s: a share from 0 to 1, not %g", name, *v)
		}
	}
	share("max_error_rate", g.MaxErrorRate)
	share("min_agreement", g.MinAgreement)
	share("max_accuracy_drop", g.MaxAccuracyDrop)
	share("max_estimated_accuracy_drop", g.MaxEstimatedAccuracyDrop)
	if v := g.MaxLatencyRatio; v != nil && (math.IsNaN(*v) || *v < 1 || *v > 1000) {
		add("gates.max_latency_ratio: a ratio of p99 latencies from 1 to 1000, not %g", *v)
	}
	if n := g.MinRequests; n != nil && (*n < 1 || *n > maxRolloutMinRequests) {
		add("gates.min_requests: 1 to %d requests, not %d", maxRolloutMinRequests, *n)
	}
	if g.MinAgreement != nil && !slices.ContainsFunc(sp.Steps, func(s RolloutStep) bool { return s.Shadow != nil }) {
		add("gates.min_agreement: agreement is measured on a shadow step; add one (e.g. {\"shadow\": \"10m\"})")
	}
	if g.MaxAccuracyDrop != nil && !slices.ContainsFunc(sp.Steps, func(s RolloutStep) bool { return s.Shadow == nil }) {
		add("gates.max_accuracy_drop: accuracy is measured from the ground truth of a canary's answers; add a canary step")
	}
	if g.MaxEstimatedAccuracyDrop != nil && !slices.ContainsFunc(sp.Steps, func(s RolloutStep) bool { return s.Shadow == nil }) {
		add("gates.max_estimated_accuracy_drop: accuracy is estimated from a canary's captured answers; add a canary step")
	}
	if len(problems) > 0 {
		return Errorf(EINVALID, "invalid rollout: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Rollout moves a deployment to a candidate version step by step, judging each step's window by its gates.
type Rollout struct {
	ID         string        `json:"id"`
	Deployment string        `json:"deployment"`
	Model      string        `json:"model"`
	Version    int           `json:"version"`      // the candidate
	From       int           `json:"from_version"` // the deployment's version when the rollout started
	State      RolloutState  `json:"state"`
	Reason     string        `json:"reason"`
	Steps      []RolloutStep `json:"steps"`
	Gates      RolloutGates  `json:"gates"`
	// Step is the index of the current step (len(Steps) once every step passed).
	Step int `json:"step"`
	// CurrentStep is Steps[Step] while the rollout runs (nil once it ended).
	CurrentStep *RolloutStep `json:"current_step"`
	// StepPhase is "starting" while the step's canary or shadow starts, "observing" during its window.
	StepPhase     string     `json:"step_phase,omitempty"`
	StepStartedAt *time.Time `json:"step_started_at,omitempty"` // when the current window began
	// Decisions are every decision taken, oldest first, each with its evidence.
	Decisions []RolloutDecision `json:"decisions"`
	CreatedBy string            `json:"created_by"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	EndedAt   *time.Time        `json:"ended_at,omitempty"`
}

// Rollout decisions' actions.
const (
	RolloutStepStarted = "step_started" // the step's canary or shadow serves: its window begins
	RolloutPassed      = "passed"       // the window passed every gate
	RolloutExtended    = "extended"     // too few requests yet: the window goes on
	RolloutFailed      = "failed"       // a gate failed: the rollout rolls back
	RolloutResumed     = "resumed"      // a server (re)started driving it: the window begins again
	RolloutPromote     = "promoted"
	RolloutRollback    = "rolled_back"
	RolloutCancel      = "canceled"
)

// MaxRolloutDecisions bounds the decisions kept (a window that keeps being extended adds one per extension).
const MaxRolloutDecisions = 200

// RolloutDecision is one decision of a rollout and why: the step, the window it looked at and every gate's
// figures.
type RolloutDecision struct {
	Time    time.Time      `json:"time"`
	Step    int            `json:"step"` // index into steps; len(steps) for the promotion
	Action  string         `json:"action"`
	Message string         `json:"message"`
	Window  *RolloutWindow `json:"window,omitempty"`
	Checks  []GateCheck    `json:"checks,omitempty"`
}

// RolloutWindow is the time range a decision judged.
type RolloutWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// GateCheck is one rule applied to one window: its threshold, the measured value, and the figures behind it.
type GateCheck struct {
	Gate      string  `json:"gate"` // max_error_rate, max_latency_ratio, min_agreement, max_accuracy_drop, max_estimated_accuracy_drop, min_requests
	Threshold float64 `json:"threshold"`
	// Source says what a quality gate's value rests on: "ground_truth" (labels that arrived for the window)
	// or "estimate" (CBPE, from the predicted probabilities, while the labels have not arrived).
	Source string `json:"source,omitempty"`
	// Value is the measured figure (nil: nothing to measure in this window, e.g. no ground truth yet).
	Value  *float64 `json:"value"`
	Passed bool     `json:"passed"`
	// Evidence says what was counted: "3 of 412 requests answered 5xx".
	Evidence string             `json:"evidence"`
	Figures  map[string]float64 `json:"figures,omitempty"`
}

// RolloutStore keeps rollouts.
type RolloutStore interface {
	// CreateRollout inserts r; ECONFLICT when the deployment already has a RUNNING rollout.
	CreateRollout(ctx context.Context, r *Rollout) error
	FindRollout(ctx context.Context, deployment, id string) (*Rollout, error)
	// FindRollouts lists a deployment's rollouts, newest first, at most limit.
	FindRollouts(ctx context.Context, deployment string, limit int) ([]*Rollout, error)
	// FindRunningRollouts lists every RUNNING rollout (of every deployment).
	FindRunningRollouts(ctx context.Context) ([]*Rollout, error)
	// UpdateRollout stores r's progress if its stored state is still from (compare-and-set); ECONFLICT when
	// another writer moved it (a cancel).
	UpdateRollout(ctx context.Context, r *Rollout, from RolloutState) error
}

// AlertRolledBack is the state of the alert event each of a deployment's rules records when a rollout of the
// deployment is rolled back (its webhook's type is "alert.rolled_back").
const AlertRolledBack = "rolled_back"

// ParseRolloutStep reads a step written as text: shadow=DURATION or canary=PERCENT:DURATION (the CLI's
// --step, a pipeline's steps).
func ParseRolloutStep(s string) (RolloutStep, error) {
	kind, val, ok := strings.Cut(strings.TrimSpace(s), "=")
	bad := func(why string) error {
		return fmt.Errorf("step %q: %s (use shadow=DURATION or canary=PERCENT:DURATION, e.g. shadow=10m, canary=50:10m)", s, why)
	}
	if !ok {
		return RolloutStep{}, bad("no '='")
	}
	switch kind {
	case "shadow":
		d, err := time.ParseDuration(val)
		if err != nil {
			return RolloutStep{}, bad(fmt.Sprintf("%q is not a duration", val))
		}
		sd := Duration(d)
		return RolloutStep{Shadow: &sd}, nil
	case "canary":
		pct, dur, ok := strings.Cut(val, ":")
		if !ok {
			return RolloutStep{}, bad("a canary step needs its duration after ':'")
		}
		n, err := strconv.Atoi(pct)
		if err != nil {
			return RolloutStep{}, bad(fmt.Sprintf("%q is not a whole percent", pct))
		}
		d, err := time.ParseDuration(dur)
		if err != nil {
			return RolloutStep{}, bad(fmt.Sprintf("%q is not a duration", dur))
		}
		sd := Duration(d)
		return RolloutStep{Canary: n, For: &sd}, nil
	}
	return RolloutStep{}, bad(fmt.Sprintf("unknown step kind %q", kind))
}

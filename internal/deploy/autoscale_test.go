package deploy

import (
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// run feeds the autoscaler's decision a load trace, one sample per scaleInterval, applying each decision at
// once as the loop does; it returns the replica count after every sample and the changes made.
func run(p scalePolicy, start int, trace []float64) (counts []int, changes []scaleDecision) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pl poolLoad
	current := start
	for i, load := range trace {
		now := t0.Add(time.Duration(i) * scaleInterval)
		pl.observe(now, load, p.window())
		dec := decide(p, &pl, now, current)
		switch dec.direction() {
		case "up":
			pl.lastUp = now
		case "down":
			pl.lastDown = now
		}
		if dec.to != current {
			changes = append(changes, dec)
		}
		current = dec.to
		counts = append(counts, current)
	}
	return counts, changes
}

// steps is a trace of loads, each held for a duration.
func steps(parts ...any) []float64 {
	var out []float64
	for i := 0; i < len(parts); i += 2 {
		load, d := parts[i].(float64), parts[i+1].(time.Duration)
		for range int(d / scaleInterval) {
			out = append(out, load)
		}
	}
	return out
}

func TestDecide(t *testing.T) {
	s := time.Second
	policy := scalePolicy{min: 1, max: 4, target: 2, downAfter: 2 * s}
	tests := []struct {
		name       string
		policy     scalePolicy
		start      int
		trace      []float64
		wantEnd    int
		wantUps    int // changes up, at most
		wantDowns  int // changes down, at most
		checkUpBy  time.Duration
		checkCount func(t *testing.T, counts []int)
	}{
		{name: "step up then down", policy: policy, start: 1,
			trace:   steps(1.0, 4*s, 32.0, 10*s, 1.0, 8*s),
			wantEnd: 1, wantUps: 2, wantDowns: 1,
			checkCount: func(t *testing.T, counts []int) {
				if counts[int(14*s/scaleInterval)-1] != 4 {
					t.Errorf("not at max_replicas 4 before the load phase ended: %v", counts)
				}
			}},
		{name: "steady load within the target stays", policy: policy, start: 1,
			trace: steps(2.0, 20*s), wantEnd: 1},
		{name: "bounded by max", policy: policy, start: 1,
			trace: steps(1000.0, 10*s), wantEnd: 4, wantUps: 1},
		{name: "never below min", policy: policy, start: 3,
			trace: steps(0.0, 10*s), wantEnd: 1, wantDowns: 1},
		{name: "a single burst does not scale up (smoothing)", policy: policy, start: 1,
			trace: append(append(steps(1.0, 3*s), 6), steps(1.0, 5*s)...), wantEnd: 1},
		{name: "a lull shorter than scale_down_after does not scale down", policy: policy, start: 4,
			trace:   repeat(append(steps(8.0, 3*s), steps(0.0, 1500*time.Millisecond)...), 4),
			wantEnd: 4},
		{name: "oscillating load does not flap", policy: scalePolicy{min: 1, max: 4, target: 1, downAfter: 3 * s}, start: 1,
			trace:   repeat(append(steps(4.0, s), steps(1.0, s)...), 10),
			wantEnd: 4, wantUps: 2},
		{name: "idle scales to zero and stays there", policy: scalePolicy{min: 0, max: 2, target: 1, downAfter: 2 * s}, start: 1,
			trace: steps(0.0, 10*s), wantEnd: 0, wantDowns: 1},
		{name: "zero is left by a request, not by the autoscaler", policy: scalePolicy{min: 1, max: 2, target: 1, downAfter: 2 * s}, start: 0,
			trace: steps(5.0, 5*s), wantEnd: 0},
		{name: "above max after a policy change", policy: policy, start: 8,
			trace: steps(100.0, s), wantEnd: 4, wantDowns: 1},
		{name: "below min after a policy change", policy: scalePolicy{min: 3, max: 4, target: 2, downAfter: 2 * s}, start: 1,
			trace: steps(0.0, s), wantEnd: 3, wantUps: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counts, changes := run(tt.policy, tt.start, tt.trace)
			if end := counts[len(counts)-1]; end != tt.wantEnd {
				t.Errorf("ends at %d replicas, want %d; counts %v", end, tt.wantEnd, counts)
			}
			ups, downs := 0, 0
			for _, c := range changes {
				if c.reason == "" || c.to < tt.policy.min && c.to != 0 || c.to > tt.policy.max {
					t.Errorf("change %+v: out of bounds or without a reason", c)
				}
				if c.direction() == "up" {
					ups++
				} else {
					downs++
				}
			}
			if ups > tt.wantUps || downs > tt.wantDowns {
				t.Errorf("%d ups and %d downs, want at most %d and %d: %+v", ups, downs, tt.wantUps, tt.wantDowns, changes)
			}
			if tt.checkCount != nil {
				tt.checkCount(t, counts)
			}
		})
	}
}

// TestDecideCoolDowns checks, over many traces, that a pool changes at most once per direction per cool-down:
// two scale-ups are upCooldown apart, two scale-downs scale_down_after apart, and a scale-down follows the
// last change by scale_down_after.
func TestDecideCoolDowns(t *testing.T) {
	p := scalePolicy{min: 1, max: 8, target: 1.5, downAfter: 2 * time.Second}
	trace := steps(0.0, 3*time.Second, 3.0, time.Second, 12.0, 2*time.Second, 0.0, 500*time.Millisecond, 12.0, time.Second,
		5.0, 4*time.Second, 1.0, 5*time.Second, 0.0, 5*time.Second)
	for load := 1.0; load <= 12; load++ { // a ramp up, then down, one step per sample: each asks for a change
		trace = append(trace, load)
	}
	for load := 12.0; load >= 0; load -= 0.25 {
		trace = append(trace, load)
	}
	trace = append(trace, steps(0.0, 5*time.Second)...)
	for i := range trace {
		if trace[i] > 0 {
			trace[i] += float64(i%3) * 0.4 // noise
		}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pl poolLoad
	current := 2
	const upCoolDown = 3 * time.Second // documented in docs/deployments.md
	var lastUp, lastDown, lastChange time.Time
	changes := 0
	for i, load := range trace {
		now := t0.Add(time.Duration(i) * scaleInterval)
		pl.observe(now, load, p.window())
		dec := decide(p, &pl, now, current)
		switch dec.direction() {
		case "up":
			changes++
			if !lastUp.IsZero() && now.Sub(lastUp) < upCoolDown {
				t.Errorf("scaled up %s after the last scale-up", now.Sub(lastUp))
			}
			lastUp, lastChange, pl.lastUp = now, now, now
		case "down":
			changes++
			if !lastChange.IsZero() && now.Sub(lastChange) < p.downAfter || !lastDown.IsZero() && now.Sub(lastDown) < p.downAfter {
				t.Errorf("scaled down %s after the last change", now.Sub(lastChange))
			}
			lastDown, lastChange, pl.lastDown = now, now, now
		}
		current = dec.to
	}
	if current != 1 || changes < 4 {
		t.Errorf("ends at %d replicas after %d changes, want 1 after several", current, changes)
	}
}

func TestDecisionReasonsCarryTheFigures(t *testing.T) {
	p := scalePolicy{min: 1, max: 4, target: 2, downAfter: time.Second}
	counts, changes := run(p, 1, steps(8.0, 3*time.Second))
	if len(changes) != 1 || counts[len(counts)-1] != 4 || !strings.Contains(changes[0].reason, "target_in_flight 2") {
		t.Fatalf("changes %+v", changes)
	}
}

func TestPolicyOf(t *testing.T) {
	if _, ok := policyOf(&slipway.Deployment{Replicas: 2}); ok {
		t.Error("a fixed deployment has a policy")
	}
	p, ok := policyOf(&slipway.Deployment{Replicas: 2, Load: slipway.LoadLazy})
	if !ok || p.min != 2 || p.max != 2 {
		t.Errorf("lazy fixed deployment: %+v, %v; want min = max = 2", p, ok)
	}
	p, ok = policyOf(&slipway.Deployment{Replicas: 1, Autoscaling: &slipway.Autoscaling{MinReplicas: 0, MaxReplicas: 3, TargetInFlight: 2, ScaleDownAfterS: 5}})
	if !ok || p.min != 0 || p.max != 3 || p.target != 2 || p.downAfter != 5*time.Second {
		t.Errorf("autoscaled: %+v", p)
	}
}

func repeat(xs []float64, n int) []float64 {
	var out []float64
	for range n {
		out = append(out, xs...)
	}
	return out
}

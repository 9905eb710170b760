package deploy

import (
	"fmt"
	"math"
	"time"

	"github.com/slipway-ml/slipway"
)

// The autoscaler's clock. A pool's load (its prediction requests in flight and queued) is sampled every
// scaleInterval; scaling up looks at the mean of the last upWindow (a single burst between two samples does not
// start a replica), scaling down at the highest sample of the policy's scale_down_after_s (a lull must last).
const (
	scaleInterval = 250 * time.Millisecond
	upWindow      = 2 * time.Second
	// upCooldown is the least time between two scale-ups of a pool: the replicas just added take the load
	// only once they are ready, and the load that asked for them must not ask twice. Scale-downs wait for
	// scale_down_after_s since the last change in either direction.
	upCooldown = 3 * time.Second
)

// scalePolicy is a deployment's autoscaling policy in the autoscaler's terms.
type scalePolicy struct {
	min, max  int
	target    float64 // requests in flight or queued per replica
	downAfter time.Duration
}

// policyOf is d's policy; ok is false when d's replica count does not move. A lazy deployment without
// autoscaling has a fixed policy: it starts at zero, its first request starts one replica, and the policy
// brings it to its replicas at once.
func policyOf(d *slipway.Deployment) (scalePolicy, bool) {
	if a := d.Autoscaling; a != nil {
		return scalePolicy{min: a.MinReplicas, max: a.MaxReplicas, target: a.TargetInFlight,
			downAfter: time.Duration(a.ScaleDownAfterS) * time.Second}, true
	}
	if d.Load == slipway.LoadLazy {
		return scalePolicy{min: d.Replicas, max: d.Replicas, target: math.MaxFloat64, downAfter: time.Hour}, true
	}
	return scalePolicy{}, false
}

// loadSample is a pool's load at one moment.
type loadSample struct {
	at   time.Time
	load float64
}

// poolLoad is what the autoscaler remembers of one pool: its recent load and its last changes.
type poolLoad struct {
	samples          []loadSample // oldest first, covering the longest window the policy looks at
	lastUp, lastDown time.Time
}

// observe records a sample and forgets those older than keep.
func (pl *poolLoad) observe(now time.Time, load float64, keep time.Duration) {
	pl.samples = append(pl.samples, loadSample{now, load})
	i := 0
	for i < len(pl.samples) && now.Sub(pl.samples[i].at) > keep {
		i++
	}
	pl.samples = pl.samples[i:]
}

// since returns the mean and the highest load sampled after from, and whether the samples cover the window
// (the oldest one kept is at or before from).
func (pl *poolLoad) since(from time.Time) (mean, highest float64, covered bool) {
	n := 0
	for _, s := range pl.samples {
		if s.at.Before(from) {
			covered = true
			continue
		}
		mean += s.load
		highest = max(highest, s.load)
		n++
	}
	if n > 0 {
		mean /= float64(n)
	}
	return mean, highest, covered
}

// scaleDecision is the autoscaler's verdict on one pool: to (== current: no change), why, and the figures.
type scaleDecision struct {
	current, desired, to int
	load                 float64 // the figure the decision rests on
	reason               string
}

func (d scaleDecision) direction() string {
	switch {
	case d.to > d.current:
		return "up"
	case d.to < d.current:
		return "down"
	}
	return ""
}

// decide is the autoscaling decision for a pool of current replicas at now, from its sampled load (a pure
// function of its arguments). It wants ceil(load / target) replicas within the policy's bounds:
//   - a pool outside the bounds (a policy just changed) is brought within them at once;
//   - up to the mean load of the last upWindow, at most once per upCooldown;
//   - down to the highest load of the last downAfter, once the samples cover that window and downAfter has
//     passed since the pool's last change (so at most one scale-down per downAfter, and none right after a
//     scale-up);
//   - never up from zero: at zero replicas the next request starts one (serving.Pool's cold start), and an
//     idle pool stays at zero.
func decide(p scalePolicy, pl *poolLoad, now time.Time, current int) scaleDecision {
	upMean, _, _ := pl.since(now.Add(-upWindow))
	_, downMax, covered := pl.since(now.Add(-p.downAfter))
	dec := scaleDecision{current: current, to: current, load: upMean, desired: p.want(upMean)}
	switch {
	case current == 0:
		dec.reason = "at zero replicas: the next request starts one"
	case current > p.max:
		dec.to, dec.desired, dec.reason = p.max, p.max, fmt.Sprintf("above max_replicas %d", p.max)
	case current < p.min:
		dec.to, dec.desired, dec.reason = p.min, p.min, fmt.Sprintf("below min_replicas %d", p.min)
	case dec.desired > current:
		if since := now.Sub(pl.lastUp); since < upCooldown {
			dec.reason = fmt.Sprintf("load %.2f wants %d replicas; scaled up %s ago (cool-down %s)", upMean, dec.desired, since.Round(time.Millisecond), upCooldown)
			return dec
		}
		dec.to = dec.desired
		dec.reason = fmt.Sprintf("load %.2f (mean of the last %s) over target_in_flight %g wants %d replicas", upMean, upWindow, p.target, dec.desired)
	default:
		down := p.want(downMax)
		if down >= current {
			dec.reason = "load within the target"
			return dec
		}
		dec.load, dec.desired = downMax, down
		lastChange := pl.lastUp
		if pl.lastDown.After(lastChange) {
			lastChange = pl.lastDown
		}
		if !covered || now.Sub(lastChange) < p.downAfter {
			dec.reason = fmt.Sprintf("load %.2f wants %d replicas, not yet for scale_down_after_s %s", downMax, down, p.downAfter)
			return dec
		}
		dec.to = down
		dec.reason = fmt.Sprintf("the highest load of the last %s was %.2f: %d replicas meet target_in_flight %g", p.downAfter, downMax, down, p.target)
		if down == 0 {
			dec.reason = fmt.Sprintf("idle for %s: scaled to zero (the next request starts a replica)", p.downAfter)
		}
	}
	return dec
}

// want is the replica count for a load, within the policy's bounds.
func (p scalePolicy) want(load float64) int {
	n := 0
	if load > 0 {
		n = int(math.Ceil(load/p.target - 1e-9)) // rounding noise in the mean must not ask for one more replica
	}
	return min(max(n, p.min), p.max)
}

// window is how long the samples must be kept for the policy's decisions.
func (p scalePolicy) window() time.Duration { return max(p.downAfter, upWindow) + scaleInterval }

// Package canary runs canary analysis: for every deployment whose canary has an analysis, it compares the
// canary's requests with the deployment version's, interval by interval, and promotes the canary once it has
// passed enough intervals in a row, or removes it at the first failed one. It is the automated half of a
// canary (Argo Rollouts' and Flagger's analysis, SageMaker's auto-rollback): the traffic split itself is the
// data plane's (internal/serving routes by the deployment's spec), and promoting or removing is an update of
// that spec through internal/deploy.
package canary

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// Deployments is what the analysis needs of the deployment service.
type Deployments interface {
	List(ctx context.Context) ([]*slipway.Deployment, error)
	Update(ctx context.Context, name string, sp slipway.DeploymentSpec) (*slipway.Deployment, error)
}

// Stats gives a deployment version's cumulative requests (the monitor).
type Stats interface {
	VersionTotals(deployment string, version int) monitor.VersionTotals
}

// Analyzer evaluates canaries. Run owns its only goroutine.
type Analyzer struct {
	deployments Deployments
	stats       Stats
	log         *slog.Logger
	now         func() time.Time
	tick        time.Duration
	canaries    map[string]*progress // by deployment name
}

// progress is a canary's analysis so far: the totals at the start of the current interval, and the passed
// intervals in a row.
type progress struct {
	canary           slipway.Canary // as it was when the analysis started (Analysis set): any change starts it over
	since            time.Time
	canaryAt, mainAt monitor.VersionTotals
	passed           int
}

// New returns an analyzer that looks at the deployments every second.
func New(deployments Deployments, stats Stats, log *slog.Logger) *Analyzer {
	return &Analyzer{deployments: deployments, stats: stats, log: log, now: time.Now, tick: time.Second,
		canaries: map[string]*progress{}}
}

// Run evaluates until ctx ends.
func (a *Analyzer) Run(ctx context.Context) {
	t := time.NewTicker(a.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Step(ctx)
		}
	}
}

// Step looks at every deployment once: it starts, continues or ends the analysis of each canary.
func (a *Analyzer) Step(ctx context.Context) {
	ds, err := a.deployments.List(ctx)
	if err != nil {
		a.log.Warn("canary analysis: list deployments", "error", err)
		return
	}
	seen := map[string]bool{}
	for _, d := range ds {
		c := d.Canary
		if c == nil || c.Analysis == nil || d.State != slipway.DeploymentActive {
			continue
		}
		seen[d.Name] = true
		p := a.canaries[d.Name]
		if p == nil || !sameCanary(p.canary, *c) {
			a.canaries[d.Name] = a.start(d)
			continue
		}
		if a.now().Sub(p.since) < time.Duration(p.canary.Analysis.IntervalSeconds)*time.Second {
			continue
		}
		a.evaluate(ctx, d, p)
	}
	for name := range a.canaries {
		if !seen[name] {
			delete(a.canaries, name) // removed, promoted or paused (not ACTIVE): a return starts over
		}
	}
}

func sameCanary(a, b slipway.Canary) bool {
	return a.Version == b.Version && a.Weight == b.Weight && a.Replicas == b.Replicas && b.Analysis != nil &&
		a.Analysis != nil && *a.Analysis == *b.Analysis
}

func (a *Analyzer) start(d *slipway.Deployment) *progress {
	c := *d.Canary
	an := *c.Analysis
	c.Analysis = &an
	return &progress{canary: c, since: a.now(),
		canaryAt: a.stats.VersionTotals(d.Name, c.Version), mainAt: a.stats.VersionTotals(d.Name, d.Version)}
}

// Verdict is the outcome of one interval.
type Verdict struct {
	Decided bool   // false: too few canary requests yet, the interval goes on
	Passed  bool   // with Decided
	Detail  string // the figures behind it
}

// Judge compares one interval of a canary with the deployment version's.
func Judge(an slipway.CanaryAnalysis, canary, main monitor.VersionTotals) Verdict {
	// Requests that were the client's mistake (4xx: malformed bodies, refused content types) say nothing about
	// the canary: neither a flood of them nor their quick answers may decide its fate.
	served := canary.Served()
	if served < int64(an.MinRequests) {
		return Verdict{Detail: fmt.Sprintf("%d of the %d canary requests an interval needs", served, an.MinRequests)}
	}
	rate := float64(canary.Errors) / float64(served)
	if rate > an.MaxErrorRate {
		return Verdict{Decided: true, Detail: fmt.Sprintf("error rate %.2f%% > %.2f%% (%d of %d requests answered 5xx)",
			100*rate, 100*an.MaxErrorRate, canary.Errors, served)}
	}
	detail := fmt.Sprintf("error rate %.2f%% (%d of %d requests)", 100*rate, canary.Errors, served)
	if an.MaxLatencyRatio > 0 && main.Served() >= int64(an.MinRequests) {
		cp99, mp99 := canary.LatencyQuantile(0.99), main.LatencyQuantile(0.99)
		if cp99 > an.MaxLatencyRatio*mp99 {
			return Verdict{Decided: true, Detail: fmt.Sprintf("p99 latency %.1f ms > %g × %.1f ms of the deployment's version",
				cp99*1000, an.MaxLatencyRatio, mp99*1000)}
		}
		detail += fmt.Sprintf(", p99 %.1f ms against %.1f ms", cp99*1000, mp99*1000)
	}
	return Verdict{Decided: true, Passed: true, Detail: detail}
}

func (a *Analyzer) evaluate(ctx context.Context, d *slipway.Deployment, p *progress) {
	c := p.canary
	canaryNow, mainNow := a.stats.VersionTotals(d.Name, c.Version), a.stats.VersionTotals(d.Name, d.Version)
	an := *c.Analysis
	v := Judge(an, canaryNow.Sub(p.canaryAt), mainNow.Sub(p.mainAt))
	log := a.log.With("deployment", d.Name, "canary_version", c.Version)
	if !v.Decided {
		return // the interval goes on until the canary has had enough requests
	}
	p.since, p.canaryAt, p.mainAt = a.now(), canaryNow, mainNow
	if !v.Passed {
		note := fmt.Sprintf("canary version %d removed by its analysis: %s; every request goes to version %d", c.Version, v.Detail, d.Version)
		log.Warn("canary failed its analysis; removing it", "detail", v.Detail)
		a.end(ctx, d.Name, slipway.DeploymentSpec{Canary: &slipway.Canary{}, Note: note})
		return
	}
	p.passed++
	log.Info("canary passed an analysis interval", "passed", p.passed, "of", an.PromoteAfter, "detail", v.Detail)
	if p.passed < an.PromoteAfter {
		return
	}
	version := c.Version
	note := fmt.Sprintf("canary version %d promoted by its analysis after %d passed intervals (last: %s)", c.Version, p.passed, v.Detail)
	a.end(ctx, d.Name, slipway.DeploymentSpec{Version: &version, Canary: &slipway.Canary{}, Note: note})
}

func (a *Analyzer) end(ctx context.Context, name string, sp slipway.DeploymentSpec) {
	delete(a.canaries, name)
	if _, err := a.deployments.Update(ctx, name, sp); err != nil {
		a.log.Error("canary analysis: update the deployment", "deployment", name, "error", err)
	}
}

package canary

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// totals builds cumulative totals: n requests, errs of them 5xx, all with the given latency.
func totals(n, errs int64, latency time.Duration) monitor.VersionTotals {
	t := monitor.VersionTotals{Requests: n, Errors: errs}
	b := 0
	for v := 50e-6; v < latency.Seconds() && b < len(t.Latency)-1; v *= 1.1 {
		b++
	}
	t.Latency[b] = n
	return t
}

func TestJudge(t *testing.T) {
	an := slipway.CanaryAnalysis{MinRequests: 50, MaxErrorRate: 0.01, MaxLatencyRatio: 1.5}.WithDefaults()
	tests := []struct {
		name           string
		canary, main   monitor.VersionTotals
		decided, passd bool
		detail         string
	}{
		{"too few requests", totals(49, 49, time.Millisecond), totals(1000, 0, time.Millisecond), false, false, "49 of the 50"},
		{"errors", totals(100, 2, time.Millisecond), totals(1000, 0, time.Millisecond), true, false, "error rate 2.00% > 1.00% (2 of 100"},
		{"errors at the limit pass", totals(100, 1, time.Millisecond), totals(1000, 0, time.Millisecond), true, true, "error rate 1.00%"},
		{"slow", totals(100, 0, 10*time.Millisecond), totals(1000, 0, 5*time.Millisecond), true, false, "p99 latency"},
		{"a little slower passes", totals(100, 0, 6*time.Millisecond), totals(1000, 0, 5*time.Millisecond), true, true, "p99"},
		{"latency not compared without main traffic", totals(100, 0, 10*time.Millisecond), totals(10, 0, time.Millisecond), true, true, "error rate 0.00%"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(an, tc.canary, tc.main)
			if v.Decided != tc.decided || v.Passed != tc.passd || !strings.Contains(v.Detail, tc.detail) {
				t.Errorf("Judge = %+v, want decided %v passed %v detail ~ %q", v, tc.decided, tc.passd, tc.detail)
			}
		})
	}
	noLatency := an
	noLatency.MaxLatencyRatio = 0
	if v := Judge(noLatency, totals(100, 0, time.Second), totals(1000, 0, time.Millisecond)); !v.Passed {
		t.Errorf("latency checked though off: %+v", v)
	}
}

type fakeDeployments struct {
	d       *slipway.Deployment
	updates []slipway.DeploymentSpec
}

func (f *fakeDeployments) List(context.Context) ([]*slipway.Deployment, error) {
	c := *f.d
	return []*slipway.Deployment{&c}, nil
}

func (f *fakeDeployments) Update(_ context.Context, _ string, sp slipway.DeploymentSpec) (*slipway.Deployment, error) {
	f.updates = append(f.updates, sp)
	f.d.Canary = nil
	if sp.Version != nil {
		f.d.Version = *sp.Version
	}
	return f.d, nil
}

type fakeStats map[int]monitor.VersionTotals

func (f fakeStats) VersionTotals(_ string, v int) monitor.VersionTotals { return f[v] }

func newAnalyzer(d *slipway.Deployment, stats fakeStats) (*Analyzer, *fakeDeployments, *time.Time) {
	fd := &fakeDeployments{d: d}
	now := time.Unix(1_000_000, 0)
	a := New(fd, stats, slog.New(slog.DiscardHandler))
	a.now = func() time.Time { return now }
	return a, fd, &now
}

func canaryDeployment(an slipway.CanaryAnalysis) *slipway.Deployment {
	return &slipway.Deployment{Name: "churn", State: slipway.DeploymentActive, Version: 1,
		Canary: &slipway.Canary{Version: 2, Weight: 10, Replicas: 1, Analysis: &an}}
}

// A canary that passes PromoteAfter intervals in a row becomes the deployment's version; intervals without
// enough canary requests are extended, not judged.
func TestPromotesAfterPassedIntervals(t *testing.T) {
	stats := fakeStats{1: totals(0, 0, 0), 2: totals(0, 0, 0)}
	a, fd, now := newAnalyzer(canaryDeployment(slipway.CanaryAnalysis{IntervalSeconds: 10, MinRequests: 20, PromoteAfter: 2}.WithDefaults()), stats)
	ctx := context.Background()
	a.Step(ctx) // starts the analysis
	for i, n := range []int64{5, 30, 60} {
		*now = now.Add(10 * time.Second)
		stats[2], stats[1] = totals(n, 0, time.Millisecond), totals(10*n, 0, time.Millisecond)
		a.Step(ctx)
		if i < 2 && len(fd.updates) != 0 {
			t.Fatalf("interval %d: updated too early: %+v", i, fd.updates)
		}
	}
	if len(fd.updates) != 1 || fd.updates[0].Version == nil || *fd.updates[0].Version != 2 || fd.updates[0].Canary == nil ||
		!strings.Contains(fd.updates[0].Note, "promoted by its analysis after 2 passed intervals") {
		t.Fatalf("updates = %+v", fd.updates)
	}
}

// The first failed interval removes the canary; the deployment keeps its version.
func TestRollsBackOnErrors(t *testing.T) {
	stats := fakeStats{1: totals(0, 0, 0), 2: totals(0, 0, 0)}
	a, fd, now := newAnalyzer(canaryDeployment(slipway.CanaryAnalysis{IntervalSeconds: 10, MinRequests: 20, PromoteAfter: 3}.WithDefaults()), stats)
	ctx := context.Background()
	a.Step(ctx)
	*now = now.Add(10 * time.Second)
	stats[2] = totals(40, 10, time.Millisecond)
	a.Step(ctx)
	if len(fd.updates) != 1 || fd.updates[0].Version != nil || fd.updates[0].Canary == nil || *fd.updates[0].Canary != (slipway.Canary{}) ||
		!strings.Contains(fd.updates[0].Note, "canary version 2 removed by its analysis: error rate 25.00% > 1.00%") {
		t.Fatalf("updates = %+v", fd.updates)
	}
}

// Changing the canary (here its weight) starts the analysis over: passed intervals of the old one do not count.
func TestChangedCanaryStartsOver(t *testing.T) {
	stats := fakeStats{1: totals(0, 0, 0), 2: totals(0, 0, 0)}
	d := canaryDeployment(slipway.CanaryAnalysis{IntervalSeconds: 10, MinRequests: 1, PromoteAfter: 2}.WithDefaults())
	a, fd, now := newAnalyzer(d, stats)
	ctx := context.Background()
	a.Step(ctx)
	*now = now.Add(10 * time.Second)
	stats[2] = totals(10, 0, time.Millisecond)
	a.Step(ctx) // one passed interval
	d.Canary.Weight = 50
	a.Step(ctx) // starts over
	*now = now.Add(10 * time.Second)
	stats[2] = totals(20, 0, time.Millisecond)
	a.Step(ctx) // one passed interval of the new canary
	if len(fd.updates) != 0 {
		t.Fatalf("promoted with intervals of a changed canary: %+v", fd.updates)
	}
	*now = now.Add(10 * time.Second)
	stats[2] = totals(30, 0, time.Millisecond)
	a.Step(ctx)
	if len(fd.updates) != 1 {
		t.Fatalf("updates = %+v", fd.updates)
	}
}

// Client mistakes (4xx) are neither errors of the canary nor requests it served: a flood of malformed requests
// can neither roll back a good canary nor dilute a bad one's errors below the limit.
func TestJudgeLeavesClientErrorsOut(t *testing.T) {
	an := slipway.CanaryAnalysis{MinRequests: 50, MaxErrorRate: 0.01}.WithDefaults()
	flood := func(t monitor.VersionTotals, n int64) monitor.VersionTotals {
		t.Requests += n
		t.ClientErrors += n
		return t
	}
	main := totals(1000, 0, time.Millisecond)
	if v := Judge(an, flood(totals(100, 0, time.Millisecond), 10_000), main); !v.Passed || !strings.Contains(v.Detail, "(0 of 100 requests)") {
		t.Errorf("good canary under a flood of 4xx: %+v, want passed, out of its 100 served requests", v)
	}
	if v := Judge(an, flood(totals(100, 5, time.Millisecond), 10_000), main); !v.Decided || v.Passed {
		t.Errorf("bad canary hidden by a flood of 4xx: %+v, want failed", v)
	}
	if v := Judge(an, flood(totals(10, 0, time.Millisecond), 10_000), main); v.Decided {
		t.Errorf("4xx counted towards min_requests: %+v", v)
	}
}

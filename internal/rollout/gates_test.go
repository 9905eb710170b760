package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// totals builds a window's totals: n requests, errs of them 5xx, clientErrs 4xx, all with the given latency.
func totals(n, errs, clientErrs int64, latency time.Duration) monitor.VersionTotals {
	t := monitor.VersionTotals{Requests: n, Errors: errs, ClientErrors: clientErrs}
	b := 0
	for v := 50e-6; v < latency.Seconds() && b < len(t.Latency)-1; v *= 1.1 {
		b++
	}
	t.Latency[b] = n - clientErrs
	return t
}

func f(v float64) *float64 { return &v }
func n(v int) *int         { return &v }

func checkOf(v Verdict, gate string) *slipway.GateCheck {
	for i := range v.Checks {
		if v.Checks[i].Gate == gate {
			return &v.Checks[i]
		}
	}
	return nil
}

// Quality gates: ground truth when it has arrived for both versions, the estimate when not, neither: not
// measured; max_estimated_accuracy_drop always on the estimate. Each check says its source.
func TestJudgeCanaryQualitySources(t *testing.T) {
	live := totals(1000, 0, 0, 10*time.Millisecond)
	canary := totals(200, 0, 0, 10*time.Millisecond)
	base := CanaryWindow{Canary: canary, Live: live, CanaryVersion: 2, LiveVersion: 1}
	truth := base
	truth.CanaryAccuracy, truth.LiveAccuracy, truth.CanaryLabelled, truth.LiveLabelled = f(0.70), f(0.80), 50, 60
	truth.CanaryEstimate, truth.LiveEstimate = f(0.80), f(0.80) // the truth wins over a reassuring estimate
	est := base
	est.CanaryEstimate, est.LiveEstimate, est.CanaryEstRows, est.LiveEstRows = f(0.70), f(0.80), 200, 1000
	cases := []struct {
		name   string
		gates  slipway.RolloutGates
		w      CanaryWindow
		gate   string
		source string
		passed bool
		value  bool
	}{
		{"truth", slipway.RolloutGates{MaxAccuracyDrop: f(0.05)}, truth, "max_accuracy_drop", SourceGroundTruth, false, true},
		{"estimate stands in", slipway.RolloutGates{MaxAccuracyDrop: f(0.05)}, est, "max_accuracy_drop", SourceEstimate, false, true},
		{"estimate within the gate", slipway.RolloutGates{MaxAccuracyDrop: f(0.15)}, est, "max_accuracy_drop", SourceEstimate, true, true},
		{"neither: not measured", slipway.RolloutGates{MaxAccuracyDrop: f(0.05)}, base, "max_accuracy_drop", "", true, false},
		{"estimated gate ignores the truth", slipway.RolloutGates{MaxEstimatedAccuracyDrop: f(0.05)}, truth, "max_estimated_accuracy_drop", SourceEstimate, true, true},
		{"estimated gate fails", slipway.RolloutGates{MaxEstimatedAccuracyDrop: f(0.05)}, est, "max_estimated_accuracy_drop", SourceEstimate, false, true},
	}
	for _, tc := range cases {
		v := JudgeCanary(tc.gates, tc.w)
		c := checkOf(v, tc.gate)
		if c == nil || c.Source != tc.source || c.Passed != tc.passed || (c.Value != nil) != tc.value || v.Passed != tc.passed {
			t.Errorf("%s: verdict %+v check %+v", tc.name, v, c)
		}
	}
}

func TestJudgeCanary(t *testing.T) {
	gates := slipway.RolloutGates{MaxErrorRate: f(0.05), MaxLatencyRatio: f(2), MaxAccuracyDrop: f(0.05), MinRequests: n(100)}
	live := totals(1000, 0, 0, 10*time.Millisecond)
	cases := []struct {
		name                 string
		gates                slipway.RolloutGates
		window               CanaryWindow
		enough, passed       bool
		failedGate, evidence string // the failed gate and a piece of its evidence
	}{
		{name: "healthy", gates: gates, window: CanaryWindow{Canary: totals(200, 2, 0, 10*time.Millisecond), Live: live},
			enough: true, passed: true},
		{name: "too few requests: extended, not judged", gates: gates, window: CanaryWindow{Canary: totals(99, 50, 0, time.Second), Live: live},
			evidence: "99 canary requests"},
		{name: "client errors are not requests the canary served", gates: gates,
			window: CanaryWindow{Canary: totals(150, 0, 60, 10*time.Millisecond), Live: live}, evidence: "90 canary requests"},
		{name: "error rate above the gate", gates: gates, window: CanaryWindow{Canary: totals(200, 20, 0, 10*time.Millisecond), Live: live},
			enough: true, failedGate: "max_error_rate", evidence: "20 of 200"},
		{name: "error rate at the gate passes", gates: gates, window: CanaryWindow{Canary: totals(200, 10, 0, 10*time.Millisecond), Live: live},
			enough: true, passed: true},
		{name: "a flood of 4xx does not fail a good canary", gates: gates,
			window: CanaryWindow{Canary: totals(5000, 1, 4800, 10*time.Millisecond), Live: live}, enough: true, passed: true},
		{name: "slow canary", gates: gates, window: CanaryWindow{Canary: totals(200, 0, 0, 50*time.Millisecond), Live: live},
			enough: true, failedGate: "max_latency_ratio", evidence: "ratio"},
		{name: "latency not compared without live traffic", gates: gates,
			window: CanaryWindow{Canary: totals(200, 0, 0, 50*time.Millisecond), Live: totals(3, 0, 0, time.Millisecond)}, enough: true, passed: true},
		{name: "accuracy dropped", gates: gates, window: CanaryWindow{Canary: totals(200, 0, 0, 10*time.Millisecond), Live: live,
			CanaryAccuracy: f(0.80), LiveAccuracy: f(0.90), CanaryLabelled: 50, LiveLabelled: 60},
			enough: true, failedGate: "max_accuracy_drop", evidence: "drop 0.100"},
		{name: "accuracy within the gate", gates: gates, window: CanaryWindow{Canary: totals(200, 0, 0, 10*time.Millisecond), Live: live,
			CanaryAccuracy: f(0.88), LiveAccuracy: f(0.90), CanaryLabelled: 50, LiveLabelled: 60}, enough: true, passed: true},
		{name: "no ground truth yet: accuracy not measured, not failed", gates: gates,
			window: CanaryWindow{Canary: totals(200, 0, 0, 10*time.Millisecond), Live: live, LiveAccuracy: f(0.9), LiveLabelled: 10},
			enough: true, passed: true, evidence: "no ground truth"},
		{name: "defaults: 1% errors, 20 requests", gates: slipway.RolloutGates{},
			window: CanaryWindow{Canary: totals(20, 1, 0, 10*time.Millisecond), Live: live}, enough: true, failedGate: "max_error_rate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := JudgeCanary(c.gates, c.window)
			if v.Enough != c.enough || v.Passed != c.passed {
				t.Fatalf("enough %v passed %v, want %v %v: %s", v.Enough, v.Passed, c.enough, c.passed, v.Summary)
			}
			if c.failedGate != "" {
				ch := checkOf(v, c.failedGate)
				if ch == nil || ch.Passed || ch.Value == nil {
					t.Fatalf("gate %s: %+v (summary %s)", c.failedGate, ch, v.Summary)
				}
				if !strings.HasPrefix(v.Summary, c.failedGate+": ") {
					t.Errorf("summary %q does not lead with the failed gate", v.Summary)
				}
			}
			if c.evidence != "" && !strings.Contains(v.Summary, c.evidence) {
				t.Errorf("summary %q lacks %q", v.Summary, c.evidence)
			}
			for _, ch := range v.Checks {
				if ch.Evidence == "" {
					t.Errorf("gate %s has no evidence", ch.Gate)
				}
			}
		})
	}
}

func TestJudgeShadow(t *testing.T) {
	gates := slipway.RolloutGates{MaxErrorRate: f(0.02), MinAgreement: f(0.9), MaxLatencyRatio: f(3), MinRequests: n(50)}
	report := func(requests, compared, shadowErrs int64, agreement *float64, liveMS, shadowMS float64) *slipway.ShadowReport {
		return &slipway.ShadowReport{Requests: requests, Compared: compared, Agreement: agreement,
			Errors: slipway.ShadowSides{Shadow: shadowErrs}, LatencyP99MS: slipway.ShadowLatency{Live: &liveMS, Shadow: &shadowMS}}
	}
	cases := []struct {
		name                 string
		rep                  *slipway.ShadowReport
		enough, passed       bool
		failedGate, evidence string
	}{
		{"agrees", report(100, 100, 0, f(0.97), 5, 6), true, true, "", "agreement 97.0%"},
		{"too few pairs", report(49, 49, 0, f(0.1), 5, 6), false, false, "", "49 requests compared"},
		{"disagrees", report(100, 100, 0, f(0.6), 5, 6), true, false, "min_agreement", "agreement 60.0% (min 90.0%) over 100"},
		{"agreement at the gate passes", report(100, 100, 0, f(0.9), 5, 6), true, true, "", ""},
		{"shadow errors", report(100, 97, 3, f(0.99), 5, 6), true, false, "max_error_rate", "3 of 100"},
		{"slow shadow", report(100, 100, 0, f(0.99), 5, 16), true, false, "max_latency_ratio", "ratio 3.20"},
		{"a regression has no agreement: not measured", report(100, 100, 0, nil, 5, 6), true, true, "", "not measured"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := JudgeShadow(gates, c.rep)
			if v.Enough != c.enough || v.Passed != c.passed {
				t.Fatalf("enough %v passed %v, want %v %v: %s", v.Enough, v.Passed, c.enough, c.passed, v.Summary)
			}
			if c.failedGate != "" {
				if ch := checkOf(v, c.failedGate); ch == nil || ch.Passed {
					t.Fatalf("gate %s: %+v", c.failedGate, ch)
				}
			}
			if c.evidence != "" && !strings.Contains(v.Summary, c.evidence) {
				t.Errorf("summary %q lacks %q", v.Summary, c.evidence)
			}
		})
	}
}

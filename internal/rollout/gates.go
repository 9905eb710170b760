package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// The gates, applied to one step's window. Each gate gives a GateCheck with the measured value and the
// figures it rests on, so that a decision can be read back without the data it was taken from.
//
//   - min_requests: the candidate's requests in the window (a canary's served requests, 4xx left out; a
//     shadow's compared pairs). Fewer: the window is not judged yet (extended).
//   - max_error_rate: the candidate's 5xx answers (the model's errors) out of those requests; a client's
//     4xx count neither way, so a careless client cannot roll back a good candidate.
//   - max_latency_ratio: the candidate's p99 over the live version's p99 in the same window (not measured
//     when the live version had fewer than min_requests requests).
//   - min_agreement (shadow steps): the share of compared rows where the shadow's predicted class equals the
//     live one's (the shadow report's agreement).
//   - max_accuracy_drop (canary steps): the live version's accuracy minus the canary's, both from the ground
//     truth that has arrived for the window's requests; while it has not (for either version), from CBPE's
//     label-free estimates of both (source "estimate" in the check); not measured (and not failed) when
//     neither is there.
//   - max_estimated_accuracy_drop (canary steps): the same drop from CBPE's estimates over every captured row
//     of the window, whatever ground truth has arrived.

// Verdict is a window's outcome.
type Verdict struct {
	Enough  bool // false: too few requests, the window is extended
	Passed  bool // with Enough: every gate passed
	Checks  []slipway.GateCheck
	Summary string // the failed gates' evidence, or every gate's when all passed
}

// CanaryWindow is what a canary step's window measured.
type CanaryWindow struct {
	Canary, Live monitor.VersionTotals // the requests of the window (differences of the cumulative totals)
	// CanaryAccuracy and LiveAccuracy are from ground truth (nil: none arrived), over Labelled rows.
	CanaryAccuracy, LiveAccuracy *float64
	CanaryLabelled, LiveLabelled int
	// CanaryEstimate and LiveEstimate are CBPE's estimated accuracies (nil: nothing to estimate), over
	// EstimatedRows captured rows, calibrated as the references say.
	CanaryEstimate, LiveEstimate   *float64
	CanaryEstRows, LiveEstRows     int
	CanaryReference, LiveReference *slipway.EstimateReference
	CanaryVersion, LiveVersion     int
}

// Gate sources, as GateCheck.Source says them.
const (
	SourceGroundTruth = "ground_truth"
	SourceEstimate    = "estimate"
)

func fptr(v float64) *float64 { return &v }

// minRequestsCheck is the min_requests gate for n of the candidate's requests.
func minRequestsCheck(g slipway.RolloutGates, n int64, what string) slipway.GateCheck {
	minReq := *g.MinRequests
	return slipway.GateCheck{Gate: "min_requests", Threshold: float64(minReq), Value: fptr(float64(n)), Passed: n >= int64(minReq),
		Evidence: fmt.Sprintf("%d %s in the window (at least %d needed to judge it)", n, what, minReq)}
}

// errorRateCheck is the max_error_rate gate for errors out of n.
func errorRateCheck(g slipway.RolloutGates, errors, n int64, what string) slipway.GateCheck {
	rate := float64(errors) / float64(n)
	return slipway.GateCheck{Gate: "max_error_rate", Threshold: *g.MaxErrorRate, Value: fptr(rate), Passed: rate <= *g.MaxErrorRate,
		Evidence: fmt.Sprintf("error rate %.2f%% (max %.2f%%): %d of %d %s", 100*rate, 100**g.MaxErrorRate, errors, n, what),
		Figures:  map[string]float64{"errors": float64(errors), "requests": float64(n)}}
}

// latencyCheck is the max_latency_ratio gate for p99 latencies in milliseconds (live <= 0: not measured).
func latencyCheck(g slipway.RolloutGates, candidateMS, liveMS float64, liveEnough bool) slipway.GateCheck {
	c := slipway.GateCheck{Gate: "max_latency_ratio", Threshold: *g.MaxLatencyRatio, Passed: true,
		Figures: map[string]float64{"candidate_p99_ms": candidateMS, "live_p99_ms": liveMS}}
	if !liveEnough || liveMS <= 0 {
		c.Evidence = "not measured: the live version answered too few requests in the window to compare p99 latencies"
		return c
	}
	ratio := candidateMS / liveMS
	c.Value, c.Passed = fptr(ratio), ratio <= *g.MaxLatencyRatio
	c.Evidence = fmt.Sprintf("p99 %.1f ms against the live version's %.1f ms: ratio %.2f (max %g)", candidateMS, liveMS, ratio, *g.MaxLatencyRatio)
	return c
}

// JudgeCanary applies the gates to a canary step's window.
func JudgeCanary(g slipway.RolloutGates, w CanaryWindow) Verdict {
	g = g.WithDefaults()
	served := w.Canary.Served()
	minReq := minRequestsCheck(g, served, "canary requests answered (client errors left out)")
	if !minReq.Passed {
		return Verdict{Checks: []slipway.GateCheck{minReq}, Summary: minReq.Evidence}
	}
	checks := []slipway.GateCheck{minReq, errorRateCheck(g, w.Canary.Errors, served, "canary requests answered 5xx")}
	if g.MaxLatencyRatio != nil {
		checks = append(checks, latencyCheck(g, 1000*w.Canary.LatencyQuantile(0.99), 1000*w.Live.LatencyQuantile(0.99),
			w.Live.Served() >= int64(*g.MinRequests)))
	}
	if g.MaxAccuracyDrop != nil {
		checks = append(checks, accuracyCheck(g, w))
	}
	if g.MaxEstimatedAccuracyDrop != nil {
		c := slipway.GateCheck{Gate: "max_estimated_accuracy_drop", Threshold: *g.MaxEstimatedAccuracyDrop, Passed: true, Figures: map[string]float64{}}
		checks = append(checks, estimatedAccuracyCheck(c, w))
	}
	return verdict(checks)
}

// accuracyCheck judges max_accuracy_drop on ground truth when it has arrived for both versions, else on the
// estimates.
func accuracyCheck(g slipway.RolloutGates, w CanaryWindow) slipway.GateCheck {
	c := slipway.GateCheck{Gate: "max_accuracy_drop", Threshold: *g.MaxAccuracyDrop, Passed: true,
		Figures: map[string]float64{"canary_labelled": float64(w.CanaryLabelled), "live_labelled": float64(w.LiveLabelled)}}
	if w.CanaryAccuracy == nil || w.LiveAccuracy == nil {
		noTruth := fmt.Sprintf("no ground truth has arrived yet for the window's requests (%d labelled rows of version %d, %d of version %d)",
			w.CanaryLabelled, w.CanaryVersion, w.LiveLabelled, w.LiveVersion)
		c = estimatedAccuracyCheck(c, w)
		if c.Value == nil {
			c.Evidence = "not measured: " + noTruth + ", and " + c.Evidence
		} else {
			c.Evidence = noTruth + ": judged on the estimate, " + c.Evidence
		}
		return c
	}
	drop := *w.LiveAccuracy - *w.CanaryAccuracy
	c.Value, c.Passed, c.Source = fptr(drop), drop <= *g.MaxAccuracyDrop, SourceGroundTruth
	c.Figures["canary_accuracy"], c.Figures["live_accuracy"] = *w.CanaryAccuracy, *w.LiveAccuracy
	c.Evidence = fmt.Sprintf("accuracy from ground truth %.3f (version %d, %d labelled rows) against %.3f (version %d, %d labelled rows): drop %.3f (max %g)",
		*w.CanaryAccuracy, w.CanaryVersion, w.CanaryLabelled, *w.LiveAccuracy, w.LiveVersion, w.LiveLabelled, drop, c.Threshold)
	return c
}

// estimatedAccuracyCheck fills c (its gate and threshold set) from CBPE's estimates of both versions.
func estimatedAccuracyCheck(c slipway.GateCheck, w CanaryWindow) slipway.GateCheck {
	c.Figures["canary_estimated_rows"], c.Figures["live_estimated_rows"] = float64(w.CanaryEstRows), float64(w.LiveEstRows)
	if w.CanaryEstimate == nil || w.LiveEstimate == nil {
		c.Evidence = fmt.Sprintf("no label-free estimate either (%d rows of version %d and %d of version %d with a predicted probability)",
			w.CanaryEstRows, w.CanaryVersion, w.LiveEstRows, w.LiveVersion)
		return c
	}
	drop := *w.LiveEstimate - *w.CanaryEstimate
	c.Value, c.Passed, c.Source = fptr(drop), drop <= c.Threshold, SourceEstimate
	c.Figures["canary_estimated_accuracy"], c.Figures["live_estimated_accuracy"] = *w.CanaryEstimate, *w.LiveEstimate
	c.Evidence = fmt.Sprintf("estimated accuracy (CBPE) %.3f (version %d, %d rows, %s) against %.3f (version %d, %d rows, %s): drop %.3f (max %g)",
		*w.CanaryEstimate, w.CanaryVersion, w.CanaryEstRows, calibrationNote(w.CanaryReference), *w.LiveEstimate, w.LiveVersion, w.LiveEstRows,
		calibrationNote(w.LiveReference), drop, c.Threshold)
	return c
}

// calibrationNote says how a version's scores were calibrated.
func calibrationNote(ref *slipway.EstimateReference) string {
	if ref == nil || ref.Calibration != "isotonic" {
		return "scores taken as probabilities: no labelled reference yet"
	}
	return fmt.Sprintf("calibrated on %d labelled rows from %s", ref.Rows, ref.From.Format(time.RFC3339))
}

// JudgeShadow applies the gates to a shadow step's window, as the shadow comparison report measured it.
func JudgeShadow(g slipway.RolloutGates, rep *slipway.ShadowReport) Verdict {
	g = g.WithDefaults()
	minReq := minRequestsCheck(g, rep.Requests, "requests compared with the shadow")
	if !minReq.Passed {
		return Verdict{Checks: []slipway.GateCheck{minReq}, Summary: minReq.Evidence}
	}
	checks := []slipway.GateCheck{minReq, errorRateCheck(g, rep.Errors.Shadow, rep.Requests, "copies the shadow failed to answer")}
	if g.MaxLatencyRatio != nil {
		var shadowMS, liveMS float64
		if p := rep.LatencyP99MS.Shadow; p != nil {
			shadowMS = *p
		}
		if p := rep.LatencyP99MS.Live; p != nil {
			liveMS = *p
		}
		checks = append(checks, latencyCheck(g, shadowMS, liveMS, rep.LatencyP99MS.Live != nil))
	}
	if g.MinAgreement != nil {
		c := slipway.GateCheck{Gate: "min_agreement", Threshold: *g.MinAgreement, Passed: true,
			Figures: map[string]float64{"compared_rows": float64(rep.Compared)}}
		if rep.Agreement == nil {
			c.Evidence = fmt.Sprintf("not measured: none of the %d compared rows has a predicted class on both sides (a regression?)", rep.Compared)
		} else {
			c.Value, c.Passed = rep.Agreement, *rep.Agreement >= *g.MinAgreement
			c.Evidence = fmt.Sprintf("agreement %.1f%% (min %.1f%%) over %d compared rows", 100**rep.Agreement, 100**g.MinAgreement, rep.Compared)
		}
		checks = append(checks, c)
	}
	return verdict(checks)
}

func verdict(checks []slipway.GateCheck) Verdict {
	v := Verdict{Enough: true, Passed: true, Checks: checks}
	var failed, all []string
	for _, c := range checks {
		all = append(all, c.Gate+": "+c.Evidence)
		if !c.Passed {
			v.Passed = false
			failed = append(failed, c.Gate+": "+c.Evidence)
		}
	}
	v.Summary = strings.Join(all, "; ")
	if !v.Passed {
		v.Summary = strings.Join(failed, "; ")
	}
	return v
}

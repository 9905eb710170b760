package monitor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/stats"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Label-free performance estimation (CBPE, internal/stats/cbpe.go) of a deployment's captured predictions:
// each version's scores are calibrated on the labelled rows of its first labelled window (its reference), and
// every captured row of a window, labelled or not, adds its expected share of the confusion matrix.

const (
	// minReferenceRows is how many labelled rows (of both classes) a reference needs; the first labelled
	// window is extended by whole windows until it has them. Fewer in all: the scores are taken as they are.
	minReferenceRows = 100
	// maxReferenceRows bounds the reference kept in memory (its first rows).
	maxReferenceRows = 200_000
	// maxEstimateRows bounds the rows one window's estimate holds (its first rows), as the shadow report does.
	maxEstimateRows = 1_000_000
	// referenceTTL is how long a version's calibration is reused: late ground truth for the reference window
	// changes it, rarely and slightly.
	referenceTTL = time.Minute
)

// Calibration methods, as EstimateReference.Calibration says them.
const (
	CalibrationIsotonic = "isotonic"
	CalibrationNone     = "none"
)

// calibrations caches each version's calibration, by deployment and version.
type calibrations struct {
	mu sync.Mutex
	m  map[firstWindowKey]*calibration
}

// calibration is a version's reference: nil cal means the scores are taken as probabilities.
type calibration struct {
	cal        *stats.Calibrator
	ref        slipway.EstimateReference
	multiclass bool // the reference's labels have more than two classes: CBPE here is binary only
	at         time.Time
}

// errStopScan ends a scan early.
var errStopScan = errors.New("stop scan")

// outputsOf picks the prediction and the score tensors of a capture's outputs: the target's names, else the
// usual names (a version without an output schema).
func outputsOf(outs []workerproto.Tensor, tg target) (pred, score *workerproto.Tensor) {
	for i := range outs {
		switch outs[i].Name {
		case tg.prediction:
			pred = &outs[i]
		case tg.score:
			score = &outs[i]
		}
	}
	for i := range outs {
		if score == nil && tg.score == "" && slices.ContainsFunc(scoreNames, func(n string) bool { return strings.EqualFold(n, outs[i].Name) }) {
			score = &outs[i]
		}
	}
	if pred == nil && len(outs) == 1 && score == nil {
		pred = &outs[0]
	}
	return pred, score
}

// scoredRow reads row i of a capture's outputs: its raw score and whether it was predicted positive (from the
// prediction output, else the score ≥ 0.5). ok is false without a score for that row.
func scoredRow(pred, score *workerproto.Tensor, i int, tg target, positive string) (raw float64, predPos, ok bool) {
	if score == nil || len(score.Shape) == 0 || i >= int(score.Shape[0]) {
		return 0, false, false
	}
	raw = scoreOf(score, i)
	if pred != nil && i < int(pred.NumElements()) {
		return raw, tensorText(pred, i, tg.dtype) == positive, true
	}
	return raw, raw >= 0.5, true
}

// calibrationFor is version's calibration on deployment, from its reference (see the package comment).
func (s *Service) calibrationFor(ctx context.Context, deployment string, version int, window time.Duration, tg target, positive string) (*calibration, error) {
	key := firstWindowKey{deployment, version}
	now := s.now()
	s.cals.mu.Lock()
	c := s.cals.m[key]
	s.cals.mu.Unlock()
	if c != nil && now.Sub(c.at) < referenceTTL {
		return c, nil
	}
	c, err := s.fitCalibration(ctx, deployment, version, window, tg, positive, now)
	if err != nil {
		return nil, err
	}
	if c.cal == nil {
		return c, nil // not cached: the first labels may arrive any moment, and finding none is cheap
	}
	s.cals.mu.Lock()
	if s.cals.m == nil {
		s.cals.m = map[firstWindowKey]*calibration{}
	}
	s.cals.m[key] = c
	s.cals.mu.Unlock()
	return c, nil
}

// fitCalibration reads the version's labelled rows from the first one, a window at a time, until the reference
// has minReferenceRows of both classes, and fits the isotonic calibration on them.
func (s *Service) fitCalibration(ctx context.Context, deployment string, version int, window time.Duration, tg target, positive string, now time.Time) (*calibration, error) {
	c := &calibration{at: now, ref: slipway.EstimateReference{Version: version, Calibration: CalibrationNone}}
	var scores []float64
	var truth []bool
	classes := map[string]bool{}
	var start, end time.Time
	err := s.data.ScanLabelled(ctx, deployment, time.UnixMilli(0), now, func(cp *slipway.Capture, fbs []*slipway.Feedback) error {
		if cp.ModelVersion != version {
			return nil
		}
		if !end.IsZero() && !cp.Time.Before(end) {
			if len(scores) >= minReferenceRows && len(classes) == 2 {
				return errStopScan
			}
			for !cp.Time.Before(end) {
				end = end.Add(window)
			}
		}
		outs, err := workerproto.DecodeTensors(cp.Outputs)
		if err != nil {
			return nil // an undecodable capture is skipped, as performance does
		}
		pred, score := outputsOf(outs, tg)
		for _, f := range fbs {
			if f.Label == nil {
				continue
			}
			raw, _, ok := scoredRow(pred, score, f.Row, tg, positive)
			if !ok {
				continue
			}
			if end.IsZero() {
				start, end = cp.Time, cp.Time.Add(window)
			}
			classes[*f.Label] = true
			scores, truth = append(scores, raw), append(truth, *f.Label == positive)
		}
		if len(scores) >= maxReferenceRows {
			return errStopScan
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, fmt.Errorf("reference of version %d of %s: %w", version, deployment, err)
	}
	switch {
	case len(classes) > 2:
		c.multiclass = true
	case len(scores) >= minReferenceRows && len(classes) == 2:
		if end.After(now) {
			end = now
		}
		c.cal = stats.FitIsotonic(scores, truth)
		c.ref = slipway.EstimateReference{Version: version, Calibration: CalibrationIsotonic, From: &start, To: &end, Rows: len(scores)}
	}
	return c, nil
}

// estimateAcc gathers one window's scored rows.
type estimateAcc struct {
	raw      []float64
	predPos  []bool
	versions []int
}

// estimates computes CBPE's estimate per window of [from, to) (windows of length window from start) over the
// captures of version (0: every version, each calibrated on its own reference). A window without scored rows,
// a regressor and a multi-class model get none. The references are read after the scan, so that no two
// queries are open at once.
func (s *Service) estimates(ctx context.Context, deployment string, version int, st slipway.MonitoringSettings, tg target, start, from, to time.Time, window time.Duration) (map[int64]*slipway.EstimatedPerformance, error) {
	if tg.task == "regression" {
		return nil, nil
	}
	wins := map[int64]*estimateAcc{}
	err := s.data.ScanCaptures(ctx, deployment, from, to, func(c *slipway.Capture) error {
		if version != 0 && c.ModelVersion != version {
			return nil
		}
		outs, err := workerproto.DecodeTensors(c.Outputs)
		if err != nil {
			return nil // an undecodable capture is skipped, as performance does
		}
		pred, score := outputsOf(outs, tg)
		if score == nil {
			return nil
		}
		k := int64(c.Time.Sub(start) / window)
		a := wins[k]
		if a == nil {
			a = &estimateAcc{}
			wins[k] = a
		}
		for i := 0; i < c.Rows && len(a.raw) < maxEstimateRows; i++ {
			if raw, pp, ok := scoredRow(pred, score, i, tg, st.PositiveLabel); ok {
				a.raw, a.predPos, a.versions = append(a.raw, raw), append(a.predPos, pp), append(a.versions, c.ModelVersion)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("estimate the performance of %s: %w", deployment, err)
	}
	cals := map[int]*calibration{}
	out := make(map[int64]*slipway.EstimatedPerformance, len(wins))
	for k, a := range wins {
		probs := make([]float64, len(a.raw))
		used := map[int]bool{}
		for i, v := range a.versions {
			cal := cals[v]
			if cal == nil {
				if cal, err = s.calibrationFor(ctx, deployment, v, st.DriftWindow.D(), tg, st.PositiveLabel); err != nil {
					return nil, err
				}
				cals[v] = cal
			}
			if cal.multiclass {
				return nil, nil
			}
			used[v] = true
			probs[i] = cal.cal.Apply(a.raw[i])
		}
		if len(probs) == 0 {
			continue
		}
		e := stats.EstimateBinary(a.raw, probs, a.predPos)
		ep := &slipway.EstimatedPerformance{Method: "cbpe", Rows: e.N, Accuracy: e.Accuracy, Precision: e.Precision, Recall: e.Recall,
			F1: e.F1, AccuracyStdError: e.AccuracyStdError}
		if auc := e.ROCAUC; !math.IsNaN(auc) {
			ep.ROCAUC = &auc
		}
		for v := range used {
			ep.References = append(ep.References, cals[v].ref)
		}
		slices.SortFunc(ep.References, func(x, y slipway.EstimateReference) int { return x.Version - y.Version })
		out[k] = ep
	}
	return out, nil
}

// addEstimates adds the estimates of version's captures (0: every version) to perf, the performance windows of
// the same query (defaults resolved as performance does).
func (s *Service) addEstimates(ctx context.Context, deployment string, version int, from, to time.Time, window time.Duration, perf []*slipway.Performance) ([]*slipway.Performance, error) {
	d, st, err := s.deploymentSettings(ctx, deployment)
	if err != nil {
		return nil, err
	}
	if window <= 0 {
		window = st.DriftWindow.D()
	}
	if to.IsZero() {
		to = s.now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-24 * time.Hour)
	}
	start := from.Truncate(window)
	est, err := s.estimates(ctx, deployment, version, st, s.target(ctx, d, st), start, from, to, window)
	if err != nil {
		return nil, err
	}
	return withEstimates(perf, est, start, window), nil
}

// withEstimates adds each window's estimate to the performance windows (windows with only an estimate are
// added), in time order.
func withEstimates(perf []*slipway.Performance, est map[int64]*slipway.EstimatedPerformance, start time.Time, window time.Duration) []*slipway.Performance {
	if len(est) == 0 {
		return perf
	}
	byFrom := make(map[int64]*slipway.Performance, len(perf))
	for _, p := range perf {
		byFrom[int64(p.From.Sub(start)/window)] = p
	}
	for k, e := range est {
		p := byFrom[k]
		if p == nil {
			p = &slipway.Performance{From: start.Add(time.Duration(k) * window), To: start.Add(time.Duration(k+1) * window), Task: "classification"}
			perf = append(perf, p)
		}
		p.Estimated = e
	}
	slices.SortFunc(perf, func(a, b *slipway.Performance) int { return a.From.Compare(b.From) })
	return perf
}

// VersionEstimatedAccuracy is CBPE's estimated accuracy of the requests version answered in [from, to), over
// how many rows, and the calibration it used; nil when none of them has a probability (or the model is not a
// binary classifier).
func (s *Service) VersionEstimatedAccuracy(ctx context.Context, deployment string, version int, from, to time.Time) (*float64, int, *slipway.EstimateReference, error) {
	window := to.Sub(from) + time.Nanosecond
	ps, err := s.addEstimates(ctx, deployment, version, from, to, window, nil)
	if err != nil {
		return nil, 0, nil, err
	}
	var sum float64
	var rows int
	var ref *slipway.EstimateReference
	for _, p := range ps {
		if e := p.Estimated; e != nil {
			sum += e.Accuracy * float64(e.Rows)
			rows += e.Rows
			if len(e.References) > 0 {
				ref = &e.References[0]
			}
		}
	}
	if rows == 0 {
		return nil, 0, nil, nil
	}
	acc := sum / float64(rows)
	return &acc, rows, ref, nil
}

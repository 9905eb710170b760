package monitor

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/stats"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// MaxWindows bounds how many windows one performance or metrics query returns.
const MaxWindows = 2000

// Performance computes model quality from ground truth joined with captured predictions, per window of the given
// length (0: the deployment's drift window) over [from, to), with CBPE's label-free estimate next to the truth; windows with neither are left out.
func (s *Service) Performance(ctx context.Context, deployment string, from, to time.Time, window time.Duration) ([]*slipway.Performance, error) {
	return s.PerformanceOfVersion(ctx, deployment, 0, from, to, window)
}

// VersionAccuracy is the accuracy of the requests version answered in [from, to) (a canary's, or the live
// version's beside it) against the ground truth that has arrived for them, and how many labelled rows it
// rests on; nil when none has ground truth yet or the model is not a classifier.
func (s *Service) VersionAccuracy(ctx context.Context, deployment string, version int, from, to time.Time) (*float64, int, error) {
	ps, err := s.performance(ctx, deployment, version, from, to, to.Sub(from)+time.Nanosecond)
	if err != nil {
		return nil, 0, err
	}
	var sum float64
	var labelled int
	for _, p := range ps { // [from, to) may straddle two windows of its own length
		if v, ok := perfValue(p, "accuracy"); ok {
			sum += v * float64(p.Labelled)
			labelled += p.Labelled
		}
	}
	if labelled == 0 {
		return nil, 0, nil
	}
	acc := sum / float64(labelled)
	return &acc, labelled, nil
}

// performance computes Performance over the requests of version (0: every version).
func (s *Service) performance(ctx context.Context, deployment string, version int, from, to time.Time, window time.Duration) ([]*slipway.Performance, error) {
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
	if !from.Before(to) {
		return nil, invalidf("from must be before to")
	}
	if to.Sub(from)/window > MaxWindows {
		return nil, invalidf("%s windows from %s to %s would be more than %d: use a longer window or a shorter range", window, from.Format(time.RFC3339), to.Format(time.RFC3339), MaxWindows)
	}
	tg := s.target(ctx, d, st)
	wins := map[int64]*perfWindow{}
	start := from.Truncate(window)
	err = s.data.ScanLabelled(ctx, deployment, from, to, func(c *slipway.Capture, fbs []*slipway.Feedback) error {
		if version != 0 && c.ModelVersion != version {
			return nil
		}
		outs, err := workerproto.DecodeTensors(c.Outputs)
		if err != nil {
			return nil // an undecodable capture is skipped
		}
		var pred, score *workerproto.Tensor
		for i := range outs {
			switch outs[i].Name {
			case tg.prediction:
				pred = &outs[i]
			case tg.score:
				score = &outs[i]
			}
		}
		if pred == nil && len(outs) == 1 {
			pred = &outs[0]
		}
		if pred == nil {
			return nil
		}
		k := int64(c.Time.Sub(start) / window)
		w := wins[k]
		if w == nil {
			w = &perfWindow{all: newPerfAcc(score != nil), held: newPerfAcc(score != nil), treated: newPerfAcc(score != nil)}
			wins[k] = w
		}
		side := w.treated
		if c.Holdout {
			side, w.anyHeld = w.held, true
		}
		for _, a := range []*perfAcc{w.all, side} {
			a.add(fbs, pred, score, tg.dtype)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []*slipway.Performance
	for k := int64(0); start.Add(time.Duration(k) * window).Before(to); k++ {
		w := wins[k]
		if w == nil {
			continue
		}
		p := w.all.performance(st.PositiveLabel)
		if p == nil {
			continue
		}
		p.From, p.To = start.Add(time.Duration(k)*window), start.Add(time.Duration(k+1)*window)
		if w.anyHeld {
			p.Holdout, p.Treated = w.held.performance(st.PositiveLabel), w.treated.performance(st.PositiveLabel)
		}
		out = append(out, p)
	}
	if out == nil {
		out = []*slipway.Performance{}
	}
	return out, nil
}

// tensorFloat reads element i of a numeric tensor (NaN for text that is not a number).
func tensorFloat(t *workerproto.Tensor, i int) float64 {
	if t.Datatype == "BYTES" {
		v, err := strconv.ParseFloat(string(t.Strings[i]), 64)
		if err != nil {
			return math.NaN()
		}
		return v
	}
	return workerproto.ReadFloat(workerproto.ParseDatatype(t.Datatype), t.Data, i)
}

// tensorText renders element i the way labels are normalised (integers in decimal, booleans as true/false).
func tensorText(t *workerproto.Tensor, i int, dtype string) string {
	if t.Datatype == "BYTES" {
		return string(t.Strings[i])
	}
	v := tensorFloat(t, i)
	if t.Datatype == "BOOL" || dtype == "bool" {
		return strconv.FormatBool(v != 0)
	}
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// scoreOf reads the positive class's probability of row i: a [N] tensor, or the last column of a [N, K] one.
func scoreOf(t *workerproto.Tensor, i int) float64 {
	k := 1
	for _, d := range t.Shape[1:] {
		k *= int(d)
	}
	return tensorFloat(t, i*k+k-1)
}

// perfWindow accumulates one window's labelled rows: all of them, and apart those of the holdout share and
// the treated rest.
type perfWindow struct {
	all, held, treated *perfAcc
	anyHeld            bool
}

// perfAcc is the truth and the predictions of labelled rows.
type perfAcc struct {
	truth, pred []string
	scores      []float64
	hasScores   bool
	yt, yp      []float64
}

func newPerfAcc(hasScores bool) *perfAcc { return &perfAcc{hasScores: hasScores} }

// add takes a capture's labelled rows: its prediction (and score) against each row's truth.
func (a *perfAcc) add(fbs []*slipway.Feedback, pred, score *workerproto.Tensor, dtype string) {
	for _, f := range fbs {
		if f.Row >= int(pred.NumElements()) {
			continue
		}
		switch {
		case f.Value != nil:
			a.yt = append(a.yt, *f.Value)
			a.yp = append(a.yp, tensorFloat(pred, f.Row))
		case f.Label != nil:
			a.truth = append(a.truth, *f.Label)
			a.pred = append(a.pred, tensorText(pred, f.Row, dtype))
			if score != nil && f.Row < int(score.NumElements()) {
				a.scores = append(a.scores, scoreOf(score, f.Row))
			} else {
				a.hasScores = false
			}
		}
	}
}

// performance computes the metrics of the rows taken (nil: none labelled).
func (a *perfAcc) performance(positive string) *slipway.Performance {
	p := &slipway.Performance{}
	switch {
	case len(a.truth) > 0:
		var scores []float64
		if a.hasScores && len(a.scores) == len(a.truth) {
			scores = a.scores
		}
		c := stats.ClassificationMetrics(a.truth, a.pred, scores, positive)
		p.Task, p.Labelled, p.Classification = "classification", len(a.truth), &c
	case len(a.yt) > 0:
		r := stats.RegressionMetrics(a.yt, a.yp)
		p.Task, p.Labelled, p.Regression = "regression", len(a.yt), &r
	default:
		return nil
	}
	return p
}

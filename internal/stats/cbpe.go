package stats

import (
	"math"
	"slices"
	"sort"
)

// Confidence-based performance estimation (CBPE, as NannyML does it) for binary classifiers: when the score a
// model gives is a calibrated probability that the row is positive, the expected confusion matrix of a window
// follows from the scores alone, and with it the expected accuracy, precision, recall, F1 and ROC AUC, long
// before the ground truth arrives. The scores are first calibrated on a reference window whose labels are known
// (isotonic regression), because models are rarely calibrated as they come.

// Calibrator maps a classifier's score to the probability that the row is positive: a non-decreasing step
// function fitted by isotonic regression (pool adjacent violators), linear between steps and clipped beyond the
// scores it was fitted on, as scikit-learn's IsotonicRegression(out_of_bounds="clip") predicts.
type Calibrator struct {
	// x and y are the fitted points: each block of pooled scores contributes its lowest and highest score with
	// the block's share of positives.
	x, y []float64
}

// Identity is a calibrator that takes scores as probabilities (clipped to [0, 1]): for a model known to be
// calibrated, or when there is no labelled reference yet.
func Identity() *Calibrator { return nil }

// FitIsotonic fits a calibrator to scores and whether each row was positive. Rows with a NaN score are left
// out; with no rows it is Identity.
func FitIsotonic(scores []float64, positive []bool) *Calibrator {
	idx := make([]int, 0, len(scores))
	for i, s := range scores {
		if !math.IsNaN(s) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return Identity()
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmpFloat(scores[a], scores[b]) })
	var blocks []isoBlock // one per distinct score first: ties must share a value
	for _, i := range idx {
		y := 0.0
		if positive[i] {
			y = 1
		}
		if n := len(blocks); n > 0 && blocks[n-1].hi == scores[i] {
			blocks[n-1].sum += y
			blocks[n-1].n++
			continue
		}
		blocks = append(blocks, isoBlock{lo: scores[i], hi: scores[i], sum: y, n: 1})
	}
	blocks = pool(blocks)
	// A block of few rows that were all positive (or all negative) is not a certainty: each block's share
	// takes half a row of each class (Jeffreys' prior), and pooling runs again since that can reorder blocks of
	// different sizes. Without it, scores beyond most of the reference map to 0 or 1 and a shifted window's
	// ROC AUC is overstated.
	for k := range blocks {
		blocks[k].sum = (blocks[k].sum + 0.5) / (blocks[k].n + 1) * blocks[k].n
	}
	blocks = pool(blocks)
	c := &Calibrator{}
	for _, b := range blocks {
		m := b.sum / b.n
		c.x, c.y = append(c.x, b.lo), append(c.y, m)
		if b.hi != b.lo {
			c.x, c.y = append(c.x, b.hi), append(c.y, m)
		}
	}
	return c
}

// isoBlock is a run of adjacent scores pooled to one value: sum/n.
type isoBlock struct{ lo, hi, sum, n float64 }

// pool merges adjacent blocks until their values increase strictly (pool adjacent violators, with a stack).
func pool(in []isoBlock) []isoBlock {
	out := in[:0]
	for _, b := range in {
		out = append(out, b)
		for len(out) > 1 {
			a, b := out[len(out)-2], out[len(out)-1]
			if a.sum/a.n < b.sum/b.n {
				break
			}
			out = append(out[:len(out)-2], isoBlock{lo: a.lo, hi: b.hi, sum: a.sum + b.sum, n: a.n + b.n})
		}
	}
	return out
}

// Apply is the calibrated probability of a score (NaN stays NaN).
func (c *Calibrator) Apply(score float64) float64 {
	if math.IsNaN(score) {
		return score
	}
	if c == nil || len(c.x) == 0 {
		return math.Min(math.Max(score, 0), 1)
	}
	k := sort.SearchFloat64s(c.x, score) // first x >= score
	switch {
	case k == 0:
		return c.y[0]
	case k == len(c.x):
		return c.y[len(c.y)-1]
	case c.x[k] == score:
		return c.y[k]
	}
	x0, x1, y0, y1 := c.x[k-1], c.x[k], c.y[k-1], c.y[k]
	return y0 + (y1-y0)*(score-x0)/(x1-x0)
}

// Estimate is the expected quality of a binary classifier over a window, from calibrated probabilities.
type Estimate struct {
	N                               int
	Accuracy, Precision, Recall, F1 float64
	ROCAUC                          float64 // NaN when every row has probability 0 or 1 of one class
	// AccuracyStdError is the standard deviation of the realized accuracy around the estimate that the
	// labels' own randomness causes (sqrt(Σ q(1−q))/n, q the probability that a row is predicted right):
	// how far the truth may land from a perfect estimate by chance alone.
	AccuracyStdError float64
}

// EstimateBinary is CBPE's estimate over rows with raw score scores[i], calibrated probability of positive
// probs[i] and predicted class predPositive[i]. The confusion matrix is its expectation (TP = Σ p over rows
// predicted positive, FP = Σ 1−p, FN = Σ p over rows predicted negative, TN = Σ 1−p); precision, recall and F1
// are computed from it (0 where undefined, scikit-learn's zero_division). ROC AUC is the area under the
// expected ROC curve: thresholds at the distinct raw scores, expected true and false positives summed from the
// highest score down (NannyML's estimator). Rows with a NaN probability are left out.
func EstimateBinary(scores, probs []float64, predPositive []bool) Estimate {
	var tp, fp, fn, tn, varSum float64
	idx := make([]int, 0, len(probs))
	for i, p := range probs {
		if math.IsNaN(p) {
			continue
		}
		idx = append(idx, i)
		q := p
		if predPositive[i] {
			tp += p
			fp += 1 - p
		} else {
			fn += p
			tn += 1 - p
			q = 1 - p
		}
		varSum += q * (1 - q)
	}
	e := Estimate{N: len(idx), ROCAUC: math.NaN()}
	if e.N == 0 {
		e.Accuracy, e.Precision, e.Recall, e.F1 = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		return e
	}
	n := float64(e.N)
	e.Accuracy = (tp + tn) / n
	e.AccuracyStdError = math.Sqrt(varSum) / n
	if tp+fp > 0 {
		e.Precision = tp / (tp + fp)
	}
	if tp+fn > 0 {
		e.Recall = tp / (tp + fn)
	}
	if 2*tp+fp+fn > 0 {
		e.F1 = 2 * tp / (2*tp + fp + fn)
	}
	e.ROCAUC = expectedAUC(scores, probs, idx)
	return e
}

// expectedAUC integrates the expected ROC curve (trapezoids) over the rows idx, walking the raw scores from the
// highest down; ties in the raw score form one threshold.
func expectedAUC(scores, probs []float64, idx []int) float64 {
	slices.SortFunc(idx, func(a, b int) int { return cmpFloat(scores[b], scores[a]) })
	var pos, neg float64
	for _, i := range idx {
		pos += probs[i]
		neg += 1 - probs[i]
	}
	if pos <= 0 || neg <= 0 {
		return math.NaN()
	}
	var area, tp, fp float64
	for k := 0; k < len(idx); {
		j := k
		ptp, pfp := tp, fp
		for j < len(idx) && scores[idx[j]] == scores[idx[k]] {
			tp += probs[idx[j]]
			fp += 1 - probs[idx[j]]
			j++
		}
		area += (fp - pfp) / neg * (tp + ptp) / 2 / pos
		k = j
	}
	return area
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package stats

import (
	"math"
	"slices"
	"sort"

	"github.com/slipway-ml/slipway"
)

// Classification is the quality of predicted labels against true labels (a root wire type).
type Classification = slipway.ClassificationMetrics

// ClassificationMetrics compares predicted with true labels. scores, when not nil, holds the predicted
// probability of positive for each row (used for ROC AUC and log loss when the problem is binary).
func ClassificationMetrics(truth, pred []string, scores []float64, positive string) Classification {
	c := Classification{N: len(truth)}
	if len(truth) == 0 {
		return Classification{Accuracy: math.NaN(), Precision: math.NaN(), Recall: math.NaN(), F1: math.NaN()}
	}
	classes := map[string]bool{}
	correct := 0
	for i := range truth {
		classes[truth[i]] = true
		classes[pred[i]] = true
		if truth[i] == pred[i] {
			correct++
		}
	}
	c.Accuracy = float64(correct) / float64(len(truth))
	binary := len(classes) <= 2
	if binary {
		c.Precision, c.Recall, c.F1 = prf(truth, pred, positive)
	} else {
		keys := make([]string, 0, len(classes))
		for k := range classes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p, r, f := prf(truth, pred, k)
			c.Precision += p
			c.Recall += r
			c.F1 += f
		}
		n := float64(len(keys))
		c.Precision, c.Recall, c.F1 = c.Precision/n, c.Recall/n, c.F1/n
	}
	if binary && scores != nil && len(scores) == len(truth) {
		y := make([]bool, len(truth))
		for i, t := range truth {
			y[i] = t == positive
		}
		if auc, ok := ROCAUC(y, scores); ok {
			c.ROCAUC = &auc
		}
		ll := LogLoss(y, scores)
		c.LogLoss = &ll
	}
	return c
}

// prf is precision, recall and F1 of one class, 0 where undefined (scikit-learn's zero_division default).
func prf(truth, pred []string, class string) (p, r, f float64) {
	var tp, fp, fn float64
	for i := range truth {
		switch {
		case pred[i] == class && truth[i] == class:
			tp++
		case pred[i] == class:
			fp++
		case truth[i] == class:
			fn++
		}
	}
	if tp+fp > 0 {
		p = tp / (tp + fp)
	}
	if tp+fn > 0 {
		r = tp / (tp + fn)
	}
	if p+r > 0 {
		f = 2 * p * r / (p + r)
	}
	return p, r, f
}

// ROCAUC is sklearn.metrics.roc_auc_score for binary labels: the Mann–Whitney probability that a positive scores
// above a negative, ties counting one half. ok is false when only one class is present.
func ROCAUC(y []bool, scores []float64) (float64, bool) {
	idx := make([]int, len(y))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	var npos, nneg, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // average 1-based rank of the tie group
		for k := i; k < j; k++ {
			if y[idx[k]] {
				npos++
				rankSum += avg
			} else {
				nneg++
			}
		}
		i = j
	}
	if npos == 0 || nneg == 0 {
		return math.NaN(), false
	}
	return (rankSum - npos*(npos+1)/2) / (npos * nneg), true
}

// LogLoss is sklearn.metrics.log_loss for binary labels and the probability of the positive class, clipped to
// [eps, 1-eps] with eps the float64 machine epsilon (scikit-learn's eps="auto").
func LogLoss(y []bool, p []float64) float64 {
	const eps = 2.220446049250313e-16
	var sum float64
	for i, pos := range y {
		q := math.Min(math.Max(p[i], eps), 1-eps)
		if pos {
			sum -= math.Log(q)
		} else {
			sum -= math.Log(1 - q)
		}
	}
	return sum / float64(len(y))
}

// Regression is the quality of predicted values against true values (a root wire type).
type Regression = slipway.RegressionMetrics

// RegressionMetrics is sklearn's mean_absolute_error, sqrt(mean_squared_error) and r2_score (1 for a perfect
// fit of constant truth, 0 for an imperfect one, as force_finite does).
func RegressionMetrics(truth, pred []float64) Regression {
	n := float64(len(truth))
	r := Regression{N: len(truth)}
	if n == 0 {
		return Regression{MAE: math.NaN(), RMSE: math.NaN(), R2: math.NaN()}
	}
	var mean float64
	for _, t := range truth {
		mean += t
	}
	mean /= n
	var abs, ssRes, ssTot float64
	for i, t := range truth {
		e := t - pred[i]
		abs += math.Abs(e)
		ssRes += e * e
		ssTot += (t - mean) * (t - mean)
	}
	r.MAE = abs / n
	r.RMSE = math.Sqrt(ssRes / n)
	switch {
	case ssTot != 0:
		r.R2 = 1 - ssRes/ssTot
	case ssRes == 0:
		r.R2 = 1
	}
	return r
}

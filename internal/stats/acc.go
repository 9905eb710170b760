package stats

import (
	"cmp"
	"math"
	"slices"
)

// NumericAcc accumulates a current sample of one numeric feature against a reference Dist in one pass, with
// memory bounded by the reference's size: every value is counted either at a reference point it equals or in the
// open interval between two neighbouring points (with the sum of those values). From these counts:
//
//   - the Kolmogorov–Smirnov statistic is exact (the ECDF difference only changes at sample values, and between two
//     reference points the reference ECDF is flat, so its extremes are at the interval ends);
//   - the Wasserstein distance is exact while the accumulator holds at most ExactLimit values (it keeps them);
//     beyond, it is exact except in intervals where the current ECDF crosses the reference's, where the interval's
//     values are treated as one point at their mean (the error is at most the interval's width times the share of
//     current values in it, and crossings happen where the two ECDFs are close);
//   - bin proportions are exact for bins whose edges are reference points (DecileEdges).
//
// With an exact reference (Dist.Exact) the KS statistic and p-value equal SciPy's ks_2samp on the two samples.
type NumericAcc struct {
	ref        *Dist
	eq         []float64 // values equal to ref.Values[i]
	between    []float64 // values in (ref.Values[i-1], ref.Values[i]); index len(ref.Values) is above the last point
	sumBetween []float64
	n          float64
	missing    int64
	sum, sumsq float64
	min, max   float64
	raw        []float64 // the values themselves while there are at most ExactLimit
	rawDropped bool
	// Lookup acceleration: cells split [Values[0], Values[K-1]] uniformly; cell c's values have their lower bound
	// in Values between starts[c] and starts[c+1].
	lo, scale float64
	starts    []int32
}

// ExactLimit is how many values a NumericAcc keeps to compute the Wasserstein distance exactly.
const ExactLimit = 100_000

// NewNumericAcc returns an accumulator against ref (which must have at least one point).
func NewNumericAcc(ref *Dist) *NumericAcc {
	k := len(ref.Values)
	a := &NumericAcc{ref: ref, eq: make([]float64, k), between: make([]float64, k+1), sumBetween: make([]float64, k+1),
		min: math.Inf(1), max: math.Inf(-1)}
	if k >= 2 {
		cells := min(4*k, 1<<16)
		a.lo = ref.Values[0]
		span := ref.Values[k-1] - ref.Values[0]
		if span > 0 && !math.IsInf(span, 0) {
			a.scale = float64(cells) / span
			a.starts = make([]int32, cells+1)
			j := 0
			for c := range cells + 1 {
				edge := a.lo + float64(c)/a.scale
				for j < k && ref.Values[j] < edge {
					j++
				}
				a.starts[c] = int32(j)
			}
		}
	}
	return a
}

// lowerBound returns the index of the first reference point >= x.
func (a *NumericAcc) lowerBound(x float64) int {
	vals := a.ref.Values
	if len(vals) == 0 || x <= vals[0] {
		return 0
	}
	if x > vals[len(vals)-1] {
		return len(vals)
	}
	lo, hi := 0, len(vals)
	if a.starts != nil {
		c := int((x - a.lo) * a.scale)
		last := len(a.starts) - 1
		switch {
		case c >= last:
			lo = int(a.starts[last-1])
		default:
			// One cell of margin on each side absorbs rounding in the cell computation.
			lo = int(a.starts[max(c-1, 0)])
			hi = int(a.starts[min(c+2, last)])
			if hi < len(vals) {
				hi++
			}
		}
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if vals[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Add counts one value; NaN counts as missing.
func (a *NumericAcc) Add(x float64) {
	if x != x {
		a.missing++
		return
	}
	a.n++
	a.sum += x
	a.sumsq += x * x
	if x < a.min {
		a.min = x
	}
	if x > a.max {
		a.max = x
	}
	if !a.rawDropped {
		if len(a.raw) < ExactLimit {
			a.raw = append(a.raw, x)
		} else {
			a.raw, a.rawDropped = nil, true
		}
	}
	i := a.lowerBound(x)
	if i < len(a.eq) && a.ref.Values[i] == x {
		a.eq[i]++
		return
	}
	a.between[i]++
	a.sumBetween[i] += x
}

// Merge adds the counts of b (accumulated against the same reference).
func (a *NumericAcc) Merge(b *NumericAcc) {
	for i := range a.eq {
		a.eq[i] += b.eq[i]
	}
	for i := range a.between {
		a.between[i] += b.between[i]
		a.sumBetween[i] += b.sumBetween[i]
	}
	a.n += b.n
	a.missing += b.missing
	a.sum += b.sum
	a.sumsq += b.sumsq
	a.min = math.Min(a.min, b.min)
	a.max = math.Max(a.max, b.max)
	if a.rawDropped || b.rawDropped || len(a.raw)+len(b.raw) > ExactLimit {
		a.raw, a.rawDropped = nil, true
	} else {
		a.raw = append(a.raw, b.raw...)
	}
}

// Exact reports whether Wasserstein is exact (the values are kept and the reference is exact).
func (a *NumericAcc) Exact() bool { return !a.rawDropped && a.ref.Exact }

// N is the number of (non-missing) values; Missing the number of NaNs.
func (a *NumericAcc) N() float64                 { return a.n }
func (a *NumericAcc) Missing() int64             { return a.missing }
func (a *NumericAcc) Mean() float64              { return a.sum / a.n }
func (a *NumericAcc) MinMax() (float64, float64) { return a.min, a.max }

// KS returns the two-sample Kolmogorov–Smirnov statistic and SciPy's p-value for the reference and the current
// values (NaN when either is empty).
func (a *NumericAcc) KS() (d, p float64) {
	n1, n2 := a.ref.Count, a.n
	if n1 == 0 || n2 == 0 {
		return math.NaN(), math.NaN()
	}
	var cr, cc float64
	for i, w := range a.ref.Weights {
		cc += a.between[i]
		d = math.Max(d, math.Abs(cr/n1-cc/n2))
		cr += w
		cc += a.eq[i]
		d = math.Max(d, math.Abs(cr/n1-cc/n2))
	}
	return KSPValue(d, int(math.Round(n1)), int(n2))
}

// Wasserstein returns the first Wasserstein distance between the reference and the current values.
func (a *NumericAcc) Wasserstein() float64 {
	n1, n2 := a.ref.Count, a.n
	k := len(a.ref.Values)
	if n1 == 0 || n2 == 0 || k == 0 {
		return math.NaN()
	}
	if !a.rawDropped {
		return a.wassersteinExact()
	}
	b := a.ref.Values
	// Below the first reference point F = 0.
	sum := (a.between[0]*b[0] - a.sumBetween[0]) / n2
	cr, cc := a.ref.Weights[0], a.between[0]+a.eq[0]
	for i := 1; i < k; i++ {
		L := b[i] - b[i-1]
		F := cr / n1
		gLo := cc / n2
		cnt := a.between[i]
		if cnt == 0 {
			sum += math.Abs(F-gLo) * L
		} else {
			gHi := gLo + cnt/n2
			intG := gLo*L + (cnt*b[i]-a.sumBetween[i])/n2
			switch {
			case F <= gLo:
				sum += intG - F*L
			case F >= gHi:
				sum += F*L - intG
			default: // the ECDFs cross inside the interval: the values as one point at their mean
				mu := a.sumBetween[i] / cnt
				sum += math.Abs(F-gLo)*(mu-b[i-1]) + math.Abs(F-gHi)*(b[i]-mu)
			}
		}
		cr += a.ref.Weights[i]
		cc += cnt + a.eq[i]
	}
	// Above the last point F = 1.
	sum += (a.sumBetween[k] - a.between[k]*b[k-1]) / n2
	return sum
}

// wassersteinExact integrates |F - G| over the merged reference points and kept values.
func (a *NumericAcc) wassersteinExact() float64 {
	cur := a.raw
	slices.Sort(cur)
	vals, wts := a.ref.Values, a.ref.Weights
	n1, n2 := a.ref.Count, a.n
	var sum, prev, cr, cc float64
	i, j := 0, 0
	first := true
	for i < len(vals) || j < len(cur) {
		var v float64
		if j >= len(cur) || (i < len(vals) && vals[i] <= cur[j]) {
			v = vals[i]
		} else {
			v = cur[j]
		}
		if !first {
			sum += math.Abs(cr/n1-cc/n2) * (v - prev)
		}
		first = false
		for i < len(vals) && vals[i] == v {
			cr += wts[i]
			i++
		}
		for j < len(cur) && cur[j] == v {
			cc++
			j++
		}
		prev = v
	}
	return sum
}

// WassersteinNormed is Evidently's normed score: Wasserstein / max(reference std, 0.001).
func (a *NumericAcc) WassersteinNormed() float64 {
	return a.Wasserstein() / math.Max(a.ref.Std, 0.001)
}

// Binned returns the reference and current proportions in the bins (-inf, e1], (e1, e2], ..., (ek, +inf), where
// the edges are reference points (DecileEdges).
func (a *NumericAcc) Binned(edges []float64) (ref, cur []float64) {
	ref = make([]float64, len(edges)+1)
	cur = make([]float64, len(edges)+1)
	bin := 0
	for i, v := range a.ref.Values {
		for bin < len(edges) && edges[bin] < v {
			bin++
		}
		ref[bin] += a.ref.Weights[i]
		cur[bin] += a.between[i] + a.eq[i]
	}
	cur[len(edges)] += a.between[len(a.ref.Values)]
	for i := range ref {
		ref[i] /= a.ref.Count
		cur[i] /= a.n
	}
	return ref, cur
}

// CatAcc accumulates the category counts of a current sample against reference counts. K is string for
// categorical features and float64 for numbers with few distinct values (treated as categories).
type CatAcc[K cmp.Ordered] struct {
	index    map[K]int
	keys     []K
	ref, cur []float64
	refTotal float64
	n        float64
	missing  int64
	maxKeys  int
}

// MaxCategories bounds the categories an accumulator tracks; values beyond it are counted in one overflow
// category (reported as the empty key).
const MaxCategories = 10000

// NewCatAcc returns an accumulator against the reference counts.
func NewCatAcc[K cmp.Ordered](refCounts map[K]float64) *CatAcc[K] {
	a := &CatAcc[K]{index: make(map[K]int, len(refCounts)), maxKeys: MaxCategories}
	keys := make([]K, 0, len(refCounts))
	for k := range refCounts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		a.index[k] = len(a.keys)
		a.keys = append(a.keys, k)
		a.ref = append(a.ref, refCounts[k])
		a.cur = append(a.cur, 0)
		a.refTotal += refCounts[k]
	}
	return a
}

// Add counts one value.
func (a *CatAcc[K]) Add(k K) {
	a.n++
	if i, ok := a.index[k]; ok {
		a.cur[i]++
		return
	}
	if len(a.keys) >= a.maxKeys {
		var zero K
		k = zero
		if i, ok := a.index[k]; ok {
			a.cur[i]++
			return
		}
	}
	a.index[k] = len(a.keys)
	a.keys = append(a.keys, k)
	a.ref = append(a.ref, 0)
	a.cur = append(a.cur, 1)
}

// AddBytes counts a string category given as bytes without allocating for known categories.
func AddBytes(a *CatAcc[string], b []byte) {
	if i, ok := a.index[string(b)]; ok {
		a.n++
		a.cur[i]++
		return
	}
	a.Add(string(b))
}

// AddMissing counts a missing value.
func (a *CatAcc[K]) AddMissing() { a.missing++ }

// N is the number of (non-missing) values; Missing the number of missing ones.
func (a *CatAcc[K]) N() float64     { return a.n }
func (a *CatAcc[K]) Missing() int64 { return a.missing }

// Counts returns the categories with their reference and current counts.
func (a *CatAcc[K]) Counts() (keys []K, ref, cur []float64) { return a.keys, a.ref, a.cur }

// ChiSquare is scipy.stats.chi2_contingency on the 2 x k table of reference and current counts.
func (a *CatAcc[K]) ChiSquare() ChiSquareResult {
	if a.n == 0 || a.refTotal == 0 {
		return ChiSquareResult{Statistic: math.NaN(), PValue: math.NaN()}
	}
	ref := make([]float64, 0, len(a.keys))
	cur := make([]float64, 0, len(a.keys))
	for i := range a.keys {
		if a.ref[i]+a.cur[i] > 0 {
			ref = append(ref, a.ref[i])
			cur = append(cur, a.cur[i])
		}
	}
	return ChiSquareContingency([][]float64{ref, cur})
}

// Proportions returns the reference and current proportions per category (Evidently's get_binned_data without
// filling zeros).
func (a *CatAcc[K]) Proportions() (ref, cur []float64) {
	ref = make([]float64, len(a.keys))
	cur = make([]float64, len(a.keys))
	for i := range a.keys {
		ref[i] = a.ref[i] / a.refTotal
		cur[i] = a.cur[i] / a.n
	}
	return ref, cur
}

// JensenShannon is the Jensen–Shannon distance (natural log) between the category proportions.
func (a *CatAcc[K]) JensenShannon() float64 {
	if a.n == 0 || a.refTotal == 0 {
		return math.NaN()
	}
	ref, cur := a.Proportions()
	return JensenShannon(ref, cur)
}

// PSI is the population stability index between the category proportions.
func (a *CatAcc[K]) PSI() float64 {
	if a.n == 0 || a.refTotal == 0 {
		return math.NaN()
	}
	ref, cur := a.Proportions()
	return PSI(ref, cur)
}

// Reference is the distribution the accumulator compares with.
func (a *NumericAcc) Reference() *Dist { return a.ref }

// DiscardValues stops keeping values for the exact Wasserstein distance (when another test is used, this saves
// the memory and time): Wasserstein then streams from the start.
func (a *NumericAcc) DiscardValues() { a.raw, a.rawDropped = nil, true }

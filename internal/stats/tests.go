package stats

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/mathext"
)

// Wasserstein is scipy.stats.wasserstein_distance(u, v): the first Wasserstein distance between the empirical
// distributions, the integral of |U(x) - V(x)| over x. It returns NaN when a sample is empty.
func Wasserstein(u, v []float64) float64 {
	if len(u) == 0 || len(v) == 0 {
		return math.NaN()
	}
	x, y := slices.Clone(u), slices.Clone(v)
	slices.Sort(x)
	slices.Sort(y)
	nu, nv := float64(len(x)), float64(len(y))
	i, j := 0, 0
	var sum, prev float64
	first := true
	for i < len(x) || j < len(y) {
		var val float64
		if j >= len(y) || (i < len(x) && x[i] <= y[j]) {
			val = x[i]
		} else {
			val = y[j]
		}
		if !first {
			sum += math.Abs(float64(i)/nu-float64(j)/nv) * (val - prev)
		}
		first = false
		for i < len(x) && x[i] == val {
			i++
		}
		for j < len(y) && y[j] == val {
			j++
		}
		prev = val
	}
	return sum
}

// WassersteinNormed is Evidently's "wasserstein" drift score: the Wasserstein distance divided by
// max(std(reference), 0.001), with the population standard deviation (numpy's default ddof=0).
func WassersteinNormed(reference, current []float64) float64 {
	return Wasserstein(reference, current) / math.Max(stdPop(reference), 0.001)
}

func stdPop(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	var mean float64
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return math.Sqrt(ss / float64(len(x)))
}

// ChiSquareResult is a chi-square test of independence.
type ChiSquareResult struct {
	Statistic float64
	PValue    float64
	DOF       int
}

// ChiSquareContingency is scipy.stats.chi2_contingency(observed) (correction=True) for a table of counts with
// one row per sample: the expected counts are row total * column total / grand total, Yates' continuity
// correction applies when there is one degree of freedom, and the p-value is the chi-square survival function.
// Columns that are zero in every row must be removed by the caller (SciPy refuses a zero expected count); a
// table with a single column has 0 degrees of freedom: statistic 0, p-value 1.
func ChiSquareContingency(observed [][]float64) ChiSquareResult {
	rows := len(observed)
	if rows == 0 || len(observed[0]) == 0 {
		return ChiSquareResult{Statistic: math.NaN(), PValue: math.NaN()}
	}
	cols := len(observed[0])
	rowSum := make([]float64, rows)
	colSum := make([]float64, cols)
	var total float64
	for r, row := range observed {
		for c, v := range row {
			rowSum[r] += v
			colSum[c] += v
			total += v
		}
	}
	dof := (rows - 1) * (cols - 1) // SciPy: expected.size - sum(expected.shape) + expected.ndim - 1
	if dof == 0 {
		return ChiSquareResult{Statistic: 0, PValue: 1, DOF: 0}
	}
	var stat float64
	for r, row := range observed {
		for c, obs := range row {
			exp := rowSum[r] * colSum[c] / total
			if exp == 0 {
				return ChiSquareResult{Statistic: math.NaN(), PValue: math.NaN(), DOF: dof}
			}
			if dof == 1 {
				diff := exp - obs
				obs += math.Min(0.5, math.Abs(diff)) * sign(diff)
			}
			stat += (obs - exp) * (obs - exp) / exp
		}
	}
	return ChiSquareResult{Statistic: stat, PValue: ChiSquareSF(stat, float64(dof)), DOF: dof}
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// ChiSquareSF is the survival function of the chi-square distribution with k degrees of freedom
// (scipy.stats.chi2.sf, i.e. the regularized upper incomplete gamma Q(k/2, x/2)).
func ChiSquareSF(x, k float64) float64 {
	if math.IsNaN(x) {
		return math.NaN()
	}
	if x <= 0 {
		return 1
	}
	return mathext.GammaIncRegComp(k/2, x/2)
}

// JensenShannon is scipy.spatial.distance.jensenshannon(p, q) with the natural logarithm (SciPy's and
// Evidently's default): p and q are normalised to sum to 1, and the result is sqrt((KL(p||m) + KL(q||m)) / 2)
// with m the mean of p and q. It is 0 for identical distributions and at most sqrt(ln 2).
func JensenShannon(p, q []float64) float64 {
	if len(p) != len(q) || len(p) == 0 {
		return math.NaN()
	}
	var sp, sq float64
	for i := range p {
		sp += p[i]
		sq += q[i]
	}
	var js float64
	for i := range p {
		pi, qi := p[i]/sp, q[i]/sq
		m := (pi + qi) / 2
		js += relEntr(pi, m) + relEntr(qi, m)
	}
	return math.Sqrt(js / 2)
}

// relEntr is scipy.special.rel_entr.
func relEntr(x, y float64) float64 {
	switch {
	case x > 0 && y > 0:
		return x * math.Log(x/y)
	case x == 0 && y >= 0:
		return 0
	}
	return math.Inf(1)
}

// PSI is the population stability index of two vectors of proportions, sum((ref - cur) * ln(ref / cur)), with
// Evidently's treatment of empty bins (FillZeros) applied first to copies.
func PSI(reference, current []float64) float64 {
	r, c := FillZeros(reference), FillZeros(current)
	var psi float64
	for i := range r {
		psi += (r[i] - c[i]) * math.Log(r[i]/c[i])
	}
	return psi
}

// FillZeros returns a copy of the proportions p in which zeros are replaced the way Evidently's get_binned_data
// does: by min(non-zero)/10^6 when the smallest non-zero proportion is at most 0.0001, else by 0.0001.
func FillZeros(p []float64) []float64 {
	out := slices.Clone(p)
	minNZ := math.Inf(1)
	for _, v := range p {
		if v != 0 && v < minNZ {
			minNZ = v
		}
	}
	if math.IsInf(minNZ, 1) {
		return out
	}
	fill := 0.0001
	if minNZ <= 0.0001 {
		fill = minNZ / 1e6
	}
	for i, v := range out {
		if v == 0 {
			out[i] = fill
		}
	}
	return out
}

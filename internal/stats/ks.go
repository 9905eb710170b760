package stats

import (
	"math"
	"slices"
)

// KSExactMaxN is SciPy's MAX_AUTO_N: ks_2samp(method="auto") computes the exact p-value when both samples have
// at most this many values, and otherwise uses the kstwo distribution with n = round(n1*n2/(n1+n2)).
const KSExactMaxN = 10000

// KS2Samp is scipy.stats.ks_2samp(a, b) (two-sided, method "auto"): the Kolmogorov–Smirnov statistic D and its
// p-value. NaNs must be removed by the caller. It returns (NaN, NaN) when a sample is empty.
func KS2Samp(a, b []float64) (d, p float64) {
	if len(a) == 0 || len(b) == 0 {
		return math.NaN(), math.NaN()
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	n1, n2 := float64(len(x)), float64(len(y))
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		// The next distinct value of the merged samples; the ECDFs are right-continuous.
		var v float64
		switch {
		case j >= len(y) || (i < len(x) && x[i] <= y[j]):
			v = x[i]
		default:
			v = y[j]
		}
		for i < len(x) && x[i] == v {
			i++
		}
		for j < len(y) && y[j] == v {
			j++
		}
		if diff := math.Abs(float64(i)/n1 - float64(j)/n2); diff > d {
			d = diff
		}
	}
	d, p = KSPValue(d, len(x), len(y))
	return d, p
}

// KSPValue is the two-sided p-value SciPy's ks_2samp gives statistic d for sample sizes n1 and n2: exact (the
// lattice-path count of Hodges) when both are at most KSExactMaxN, else kstwo.sf(d, round(n1*n2/(n1+n2))). Like
// SciPy, the exact method rounds d to the lattice (h/lcm(n1, n2)) and returns the rounded statistic.
func KSPValue(d float64, n1, n2 int) (float64, float64) {
	if n1 <= 0 || n2 <= 0 || math.IsNaN(d) {
		return d, math.NaN()
	}
	if max(n1, n2) <= KSExactMaxN {
		if dd, p, ok := ksExact(n1, n2, d); ok {
			return dd, clip01(p)
		}
	}
	m, n := float64(max(n1, n2)), float64(min(n1, n2))
	en := math.RoundToEven(m * n / (m + n))
	return d, clip01(KolmogorovSF(int(en), d))
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ksExact is SciPy's _attempt_exact_2kssamp for the two-sided alternative.
func ksExact(n1, n2 int, d float64) (float64, float64, bool) {
	g := gcd(n1, n2)
	lcm := float64((n1 / g) * n2)
	h := int(math.RoundToEven(d * lcm))
	d = float64(h) / lcm
	if h == 0 {
		return d, 1, true
	}
	var p float64
	if n1 == n2 {
		p = probOutsideSquare(n1, h)
	} else {
		p = outerProbInside(n1, n2, g, h)
	}
	if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 || p > 1 {
		return d, p, false
	}
	return d, p, true
}

// probOutsideSquare is Pr(D_{n,n} >= h/n) (SciPy's _compute_prob_outside_square), a Horner-like evaluation of
// 2 * sum_k (-1)^(k+1) binom(2n, n-kh) / binom(2n, n) that avoids the cancellation of the direct sum.
func probOutsideSquare(n, h int) float64 {
	var P float64
	for k := n / h; k >= 0; k-- {
		p1 := 1.0
		for j := range h {
			p1 = float64(n-k*h-j) * p1 / float64(n+k*h+j+1)
		}
		P = p1 * (1 - P)
	}
	return 2 * P
}

// outerProbInside is the probability that a uniformly random lattice path from (0,0) to (m,n) leaves the band
// |x*n/g - y*m/g| < h at some point (SciPy's _compute_outer_prob_inside_method). A[j] holds, for the current column
// x = i, the probability that a random path to (i, j) has already left the band: a path arrives at (i, j) from
// (i-1, j) with probability i/(i+j) and from (i, j-1) with probability j/(i+j); points outside the band have 1.
func outerProbInside(m, n, g, h int) float64 {
	if m < n {
		m, n = n, m
	}
	mg, ng := m/g, n/g
	A := make([]float64, n+1)
	maxj := min(ceilDiv(h, mg), n+1)
	for j := range A {
		if j >= maxj {
			A[j] = 1
		}
	}
	for i := 1; i <= m; i++ {
		lastmaxj := maxj
		minj := min(max(floorDiv(ng*i-h, mg)+1, 0), n)
		maxj = min(ceilDiv(ng*i+h, mg), n+1)
		if maxj <= minj {
			return 1
		}
		val := 0.0
		if minj > 0 {
			val = 1 // (i, minj-1) is below the band
		}
		fi := float64(i)
		for j := minj; j < maxj; j++ {
			old := A[j]
			if j >= lastmaxj {
				old = 1
			}
			val = (old*fi + val*float64(j)) / (fi + float64(j))
			A[j] = val
		}
		for j := maxj; j < lastmaxj && j <= n; j++ {
			A[j] = 1 // left the band at this column
		}
	}
	return A[n]
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilDiv(a, b int) int { return -floorDiv(-a, b) }

func clip01(p float64) float64 {
	if math.IsNaN(p) {
		return p
	}
	return math.Min(1, math.Max(0, p))
}

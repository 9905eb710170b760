package stats

import (
	"math"
	"slices"

	"github.com/slipway-ml/slipway"
)

// DefaultMaxPoints bounds a Dist: up to this many distinct values it is exact; beyond, it keeps this many
// equal-weight centroids (each the mean of a run of neighbouring values, weighted by the run's size).
const DefaultMaxPoints = 10000

// Dist is slipway.Distribution (the summary a baseline stores) with the computations on it. It is a defined
// type rather than an alias so that its methods live here: convert with (*Dist)(d) and (*slipway.Distribution)(d).
type Dist slipway.Distribution

// DistBuilder builds a Dist in one pass with bounded memory.
type DistBuilder struct {
	maxPoints int
	buf       []float64
	vals, wts []float64
	exact     bool
	n         float64
	mean, m2  float64 // Welford
	min, max  float64
}

// NewDistBuilder returns a builder keeping at most maxPoints points (DefaultMaxPoints when <= 0).
func NewDistBuilder(maxPoints int) *DistBuilder {
	if maxPoints <= 0 {
		maxPoints = DefaultMaxPoints
	}
	return &DistBuilder{maxPoints: maxPoints, exact: true, min: math.Inf(1), max: math.Inf(-1)}
}

// Add adds one finite value (the caller counts NaNs as missing).
func (b *DistBuilder) Add(x float64) {
	b.n++
	d := x - b.mean
	b.mean += d / b.n
	b.m2 += d * (x - b.mean)
	b.min = math.Min(b.min, x)
	b.max = math.Max(b.max, x)
	b.buf = append(b.buf, x)
	if len(b.buf) >= 8*b.maxPoints {
		b.flush()
	}
}

func (b *DistBuilder) flush() {
	if len(b.buf) == 0 {
		return
	}
	slices.Sort(b.buf)
	vals := make([]float64, 0, len(b.vals)+len(b.buf))
	wts := make([]float64, 0, cap(vals))
	push := func(v, w float64) {
		if n := len(vals); n > 0 && vals[n-1] == v {
			wts[n-1] += w
			return
		}
		vals = append(vals, v)
		wts = append(wts, w)
	}
	i, j := 0, 0
	for i < len(b.vals) || j < len(b.buf) {
		if j >= len(b.buf) || (i < len(b.vals) && b.vals[i] <= b.buf[j]) {
			push(b.vals[i], b.wts[i])
			i++
		} else {
			push(b.buf[j], 1)
			j++
		}
	}
	b.buf = b.buf[:0]
	b.vals, b.wts = vals, wts
	if len(b.vals) > b.maxPoints {
		b.vals, b.wts = compress(b.vals, b.wts, b.maxPoints)
		b.exact = false
	}
}

// compress merges neighbouring points into k runs of about equal weight, each replaced by its weighted mean.
func compress(vals, wts []float64, k int) ([]float64, []float64) {
	var total float64
	for _, w := range wts {
		total += w
	}
	target := total / float64(k)
	outV := make([]float64, 0, k+1)
	outW := make([]float64, 0, k+1)
	var accW, accS float64
	for i, v := range vals {
		accW += wts[i]
		accS += v * wts[i]
		if accW >= target || i == len(vals)-1 {
			outV = append(outV, accS/accW)
			outW = append(outW, accW)
			accW, accS = 0, 0
		}
	}
	return outV, outW
}

// Dist returns the summary of everything added.
func (b *DistBuilder) Dist() *Dist {
	b.flush()
	d := &Dist{Values: slices.Clone(b.vals), Weights: slices.Clone(b.wts), Count: b.n, Exact: b.exact,
		Min: b.min, Max: b.max, Mean: b.mean}
	if b.n > 0 {
		d.Std = math.Sqrt(b.m2 / b.n)
	} else {
		d.Min, d.Max, d.Mean, d.Std = math.NaN(), math.NaN(), math.NaN(), math.NaN()
	}
	if d.Values == nil {
		d.Values, d.Weights = []float64{}, []float64{}
	}
	return d
}

// Quantile returns the q-quantile (0..1) by the inverse of the summary's CDF, interpolating linearly between
// neighbouring points the way numpy.quantile's default does for an exact sample.
func (d *Dist) Quantile(q float64) float64 {
	if len(d.Values) == 0 {
		return math.NaN()
	}
	pos := q * (d.Count - 1) // numpy "linear": index into the sorted sample
	var cum float64
	for i, w := range d.Weights {
		if pos < cum+w-1 || i == len(d.Weights)-1 {
			return d.Values[i]
		}
		if pos < cum+w { // between the last copy of this value and the next value
			frac := pos - (cum + w - 1)
			return d.Values[i] + frac*(d.Values[i+1]-d.Values[i])
		}
		cum += w
	}
	return d.Values[len(d.Values)-1]
}

// DecileEdges returns the inner bin edges used for PSI and Jensen–Shannon on numbers: reference values at the
// 10%..90% cumulative weights (deduplicated), so that bins are (-inf, e1], (e1, e2], ..., (ek, +inf).
func (d *Dist) DecileEdges() []float64 {
	var edges []float64
	var cum float64
	next := 1
	for i, w := range d.Weights {
		cum += w
		for next < 10 && cum >= float64(next)*d.Count/10 {
			if n := len(edges); n == 0 || edges[n-1] != d.Values[i] {
				if i < len(d.Values)-1 { // the maximum is no inner edge
					edges = append(edges, d.Values[i])
				}
			}
			next++
		}
	}
	return edges
}

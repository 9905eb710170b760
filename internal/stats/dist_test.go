package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestDistExactThenCompressed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int
		distinct  int
		maxPoints int
		exact     bool
	}{
		{"few distinct values", 100_000, 50, 100, true},
		{"exactly at the limit", 1000, 100, 100, true},
		{"compressed", 100_000, 100_000, 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			b := NewDistBuilder(tc.maxPoints)
			var all []float64
			for range tc.n {
				v := float64(r.IntN(tc.distinct))
				if tc.distinct == tc.n {
					v = r.NormFloat64()
				}
				b.Add(v)
				all = append(all, v)
			}
			d := b.Dist()
			if d.Exact != tc.exact || d.Count != float64(tc.n) || len(d.Values) > tc.maxPoints {
				t.Fatalf("exact %v, count %v, %d points", d.Exact, d.Count, len(d.Values))
			}
			var w float64
			for i, x := range d.Weights {
				w += x
				if i > 0 && d.Values[i] <= d.Values[i-1] {
					t.Fatal("points not strictly increasing")
				}
			}
			if w != d.Count {
				t.Errorf("weights sum to %v, want %v", w, d.Count)
			}
			slices.Sort(all)
			if d.Min != all[0] || d.Max != all[len(all)-1] || math.Abs(d.Mean-mean(all)) > 1e-9 || math.Abs(d.Std-stdPop(all)) > 1e-9 {
				t.Errorf("min/max/mean/std %v %v %v %v", d.Min, d.Max, d.Mean, d.Std)
			}
			if tc.exact {
				// numpy.quantile's default (linear) on the sample.
				for _, q := range []float64{0, .01, .25, .5, .9, 1} {
					pos := q * float64(len(all)-1)
					lo := int(math.Floor(pos))
					want := all[lo]
					if lo+1 < len(all) {
						want += (pos - float64(lo)) * (all[lo+1] - all[lo])
					}
					if got := d.Quantile(q); math.Abs(got-want) > 1e-12 {
						t.Errorf("quantile %v = %v, want %v", q, got, want)
					}
				}
			}
		})
	}
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func TestDecileEdges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []float64
		want   []float64
	}{
		{"1..10", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"ties collapse", []float64{1, 1, 1, 1, 1, 1, 1, 1, 2, 3}, []float64{1, 2}},
		{"one value", []float64{5, 5, 5}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewDistBuilder(0)
			for _, v := range tc.values {
				b.Add(v)
			}
			if got := b.Dist().DecileEdges(); !slices.Equal(got, tc.want) {
				t.Errorf("edges = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProfileBuilder(t *testing.T) {
	b := NewProfileBuilder([]string{"x", "c"}, []string{Numeric, Categorical})
	for i, row := range []struct {
		x float64
		c string
	}{{1, "a"}, {2, "b"}, {math.NaN(), "a"}, {4, ""}} {
		b.AddRow()
		b.AddNumber(0, row.x)
		if i == 3 {
			b.AddMissing(1)
		} else {
			b.AddString(1, row.c)
		}
	}
	p := b.Profile()
	x, c := p.Feature("x"), p.Feature("c")
	if p.Rows != 4 || x.Count != 3 || x.Missing != 1 || *x.Mean != 7.0/3 || x.Quantiles["p50"] != 2 || x.Histogram == nil {
		t.Errorf("numeric: %+v", x)
	}
	if c.Count != 3 || c.Missing != 1 || c.Distinct != 2 || c.Categories[0] != (CategoryCount{Value: "a", Count: 2}) {
		t.Errorf("categorical: %+v", c)
	}
	if pub := p.Public(); pub.Features[0].Reference != nil || pub.Features[1].CategoryCounts != nil || x.Reference == nil {
		t.Error("Public kept the reference data, or removed it from the original")
	}
}

package stats

import (
	"cmp"
	"maps"
	"math"
	"slices"

	"github.com/slipway-ml/slipway"
)

// Feature kinds.
const (
	Numeric     = "numeric"
	Categorical = "categorical"
)

// The profile types are root wire types (a baseline is stored and shown as JSON); stats builds them.
type (
	// Profile is slipway.DataProfile.
	Profile = slipway.DataProfile
	// FeatureProfile is one feature (column) of a profile.
	FeatureProfile = slipway.FeatureProfile
	// Histogram is counts in equal-width bins.
	Histogram = slipway.Histogram
	// CategoryCount is one category's frequency.
	CategoryCount = slipway.CategoryCount
)

// TopCategories is how many categories a profile shows.
const TopCategories = 50

// ProfileBuilder builds a profile row by row, with memory bounded per feature (DefaultMaxPoints numeric points,
// MaxCategories categories).
type ProfileBuilder struct {
	rows  int64
	feats []*featureBuilder
}

type featureBuilder struct {
	name, kind string
	dist       *DistBuilder
	cats       map[string]float64
	missing    int64
}

// NewProfileBuilder returns a builder for features with the given names and kinds (Numeric or Categorical).
func NewProfileBuilder(names, kinds []string) *ProfileBuilder {
	b := &ProfileBuilder{}
	for i, n := range names {
		fb := &featureBuilder{name: n, kind: kinds[i]}
		if kinds[i] == Numeric {
			fb.dist = NewDistBuilder(0)
		} else {
			fb.cats = map[string]float64{}
		}
		b.feats = append(b.feats, fb)
	}
	return b
}

// AddRow counts a row (call once per row, alongside the Add calls for its values).
func (b *ProfileBuilder) AddRow() { b.rows++ }

// AddNumber adds a value of numeric feature i; NaN is missing.
func (b *ProfileBuilder) AddNumber(i int, v float64) {
	if math.IsNaN(v) {
		b.feats[i].missing++
		return
	}
	b.feats[i].dist.Add(v)
}

// AddString adds a value of categorical feature i.
func (b *ProfileBuilder) AddString(i int, s string) {
	f := b.feats[i]
	if _, ok := f.cats[s]; !ok && len(f.cats) >= MaxCategories {
		s = ""
	}
	f.cats[s]++
}

// AddMissing counts a missing value of feature i.
func (b *ProfileBuilder) AddMissing(i int) { b.feats[i].missing++ }

// Profile returns the profile of everything added.
func (b *ProfileBuilder) Profile() *Profile {
	p := &Profile{Rows: b.rows}
	for _, f := range b.feats {
		fp := &FeatureProfile{Name: f.name, Kind: f.kind, Missing: f.missing}
		if f.kind == Numeric {
			d := f.dist.Dist()
			fp.Count, fp.Distinct, fp.DistinctExact = int64(d.Count), int64(len(d.Values)), d.Exact
			fp.Reference = (*slipway.Distribution)(d)
			if d.Count > 0 {
				fp.Min, fp.Max, fp.Mean, fp.Std = ptr(d.Min), ptr(d.Max), ptr(d.Mean), ptr(d.Std)
				fp.Quantiles = map[string]float64{}
				for _, q := range []struct {
					name string
					q    float64
				}{{"p01", .01}, {"p05", .05}, {"p25", .25}, {"p50", .5}, {"p75", .75}, {"p95", .95}, {"p99", .99}} {
					fp.Quantiles[q.name] = d.Quantile(q.q)
				}
				fp.Histogram = histogram(d, 10)
			}
		} else {
			var total float64
			for _, c := range f.cats {
				total += c
			}
			fp.Count, fp.Distinct, fp.DistinctExact = int64(total), int64(len(f.cats)), len(f.cats) < MaxCategories
			fp.CategoryCounts = maps.Clone(f.cats)
			for _, k := range slices.Collect(maps.Keys(f.cats)) {
				fp.Categories = append(fp.Categories, CategoryCount{Value: k, Count: f.cats[k]})
			}
			slices.SortFunc(fp.Categories, func(a, b CategoryCount) int {
				if c := cmp.Compare(b.Count, a.Count); c != 0 {
					return c
				}
				return cmp.Compare(a.Value, b.Value)
			})
			if len(fp.Categories) > TopCategories {
				fp.Categories = fp.Categories[:TopCategories]
			}
		}
		p.Features = append(p.Features, fp)
	}
	return p
}

func ptr(v float64) *float64 { return &v }

// histogram bins the summary's points into n equal-width bins over [min, max] (the last bin includes max).
func histogram(d *Dist, n int) *Histogram {
	h := &Histogram{Edges: make([]float64, n+1), Counts: make([]float64, n)}
	width := (d.Max - d.Min) / float64(n)
	for i := range h.Edges {
		h.Edges[i] = d.Min + float64(i)*width
	}
	for i, v := range d.Values {
		bin := n - 1
		if width > 0 {
			bin = min(int((v-d.Min)/width), n-1)
		}
		h.Counts[bin] += d.Weights[i]
	}
	return h
}

package slipway

// DataProfile describes a data sample per feature. It is what Slipway keeps of a baseline: the sample itself is
// not stored. Reference and CategoryCounts are what drift tests need; Public drops them for display. It is
// built and compared by internal/stats.
type DataProfile struct {
	Rows     int64             `json:"rows"`
	Features []*FeatureProfile `json:"features"`
}

// FeatureProfile is one feature (column) of a profile.
type FeatureProfile struct {
	Name          string             `json:"name"`
	Kind          string             `json:"kind"`
	Count         int64              `json:"count"` // non-missing values
	Missing       int64              `json:"missing"`
	Distinct      int64              `json:"distinct"`
	DistinctExact bool               `json:"distinct_exact"` // false once a numeric summary was compressed (Distinct is then a lower bound)
	Min           *float64           `json:"min,omitempty"`
	Max           *float64           `json:"max,omitempty"`
	Mean          *float64           `json:"mean,omitempty"`
	Std           *float64           `json:"std,omitempty"`
	Quantiles     map[string]float64 `json:"quantiles,omitempty"`
	Histogram     *Histogram         `json:"histogram,omitempty"`
	Categories    []CategoryCount    `json:"categories,omitempty"` // most frequent first, at most stats.TopCategories

	Reference      *Distribution      `json:"reference,omitempty"`       // numeric: the distribution summary
	CategoryCounts map[string]float64 `json:"category_counts,omitempty"` // categorical: every category's count
}

// Histogram is counts in equal-width bins (len(Edges) = len(Counts)+1).
type Histogram struct {
	Edges  []float64 `json:"edges"`
	Counts []float64 `json:"counts"`
}

// CategoryCount is one category's frequency.
type CategoryCount struct {
	Value string  `json:"value"`
	Count float64 `json:"count"`
}

// Distribution summarises a numeric sample as sorted distinct points with weights (counts). While Exact it holds
// every distinct value with its exact count, and statistics computed from it equal those computed from the
// sample; once compressed it is a quantile summary whose error is bounded by the spread of the runs merged into
// each point. Mean, Std (population), Min and Max are always exact. internal/stats computes with it (stats.Dist).
type Distribution struct {
	Values  []float64 `json:"values"`
	Weights []float64 `json:"weights"`
	Count   float64   `json:"count"`
	Exact   bool      `json:"exact"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Mean    float64   `json:"mean"`
	Std     float64   `json:"std"`
}

// Feature returns the named feature, or nil.
func (p *DataProfile) Feature(name string) *FeatureProfile {
	for _, f := range p.Features {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Public returns a copy without the reference data (what the API shows).
func (p *DataProfile) Public() *DataProfile {
	out := &DataProfile{Rows: p.Rows, Features: make([]*FeatureProfile, len(p.Features))}
	for i, f := range p.Features {
		c := *f
		c.Reference, c.CategoryCounts = nil, nil
		out.Features[i] = &c
	}
	return out
}

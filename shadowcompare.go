package slipway

import (
	"context"
	"errors"
	"time"
)

// ErrShadowNotSent is what a shadow's answer callback gets for a copy that was never sent (the shadow was
// saturated or closed): there is nothing to compare.
var ErrShadowNotSent = errors.New("the shadow was saturated or closed: the copy was not sent")

// ShadowPair is one request answered by a deployment's live version and by its shadow, kept when the shadow
// compares ("compare": true). Outputs and Features are workerproto tensor frames: the outputs as the model
// returned them, and up to MaxShadowFeatures numeric input columns for slicing the comparison.
type ShadowPair struct {
	ID            int64
	Deployment    string
	RequestID     string
	Time          time.Time
	LiveVersion   int
	ShadowVersion int
	Rows          int
	LiveOutputs   []byte
	ShadowOutputs []byte
	LiveError     string // "" when the live version answered
	ShadowError   string // "" when the shadow answered
	LiveMS        float64
	ShadowMS      float64
	Features      []byte
}

// MaxShadowFeatures is how many numeric input columns a shadow pair keeps for slicing.
const MaxShadowFeatures = 8

// ShadowReport compares a deployment's shadow with its live version over a window of stored pairs.
type ShadowReport struct {
	Deployment string    `json:"deployment"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	// Version is the shadow's version, LiveVersion the live one (the latest pair's when they changed within
	// the window; 0 when there is no pair).
	Version     int `json:"version"`
	LiveVersion int `json:"live_version"`
	// Requests is the number of stored pairs; Compared the rows both sides answered.
	Requests int64 `json:"requests"`
	Compared int64 `json:"compared"`
	// Agreement is the share of compared rows whose predicted class (label) is equal; nil when no row has one.
	Agreement *float64 `json:"agreement"`
	// MeanAbsDiff and MaxAbsDiff are over the floating-point output elements of both sides (probabilities,
	// regression values); nil when there are none.
	MeanAbsDiff  *float64           `json:"mean_abs_diff"`
	MaxAbsDiff   *float64           `json:"max_abs_diff"`
	Errors       ShadowSides        `json:"errors"`
	LatencyP99MS ShadowLatency      `json:"latency_p99_ms"`
	ByFeature    []ShadowFeatureCut `json:"by_feature_slice"`
}

// ShadowSides counts something of each side.
type ShadowSides struct {
	Live   int64 `json:"live"`
	Shadow int64 `json:"shadow"`
}

// ShadowLatency is a latency figure of each side (nil: no answer in the window).
type ShadowLatency struct {
	Live   *float64 `json:"live"`
	Shadow *float64 `json:"shadow"`
}

// ShadowFeatureCut is the agreement per quartile bin of one input feature.
type ShadowFeatureCut struct {
	Feature string `json:"feature"`
	// Spread is the largest minus the smallest agreement of the bins: features are ranked by it.
	Spread float64          `json:"spread"`
	Bins   []ShadowSliceBin `json:"bins"`
}

// ShadowSliceBin is the rows whose feature value is in [Low, High] (the last bin) or [Low, High).
type ShadowSliceBin struct {
	Low       float64  `json:"low"`
	High      float64  `json:"high"`
	Rows      int64    `json:"rows"`
	Agreement *float64 `json:"agreement"`
}

// ShadowStore keeps shadow pairs next to the captures.
type ShadowStore interface {
	InsertShadowPairs(ctx context.Context, ps []*ShadowPair) error
	// ScanShadowPairs calls fn for the pairs of a deployment with from <= time < to, oldest first.
	ScanShadowPairs(ctx context.Context, deployment string, from, to time.Time, fn func(*ShadowPair) error) error
}

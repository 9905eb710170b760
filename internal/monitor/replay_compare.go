package monitor

import (
	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Comparison accumulates a shadow report pair by pair, oldest first: the shadow comparison's definitions
// (shadow_report.go) applied to pairs that are not stored, such as a replay's (a captured live answer and a
// candidate's answer to the same inputs). A replay's report is therefore the shadow report's, figure for figure.
type Comparison struct{ c *shadowComparison }

// NewComparison starts an empty comparison of a deployment.
func NewComparison(deployment string) *Comparison {
	return &Comparison{c: newShadowComparison(deployment)}
}

// Add counts one pair.
func (c *Comparison) Add(p *slipway.ShadowPair) error { return c.c.add(p) }

// Report is the report of the pairs added so far.
func (c *Comparison) Report() *slipway.ShadowReport { return c.c.report() }

// SliceFeatures are the input columns a shadow pair keeps for the report's slices (the first
// slipway.MaxShadowFeatures numeric columns with one value per row).
func SliceFeatures(in []workerproto.Tensor, rows int) []workerproto.Tensor {
	return sliceFeatures(in, rows)
}

package monitor

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// The shadow report's definitions (docs/monitoring.md, "Shadow comparison"):
//
//   - a row is compared when both sides answered its request;
//   - a row's predicted class is, on each side, the first output that is not floating point (a label: text,
//     integers, booleans); else the argmax of the first floating-point output with several values per row
//     (class probabilities); else the first floating-point output with one value per row when that value is
//     integral (a label returned as a float). A regression has none: it counts in the differences only;
//   - agreement is the share of compared rows with a class on both sides whose classes are equal;
//   - the absolute differences are over the elements of the floating-point outputs of the same name and width
//     on both sides (probabilities, regression values), but for a float output read as a row's label;
//   - latencies are the p99 (nearest rank) of the answered requests: the live one as the server measured the
//     whole request, the shadow's as its pool call;
//   - the slices: for each stored input feature, the rows with a class on both sides are cut into quartile
//     bins of the feature's values (equal cut points merged), with the agreement of each bin; the features
//     whose bins' agreement differs most (spread) are reported, at most shadowSliceFeatures of them.
const (
	shadowSliceFeatures = 3
	// shadowSliceRows bounds the rows kept for the slices (the window's first ones): a report reads every
	// pair of its window, but holds only this many rows' feature values.
	shadowSliceRows = 200_000
)

// shadowComparison accumulates a report pair by pair (oldest first).
type shadowComparison struct {
	rep                slipway.ShadowReport
	liveLat, shadowLat []float64
	classRows, agreed  int64
	diffSum, diffMax   float64
	diffN              int64
	features           []string       // in order of first appearance
	featureIndex       map[string]int // name → index in features
	sliceRows          []sliceRow
}

// sliceRow is one compared row with a class on both sides: whether they agreed, and its feature values (NaN:
// missing), indexed like shadowComparison.features.
type sliceRow struct {
	agree bool
	feats []float64
}

func newShadowComparison(deployment string) *shadowComparison {
	return &shadowComparison{rep: slipway.ShadowReport{Deployment: deployment}, featureIndex: map[string]int{}}
}

// CompareShadow computes the report of a window's pairs (oldest first). It is what the endpoint answers, as a
// pure function of the stored pairs.
func CompareShadow(deployment string, pairs []*slipway.ShadowPair) (*slipway.ShadowReport, error) {
	c := newShadowComparison(deployment)
	for _, p := range pairs {
		if err := c.add(p); err != nil {
			return nil, err
		}
	}
	return c.report(), nil
}

func (c *shadowComparison) add(p *slipway.ShadowPair) error {
	c.rep.Requests++
	c.rep.Version, c.rep.LiveVersion = p.ShadowVersion, p.LiveVersion
	if p.LiveError != "" {
		c.rep.Errors.Live++
	} else {
		c.liveLat = append(c.liveLat, p.LiveMS)
	}
	if p.ShadowError != "" {
		c.rep.Errors.Shadow++
	} else {
		c.shadowLat = append(c.shadowLat, p.ShadowMS)
	}
	if p.LiveError != "" || p.ShadowError != "" {
		return nil
	}
	live, err := workerproto.DecodeTensors(p.LiveOutputs)
	if err != nil {
		return fmt.Errorf("shadow pair %d: live outputs: %w", p.ID, err)
	}
	shadow, err := workerproto.DecodeTensors(p.ShadowOutputs)
	if err != nil {
		return fmt.Errorf("shadow pair %d: shadow outputs: %w", p.ID, err)
	}
	var feats []workerproto.Tensor
	if len(p.Features) > 0 {
		if feats, err = workerproto.DecodeTensors(p.Features); err != nil {
			return fmt.Errorf("shadow pair %d: features: %w", p.ID, err)
		}
	}
	featIdx := make([]int, len(feats))
	for i, f := range feats {
		featIdx[i] = c.featureSlot(f.Name)
	}
	liveClass, shadowClass := classOutput(live), classOutput(shadow)
	for row := range p.Rows {
		c.rep.Compared++
		lc, lok := rowClass(liveClass, row)
		sc, sok := rowClass(shadowClass, row)
		c.addDiffs(live, shadow, row, labelName(liveClass, lok && sok), labelName(shadowClass, lok && sok))
		if !lok || !sok {
			continue
		}
		c.classRows++
		agree := lc == sc
		if agree {
			c.agreed++
		}
		if len(feats) > 0 && len(c.sliceRows) < shadowSliceRows {
			r := sliceRow{agree: agree, feats: make([]float64, len(c.features))}
			for i := range r.feats {
				r.feats[i] = math.NaN()
			}
			for i, f := range feats {
				if row < rowsOf([]workerproto.Tensor{f}) {
					r.feats[featIdx[i]] = tensorFloat(&f, row)
				}
			}
			c.sliceRows = append(c.sliceRows, r)
		}
	}
	return nil
}

func (c *shadowComparison) featureSlot(name string) int {
	if i, ok := c.featureIndex[name]; ok {
		return i
	}
	c.featureIndex[name] = len(c.features)
	c.features = append(c.features, name)
	return len(c.features) - 1
}

// rowWidth is the number of elements per row of a tensor with at least one dimension (0: a scalar).
func rowWidth(t *workerproto.Tensor) int {
	if len(t.Shape) == 0 {
		return 0
	}
	k := 1
	for _, d := range t.Shape[1:] {
		k *= int(d)
	}
	return k
}

// classTensor is the output a side's classes are read from, and how.
type classTensor struct {
	t      *workerproto.Tensor
	argmax bool
}

// classOutput picks the output holding the predicted class (see the definitions above); t nil: none.
func classOutput(outs []workerproto.Tensor) classTensor {
	for i := range outs {
		if dt := workerproto.ParseDatatype(outs[i].Datatype); !dt.IsFloat() && rowWidth(&outs[i]) == 1 {
			return classTensor{t: &outs[i]}
		}
	}
	for i := range outs {
		if dt := workerproto.ParseDatatype(outs[i].Datatype); dt.IsFloat() && rowWidth(&outs[i]) > 1 {
			return classTensor{t: &outs[i], argmax: true}
		}
	}
	for i := range outs {
		if dt := workerproto.ParseDatatype(outs[i].Datatype); dt.IsFloat() && rowWidth(&outs[i]) == 1 {
			return classTensor{t: &outs[i]}
		}
	}
	return classTensor{}
}

// rowClass is row's predicted class as text; false when the side has none (a regression value).
func rowClass(ct classTensor, row int) (string, bool) {
	t := ct.t
	if t == nil || row >= int(t.Shape[0]) {
		return "", false
	}
	k := rowWidth(t)
	if ct.argmax {
		best, bestV := 0, math.Inf(-1)
		for j := range k {
			if v := tensorFloat(t, row*k+j); v > bestV {
				best, bestV = j, v
			}
		}
		return strconv.Itoa(best), true
	}
	if dt := workerproto.ParseDatatype(t.Datatype); dt.IsFloat() {
		v := tensorFloat(t, row)
		if v != math.Trunc(v) || math.IsInf(v, 0) {
			return "", false
		}
	}
	return tensorText(t, row, ""), true
}

// labelName is the name of a floating-point output read as row's class label (a label sent as a JSON number):
// a label is no numeric output, its differences are not counted. "" otherwise.
func labelName(ct classTensor, read bool) string {
	if !read || ct.argmax || !workerproto.ParseDatatype(ct.t.Datatype).IsFloat() {
		return ""
	}
	return ct.t.Name
}

// addDiffs adds the absolute differences of row's floating-point elements in outputs of the same name and
// width, but for the outputs read as the row's label on either side.
func (c *shadowComparison) addDiffs(live, shadow []workerproto.Tensor, row int, liveLabel, shadowLabel string) {
	for i := range live {
		l := &live[i]
		if !workerproto.ParseDatatype(l.Datatype).IsFloat() || l.Name == liveLabel || l.Name == shadowLabel {
			continue
		}
		j := slices.IndexFunc(shadow, func(t workerproto.Tensor) bool { return t.Name == l.Name })
		if j < 0 {
			continue
		}
		s := &shadow[j]
		k := rowWidth(l)
		if !workerproto.ParseDatatype(s.Datatype).IsFloat() || rowWidth(s) != k || row >= int(l.Shape[0]) || row >= int(s.Shape[0]) {
			continue
		}
		for e := row * k; e < (row+1)*k; e++ {
			d := math.Abs(tensorFloat(l, e) - tensorFloat(s, e))
			if math.IsNaN(d) {
				continue
			}
			c.diffSum += d
			c.diffN++
			c.diffMax = max(c.diffMax, d)
		}
	}
}

func (c *shadowComparison) report() *slipway.ShadowReport {
	rep := c.rep
	if c.classRows > 0 {
		rep.Agreement = fptr(float64(c.agreed) / float64(c.classRows))
	}
	if c.diffN > 0 {
		rep.MeanAbsDiff, rep.MaxAbsDiff = fptr(c.diffSum/float64(c.diffN)), fptr(c.diffMax)
	}
	rep.LatencyP99MS.Live, rep.LatencyP99MS.Shadow = p99(c.liveLat), p99(c.shadowLat)
	rep.ByFeature = c.slices()
	return &rep
}

// p99 is the nearest-rank 99th percentile (nil: no value).
func p99(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return fptr(s[int(math.Ceil(0.99*float64(len(s))))-1])
}

// slices cuts the rows by quartiles of each feature and keeps the features whose bins disagree most.
func (c *shadowComparison) slices() []slipway.ShadowFeatureCut {
	cuts := []slipway.ShadowFeatureCut{}
	for fi, name := range c.features {
		var vals []float64
		for _, r := range c.sliceRows {
			if fi < len(r.feats) && !math.IsNaN(r.feats[fi]) {
				vals = append(vals, r.feats[fi])
			}
		}
		if len(vals) == 0 {
			continue
		}
		slices.Sort(vals)
		edges := []float64{vals[0]}
		for _, q := range []float64{0.25, 0.5, 0.75} {
			if e := vals[int(q*float64(len(vals)))]; e > edges[len(edges)-1] {
				edges = append(edges, e)
			}
		}
		bins := make([]slipway.ShadowSliceBin, len(edges))
		agreed := make([]int64, len(edges))
		for i := range bins {
			bins[i].Low = edges[i]
			if i+1 < len(edges) {
				bins[i].High = edges[i+1]
			} else {
				bins[i].High = vals[len(vals)-1]
			}
		}
		for _, r := range c.sliceRows {
			if fi >= len(r.feats) || math.IsNaN(r.feats[fi]) {
				continue
			}
			// The bin is the last whose low edge is <= v: [low, high), the last bin closed.
			b, _ := slices.BinarySearch(edges, math.Nextafter(r.feats[fi], math.Inf(1)))
			b--
			bins[b].Rows++
			if r.agree {
				agreed[b]++
			}
		}
		cut := slipway.ShadowFeatureCut{Feature: name, Bins: bins}
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := range bins {
			if bins[i].Rows > 0 {
				a := float64(agreed[i]) / float64(bins[i].Rows)
				bins[i].Agreement = fptr(a)
				lo, hi = min(lo, a), max(hi, a)
			}
		}
		cut.Spread = hi - lo
		cuts = append(cuts, cut)
	}
	slices.SortStableFunc(cuts, func(a, b slipway.ShadowFeatureCut) int {
		return cmp.Or(cmp.Compare(b.Spread, a.Spread), cmp.Compare(a.Feature, b.Feature))
	})
	return cuts[:min(len(cuts), shadowSliceFeatures)]
}

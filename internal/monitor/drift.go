package monitor

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/stats"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// SmallReference is Evidently's boundary between "small" and "large" reference samples: up to this many rows the
// default tests are Kolmogorov–Smirnov (numbers) and chi-square (categories), beyond it the Wasserstein distance
// (normed) and the Jensen–Shannon distance.
const SmallReference = 1000

// LowCardinality is how many distinct values make a numeric feature categorical for the default test choice
// (Evidently's rule).
const LowCardinality = 5

// featureTest is the drift test of one feature: its accumulators and choice of method.
type featureTest struct {
	name, kind, method string
	threshold          float64
	note               string
	num                *stats.NumericAcc
	numCat             *stats.CatAcc[float64] // numbers with few distinct values, tested per value
	cat                *stats.CatAcc[string]
	seen               bool // some capture had this column
}

// DriftEngine computes drift of captured columns against a baseline profile in one pass with bounded memory:
// every value is counted into per-feature accumulators (see stats.NumericAcc and stats.CatAcc), so memory depends
// on the baseline's size, not on how many rows are scanned.
type DriftEngine struct {
	tests []*featureTest
	index map[string]int
	order []string // column order of stacked [N, K] input tensors (the input schema)
	rows  int64
}

// chooseMethod is Evidently's default test for a feature given the reference's size and distinct values.
func chooseMethod(kind string, refRows int64, distinct int64) string {
	small := refRows <= SmallReference
	switch {
	case kind == stats.Numeric && distinct > LowCardinality && small:
		return MethodKS
	case kind == stats.Numeric && distinct > LowCardinality:
		return MethodWasserstein
	case small:
		return MethodChiSquare
	}
	return MethodJensenShannon
}

// NewDriftEngine prepares the tests of the named features of profile. order is the column order of stacked
// inputs; overrides set a feature's method or threshold.
func NewDriftEngine(profile *stats.Profile, names, order []string, overrides map[string]slipway.FeatureSettings) (*DriftEngine, error) {
	e := &DriftEngine{index: map[string]int{}, order: order}
	for _, name := range names {
		fp := profile.Feature(name)
		if fp == nil {
			return nil, slipway.Errorf(slipway.ECONFLICT, "the baseline has no feature %q: upload a baseline with every input feature", name)
		}
		t := &featureTest{name: name, kind: fp.Kind}
		def := chooseMethod(fp.Kind, profile.Rows, fp.Distinct)
		t.method = def
		if o, ok := overrides[name]; ok && o.Method != "" {
			t.method = o.Method
		}
		if fp.Kind == stats.Categorical && (t.method == MethodKS || t.method == MethodWasserstein) {
			t.note = fmt.Sprintf("%s applies to numbers only; %s used instead", t.method, def)
			t.method = def
		}
		t.threshold = defaultThresholds[t.method]
		if o, ok := overrides[name]; ok && o.Threshold != nil {
			t.threshold = *o.Threshold
		}
		switch fp.Kind {
		case stats.Numeric:
			ref := fp.Reference
			if ref == nil || len(ref.Values) == 0 {
				t.note = "the baseline has no values of this feature"
				break
			}
			t.num = stats.NewNumericAcc((*stats.Dist)(ref))
			if t.method != MethodWasserstein {
				t.num.DiscardValues()
			}
			if ref.Exact && len(ref.Values) <= 20 { // Evidently bins numbers with at most 20 values per value
				counts := make(map[float64]float64, len(ref.Values))
				for i, v := range ref.Values {
					counts[v] = ref.Weights[i]
				}
				t.numCat = stats.NewCatAcc(counts)
			}
		default:
			t.cat = stats.NewCatAcc(fp.CategoryCounts)
		}
		e.index[name] = len(e.tests)
		e.tests = append(e.tests, t)
	}
	return e, nil
}

// Rows is how many rows were added.
func (e *DriftEngine) Rows() int64 { return e.rows }

// AddFrame decodes a workerproto tensor frame and adds its columns.
func (e *DriftEngine) AddFrame(frame []byte) error {
	ts, err := workerproto.DecodeTensors(frame)
	if err != nil {
		return err
	}
	e.AddTensors(ts)
	return nil
}

// AddTensors adds a batch of columns: tensors named like features ([N] or [N, 1]), or a stacked [N, K] tensor whose
// K columns are the engine's order. Columns of other names are ignored.
func (e *DriftEngine) AddTensors(ts []workerproto.Tensor) {
	type job struct {
		t    *featureTest
		col  workerproto.Tensor
		j, k int // column j of k
	}
	var jobs []job
	rows := 0
	for _, col := range ts {
		if len(col.Shape) == 0 {
			continue
		}
		n := int(col.Shape[0])
		k := 1
		for _, d := range col.Shape[1:] {
			k *= int(d)
		}
		if i, ok := e.index[col.Name]; ok && k == 1 {
			jobs = append(jobs, job{e.tests[i], col, 0, 1})
			rows = max(rows, n)
			continue
		}
		if k > 1 && k == len(e.order) {
			for j, name := range e.order {
				if i, ok := e.index[name]; ok {
					jobs = append(jobs, job{e.tests[i], col, j, k})
				}
			}
			rows = max(rows, n)
		}
	}
	e.rows += int64(rows)
	run := func(jb job) { jb.t.add(jb.col, jb.j, jb.k) }
	if rows*len(jobs) < 50_000 || runtime.GOMAXPROCS(0) == 1 {
		for _, jb := range jobs {
			run(jb)
		}
		return
	}
	// Large batches: features in parallel (each accumulator is touched by one goroutine).
	var wg sync.WaitGroup
	ch := make(chan job)
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for jb := range ch {
				run(jb)
			}
		}()
	}
	for _, jb := range jobs {
		ch <- jb
	}
	close(ch)
	wg.Wait()
}

// add counts column j of k of a tensor into the feature's accumulators.
func (t *featureTest) add(col workerproto.Tensor, j, k int) {
	t.seen = true
	n := int(col.Shape[0])
	if col.Datatype == "BYTES" {
		for r := range n {
			idx := r*k + j
			if idx >= len(col.Strings) {
				return
			}
			b := col.Strings[idx]
			switch {
			case t.cat != nil:
				stats.AddBytes(t.cat, b)
			case t.num != nil:
				v, err := strconv.ParseFloat(string(b), 64)
				if err != nil {
					v = math.NaN()
				}
				t.addNumber(v)
			}
		}
		return
	}
	dt := workerproto.ParseDatatype(col.Datatype)
	if !dt.IsNumeric() || len(col.Data) < n*k*dt.Size() {
		return
	}
	for r := range n {
		v := workerproto.ReadFloat(dt, col.Data, r*k+j)
		switch {
		case t.num != nil:
			t.addNumber(v)
		case t.cat != nil:
			if math.IsNaN(v) {
				t.cat.AddMissing()
			} else {
				t.cat.Add(strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
	}
}

func (t *featureTest) addNumber(v float64) {
	t.num.Add(v)
	if t.numCat != nil {
		if math.IsNaN(v) {
			t.numCat.AddMissing()
		} else {
			t.numCat.Add(v)
		}
	}
}

func fptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Results computes every feature's test.
func (e *DriftEngine) Results() []slipway.FeatureDrift {
	out := make([]slipway.FeatureDrift, 0, len(e.tests))
	for _, t := range e.tests {
		out = append(out, t.result())
	}
	return out
}

func (t *featureTest) result() slipway.FeatureDrift {
	fd := slipway.FeatureDrift{Feature: t.name, Kind: t.kind, Method: t.method, Threshold: t.threshold, Note: t.note, Exact: true}
	var n float64
	switch {
	case t.num != nil:
		n, fd.Missing = t.num.N(), t.num.Missing()
		fd.Exact = t.num.Reference().Exact // a compressed baseline summary makes every numeric statistic approximate
	case t.cat != nil:
		n, fd.Missing = t.cat.N(), t.cat.Missing()
	}
	fd.Rows = int64(n)
	if n == 0 {
		if fd.Note == "" {
			fd.Note = "no values of this feature in the window"
			if !t.seen {
				fd.Note = "the captured requests have no column of this name"
			}
		}
		return fd
	}
	// PSI, always reported: per value for categories and numbers with at most 20 values, else on the baseline's deciles.
	switch {
	case t.cat != nil:
		fd.PSI = fptr(t.cat.PSI())
	case t.numCat != nil:
		fd.PSI = fptr(t.numCat.PSI())
	default:
		ref, cur := t.num.Binned(t.num.Reference().DecileEdges())
		fd.PSI = fptr(stats.PSI(ref, cur))
	}
	switch t.method {
	case MethodKS:
		d, p := t.num.KS()
		fd.Statistic, fd.PValue = fptr(d), fptr(p)
		fd.Drifted = p < t.threshold
	case MethodWasserstein:
		w := t.num.WassersteinNormed()
		fd.Statistic, fd.Distance = fptr(w), fptr(w)
		fd.Drifted = w >= t.threshold
		fd.Exact = fd.Exact && t.num.Exact()
	case MethodChiSquare:
		var r stats.ChiSquareResult
		if t.cat != nil {
			r = t.cat.ChiSquare()
		} else if t.numCat != nil {
			r = t.numCat.ChiSquare()
		} else {
			fd.Note = "chisquare needs categories: this numeric feature has more than 20 distinct values"
			return fd
		}
		fd.Statistic, fd.PValue = fptr(r.Statistic), fptr(r.PValue)
		fd.Drifted = r.PValue < t.threshold
	case MethodJensenShannon:
		var js float64
		switch {
		case t.cat != nil:
			js = t.cat.JensenShannon()
		case t.numCat != nil:
			js = t.numCat.JensenShannon()
		default:
			ref, cur := t.num.Binned(t.num.Reference().DecileEdges())
			js = stats.JensenShannon(ref, cur)
		}
		fd.Statistic, fd.Distance = fptr(js), fptr(js)
		fd.Drifted = js >= t.threshold
	case MethodPSI:
		fd.Statistic, fd.Distance = fd.PSI, fd.PSI
		fd.Drifted = fd.PSI != nil && *fd.PSI >= t.threshold
	}
	return fd
}

// Drift computes (or reads, when a stored window is exactly [from, to)) drift of a deployment's captured inputs and
// outputs against the baseline of the version it serves. A zero from/to means the last full window.
func (s *Service) Drift(ctx context.Context, deployment string, from, to time.Time) (*slipway.DriftReport, error) {
	return s.DriftOfVersion(ctx, deployment, 0, from, to)
}

// DriftOfVersion is Drift of the traffic one version answered (0: the version the deployment serves), against
// that version's reference: a canary's requests never mix into the live version's drift, nor the other way.
func (s *Service) DriftOfVersion(ctx context.Context, deployment string, version int, from, to time.Time) (*slipway.DriftReport, error) {
	d, st, err := s.deploymentSettings(ctx, deployment)
	if err != nil {
		return nil, err
	}
	stored := version == 0 || version == d.Version // stored windows are the served version's
	if version > 0 && version != d.Version {
		dv := *d
		dv.Version = version
		d = &dv
	}
	if from.IsZero() && to.IsZero() {
		to = s.now().UTC().Truncate(st.DriftWindow.D())
		from = to.Add(-st.DriftWindow.D())
	} else if to.IsZero() {
		to = s.now().UTC()
	} else if from.IsZero() {
		from = to.Add(-st.DriftWindow.D())
	}
	if !from.Before(to) {
		return nil, invalidf("from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if r, err := s.data.FindDriftWindow(ctx, deployment, from, to); err == nil && stored {
		r.Stored = true
		return r, nil
	}
	return s.computeDrift(ctx, d, st, from, to)
}

func (s *Service) computeDrift(ctx context.Context, d *slipway.Deployment, st slipway.MonitoringSettings, from, to time.Time) (*slipway.DriftReport, error) {
	v, err := s.modelVersion(d.Model, d.Version)
	if err != nil {
		return nil, err
	}
	b, fw, err := s.referenceFor(ctx, d, st)
	if err != nil {
		return nil, err
	}
	var inputs, order, outputs []string
	if v.InputSchema != nil {
		for _, c := range v.InputSchema.Columns {
			order = append(order, c.Name)
		}
	}
	isOutput := map[string]bool{}
	if v.OutputSchema != nil {
		for _, c := range v.OutputSchema.Columns {
			isOutput[c.Name] = true
		}
	}
	for _, f := range b.Profile.Features {
		if isOutput[f.Name] && !contains(order, f.Name) {
			outputs = append(outputs, f.Name)
		} else {
			inputs = append(inputs, f.Name)
		}
	}
	in, err := NewDriftEngine(b.Profile, inputs, order, st.Features)
	if err != nil {
		return nil, err
	}
	out, err := NewDriftEngine(b.Profile, outputs, nil, st.Features)
	if err != nil {
		return nil, err
	}
	err = s.data.ScanCaptures(ctx, d.Name, from, to, func(c *slipway.Capture) error {
		if c.ModelVersion != d.Version {
			return nil // a canary's (or, during a rollout, the previous version's) traffic
		}
		if err := in.AddFrame(c.Inputs); err != nil {
			return fmt.Errorf("monitor: capture %d: %w", c.ID, err)
		}
		if len(outputs) > 0 {
			if err := out.AddFrame(c.Outputs); err != nil {
				return fmt.Errorf("monitor: capture %d: %w", c.ID, err)
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	r := &slipway.DriftReport{Deployment: d.Name, Model: d.Model, Version: d.Version, From: from.UTC(), To: to.UTC(),
		Rows: in.Rows(), Features: in.Results(), Outputs: out.Results(), ComputedAt: s.now().UTC(), Baseline: BaselineRegistered}
	if fw != nil {
		r.Baseline, r.BaselineFrom, r.BaselineTo = BaselineFirstWindow, &fw.from, &fw.to
	}
	drifted, tested := 0, 0
	for _, f := range r.Features {
		if f.Rows > 0 {
			tested++
		}
		if f.Drifted {
			drifted++
		}
	}
	if tested > 0 {
		r.DriftShare = float64(drifted) / float64(len(r.Features))
	}
	r.DatasetDrift = tested > 0 && r.DriftShare >= 0.5
	return r, nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// DriftWindows returns the stored windows that start in [from, to).
func (s *Service) DriftWindows(ctx context.Context, deployment string, from, to time.Time) ([]*slipway.DriftReport, error) {
	if _, err := s.cfg.Deployments.FindDeployment(ctx, deployment); err != nil {
		return nil, err
	}
	return s.data.FindDriftWindows(ctx, deployment, from, to)
}

// storeDriftWindows computes and stores the last finished window of every deployment that has a baseline and
// captures, once per window.
func (s *Service) storeDriftWindows(ctx context.Context) {
	ds, err := s.cfg.Deployments.FindDeployments(ctx)
	if err != nil {
		s.log.Error("drift windows: list deployments", "error", err)
		return
	}
	for _, d := range ds {
		st, err := s.Settings(ctx, d.Name)
		if err != nil {
			continue
		}
		w := st.DriftWindow.D()
		now := s.now().UTC()
		to := now.Truncate(w)
		from := to.Add(-w)
		if now.Sub(to) < 5*time.Second {
			continue // let the last captures of the window reach the store
		}
		if _, err := s.data.FindDriftWindow(ctx, d.Name, from, to); err == nil {
			continue // already stored
		}
		r, err := s.computeDrift(ctx, d, st, from, to)
		if err != nil {
			if ctx.Err() == nil && slipway.ErrorCode(err) != slipway.ECONFLICT { // ECONFLICT: no reference yet
				s.log.Warn("drift window", "deployment", d.Name, "error", err)
			}
			continue
		}
		if err := s.data.PutDriftWindow(ctx, r); err != nil {
			s.log.Error("store drift window", "deployment", d.Name, "error", err)
		}
	}
}

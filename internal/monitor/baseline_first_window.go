package monitor

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/stats"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Where a drift report's reference comes from (DriftReport.Baseline).
const (
	BaselineRegistered  = "registered"   // the version's own baseline (uploaded, or sent with its registration)
	BaselineFirstWindow = "first_window" // the deployment's first drift window of the version's traffic
)

// firstWindows caches the profiles of finished first windows, by deployment and version: such a window never
// changes once over.
type firstWindows struct {
	mu sync.Mutex
	m  map[firstWindowKey]*firstWindow
}

type firstWindowKey struct {
	deployment string
	version    int
}

type firstWindow struct {
	from, to time.Time
	profile  *slipway.DataProfile
}

// referenceFor is what drift compares a deployment's traffic with: its version's baseline, or without one the
// profile of the captures of its version's first drift window (ECONFLICT while it has no traffic yet).
func (s *Service) referenceFor(ctx context.Context, d *slipway.Deployment, st slipway.MonitoringSettings) (*slipway.Baseline, *firstWindow, error) {
	b, err := s.FindBaseline(ctx, d.Model, d.Version)
	if err == nil || slipway.ErrorCode(err) != slipway.ENOTFOUND {
		return b, nil, err
	}
	fw, err := s.firstWindowProfile(ctx, d, st.DriftWindow.D())
	if err != nil {
		return nil, nil, err
	}
	return &slipway.Baseline{Model: d.Model, Version: d.Version, Profile: fw.profile}, fw, nil
}

// firstWindowProfile profiles the captures of the deployment's version in [first capture, + window).
func (s *Service) firstWindowProfile(ctx context.Context, d *slipway.Deployment, window time.Duration) (*firstWindow, error) {
	key := firstWindowKey{d.Name, d.Version}
	s.first.mu.Lock()
	fw := s.first.m[key]
	s.first.mu.Unlock()
	if fw != nil {
		return fw, nil
	}
	first, err := s.data.PageCaptures(ctx, slipway.CapturePage{Deployment: d.Name, From: time.UnixMilli(0), To: s.now().Add(time.Hour),
		Version: d.Version, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		return nil, slipway.Errorf(slipway.ECONFLICT, "version %d of model %s (served by %s) has no baseline and no captured traffic yet: "+
			"drift compares against its first window of traffic once there is some, or upload a sample of its training data with "+
			"PUT /api/v1/models/%s/versions/%d/baseline", d.Version, d.Model, d.Name, d.Model, d.Version)
	}
	fw = &firstWindow{from: first[0].Capture.Time, to: first[0].Capture.Time.Add(window)}
	var b *stats.ProfileBuilder
	var names []string
	err = s.data.ScanCaptures(ctx, d.Name, fw.from, fw.to, func(c *slipway.Capture) error {
		if c.ModelVersion != d.Version {
			return nil // a canary's or an earlier version's traffic
		}
		in, err := workerproto.DecodeTensors(c.Inputs)
		if err != nil {
			return fmt.Errorf("monitor: capture %d: %w", c.ID, err)
		}
		out, err := workerproto.DecodeTensors(c.Outputs)
		if err != nil {
			return fmt.Errorf("monitor: capture %d: %w", c.ID, err)
		}
		cols := append(in, out...)
		if b == nil {
			var kinds []string
			for _, t := range cols {
				if rowWidth(&t) != 1 {
					continue
				}
				kind := stats.Categorical
				if dt := workerproto.ParseDatatype(t.Datatype); dt.IsNumeric() && dt != workerproto.BOOL {
					kind = stats.Numeric
				}
				names, kinds = append(names, t.Name), append(kinds, kind)
			}
			b = stats.NewProfileBuilder(names, kinds)
		}
		addRows(b, names, cols, c.Rows)
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, slipway.Errorf(slipway.ECONFLICT, "no captured traffic of version %d in %s's first window", d.Version, d.Name)
	}
	fw.profile = b.Profile()
	if !s.now().Before(fw.to) { // over: it will not change
		s.first.mu.Lock()
		if s.first.m == nil {
			s.first.m = map[firstWindowKey]*firstWindow{}
		}
		s.first.m[key] = fw
		s.first.mu.Unlock()
	}
	return fw, nil
}

// addRows adds a capture's rows to the profile: each named feature from the column of that name (missing when
// the capture has none, or the value is NaN).
func addRows(b *stats.ProfileBuilder, names []string, cols []workerproto.Tensor, rows int) {
	idx := make([]int, len(names))
	for i, n := range names {
		idx[i] = -1
		for j := range cols {
			if cols[j].Name == n && rowWidth(&cols[j]) == 1 {
				idx[i] = j
			}
		}
	}
	for r := range rows {
		b.AddRow()
		for i, j := range idx {
			if j < 0 || r >= int(cols[j].Shape[0]) {
				b.AddMissing(i)
				continue
			}
			t := &cols[j]
			if dt := workerproto.ParseDatatype(t.Datatype); dt.IsNumeric() && dt != workerproto.BOOL {
				if v := tensorFloat(t, r); !math.IsNaN(v) {
					b.AddNumber(i, v)
				} else {
					b.AddMissing(i)
				}
				continue
			}
			b.AddString(i, tensorText(t, r, ""))
		}
	}
}

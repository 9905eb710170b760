package monitor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

func frames(ts ...workerproto.Tensor) []byte { return workerproto.EncodeTensors(nil, ts) }

func labelled(labels []int64, probs []float64) []byte {
	return frames(workerproto.NewInt64("label", nil, labels), workerproto.NewFloat64("probability", nil, probs))
}

func near(got *float64, want float64) bool { return got != nil && math.Abs(*got-want) < 1e-12 }

func TestCompareShadow(t *testing.T) {
	age := func(v ...float64) []byte { return frames(workerproto.NewFloat64("age", nil, v)) }
	tests := []struct {
		name  string
		pairs []*slipway.ShadowPair
		check func(t *testing.T, r *slipway.ShadowReport)
	}{{
		name: "labels and probabilities",
		pairs: []*slipway.ShadowPair{{LiveVersion: 1, ShadowVersion: 2, Rows: 4, LiveMS: 3, ShadowMS: 5,
			LiveOutputs:   labelled([]int64{0, 1, 1, 0}, []float64{0.1, 0.9, 0.6, 0.2}),
			ShadowOutputs: labelled([]int64{0, 1, 0, 0}, []float64{0.1, 0.8, 0.4, 0.5})}},
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if r.Requests != 1 || r.Compared != 4 || !near(r.Agreement, 0.75) || r.Version != 2 || r.LiveVersion != 1 {
				t.Errorf("report %+v", r)
			}
			if !near(r.MeanAbsDiff, (0+0.1+0.2+0.3)/4) || !near(r.MaxAbsDiff, 0.3) {
				t.Errorf("diffs %v %v", *r.MeanAbsDiff, *r.MaxAbsDiff)
			}
			if !near(r.LatencyP99MS.Live, 3) || !near(r.LatencyP99MS.Shadow, 5) {
				t.Errorf("latency %+v", r.LatencyP99MS)
			}
		},
	}, {
		name: "errors are counted and not compared",
		pairs: []*slipway.ShadowPair{
			{Rows: 2, LiveMS: 1, ShadowError: "model error", LiveOutputs: labelled([]int64{0, 1}, []float64{0.2, 0.7})},
			{Rows: 1, LiveError: "HTTP 500", ShadowMS: 9, ShadowOutputs: labelled([]int64{1}, []float64{0.7})},
		},
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if r.Requests != 2 || r.Compared != 0 || r.Agreement != nil || r.MeanAbsDiff != nil ||
				r.Errors != (slipway.ShadowSides{Live: 1, Shadow: 1}) || !near(r.LatencyP99MS.Live, 1) || !near(r.LatencyP99MS.Shadow, 9) {
				t.Errorf("report %+v", r)
			}
		},
	}, {
		name: "regression values have differences but no class",
		pairs: []*slipway.ShadowPair{{Rows: 2,
			LiveOutputs:   frames(workerproto.NewFloat64("y", nil, []float64{1.5, 2.25})),
			ShadowOutputs: frames(workerproto.NewFloat64("y", nil, []float64{1.0, 2.5}))}},
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if r.Agreement != nil || !near(r.MeanAbsDiff, 0.375) || !near(r.MaxAbsDiff, 0.5) || r.Compared != 2 {
				t.Errorf("report %+v", r)
			}
		},
	}, {
		name: "class probabilities: argmax",
		pairs: []*slipway.ShadowPair{{Rows: 2,
			LiveOutputs:   frames(workerproto.NewFloat32("probabilities", []int64{2, 3}, []float32{0.1, 0.7, 0.2, 0.5, 0.25, 0.25})),
			ShadowOutputs: frames(workerproto.NewFloat32("probabilities", []int64{2, 3}, []float32{0.2, 0.6, 0.2, 0.25, 0.5, 0.25}))}},
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if !near(r.Agreement, 0.5) || !near(r.MaxAbsDiff, 0.25) {
				t.Errorf("report %+v", r)
			}
		},
	}, {
		name: "different output names: classes compared, no differences",
		pairs: []*slipway.ShadowPair{{Rows: 2,
			LiveOutputs:   frames(workerproto.NewBytes("label", nil, []string{"yes", "no"})),
			ShadowOutputs: frames(workerproto.NewFloat64("prediction", nil, []float64{1, 0}))}},
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if !near(r.Agreement, 0) || r.MeanAbsDiff != nil {
				t.Errorf("report %+v", r)
			}
		},
	}, {
		name: "labels sent as JSON numbers are classes, not differences",
		pairs: []*slipway.ShadowPair{{Rows: 2,
			LiveOutputs:   frames(workerproto.NewFloat64("prediction", nil, []float64{1, 0}), workerproto.NewFloat64("probability", nil, []float64{0.75, 0.25})),
			ShadowOutputs: frames(workerproto.NewFloat64("prediction", nil, []float64{0, 0}), workerproto.NewFloat64("probability", nil, []float64{0.5, 0.25}))}},
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if !near(r.Agreement, 0.5) || !near(r.MeanAbsDiff, 0.125) || !near(r.MaxAbsDiff, 0.25) {
				t.Errorf("report %+v", r)
			}
		},
	}, {
		name: "slices by quartile: the disagreement is in the top quarter of age",
		pairs: func() []*slipway.ShadowPair {
			var ps []*slipway.ShadowPair
			for i := range 8 {
				shadow := int64(0)
				if i >= 6 {
					shadow = 1
				}
				ps = append(ps, &slipway.ShadowPair{Rows: 1, Features: age(float64(i + 1)),
					LiveOutputs: labelled([]int64{0}, []float64{0}), ShadowOutputs: labelled([]int64{shadow}, []float64{0})})
			}
			return ps
		}(),
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if len(r.ByFeature) != 1 || r.ByFeature[0].Feature != "age" || r.ByFeature[0].Spread != 1 {
				t.Fatalf("slices %+v", r.ByFeature)
			}
			var got []string
			for _, b := range r.ByFeature[0].Bins {
				got = append(got, fmt.Sprintf("[%g,%g] %d %.2f", b.Low, b.High, b.Rows, *b.Agreement))
			}
			want := []string{"[1,3] 2 1.00", "[3,5] 2 1.00", "[5,7] 2 1.00", "[7,8] 2 0.00"}
			if !slices.Equal(got, want) {
				t.Errorf("bins %v, want %v", got, want)
			}
		},
	}, {
		name:  "no pairs",
		pairs: nil,
		check: func(t *testing.T, r *slipway.ShadowReport) {
			if r.Requests != 0 || r.Agreement != nil || r.LatencyP99MS.Live != nil || r.ByFeature == nil || len(r.ByFeature) != 0 {
				t.Errorf("report %+v", r)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := CompareShadow("d", tc.pairs)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

// The report the service answers equals a direct computation on the pairs it stored, the shadow's answers
// arriving before and after the live ones; requests that are not sampled, or whose copy was not sent, leave
// no pair.
func TestShadowReportEqualsDirectComputation(t *testing.T) {
	e := newEnv(t, nil)
	e.s.Start()
	ctx := context.Background()
	rng := func(i, k int) float64 { return float64((i*7919+k*104729)%1000) / 1000 }
	const n = 300
	for i := range n {
		ex := &Exchange{Deployment: "churn", Protocol: ProtoV2, Start: e.now.Now(), RequestID: fmt.Sprint("r", i)}
		ex.Serving(1)
		sink := e.s.ShadowSink(ex, true)
		if sink == nil {
			t.Fatal("a comparing shadow at sampling rate 1 got no sink")
		}
		rows := 1 + i%3
		ages, plans, live, shadow := make([]float64, rows), make([]string, rows), make([]int64, rows), make([]int64, rows)
		lp, sp := make([]float64, rows), make([]float64, rows)
		for r := range rows {
			ages[r], plans[r] = 20+60*rng(i, r), "basic"
			lp[r], sp[r] = rng(i, r+10), rng(i, r+20)
			live[r], shadow[r] = int64(math.Round(lp[r])), int64(math.Round(sp[r]))
		}
		answer := func() {
			var err error
			if i%17 == 0 {
				err = errors.New("shadow failed")
			}
			sink(2, []workerproto.Tensor{workerproto.NewInt64("prediction", nil, shadow), workerproto.NewFloat64("probability", nil, sp)},
				nil, err, time.Duration(i)*time.Millisecond)
		}
		if i%2 == 0 {
			answer() // the shadow first
		}
		ex.Tensors(1, "r0", []workerproto.Tensor{workerproto.NewFloat64("age", nil, ages), workerproto.NewBytes("plan", nil, plans)},
			[]workerproto.Tensor{workerproto.NewInt64("prediction", nil, live), workerproto.NewFloat64("probability", nil, lp)})
		e.s.Finish(ex, 200, 10)
		if i%2 == 1 {
			answer()
		}
	}
	// A copy not sent leaves no pair; a deployment whose shadow does not compare gets no sink.
	ex := &Exchange{Deployment: "churn", Protocol: ProtoV2, Start: e.now.Now(), RequestID: "dropped"}
	ex.Serving(1)
	e.s.ShadowSink(ex, true)(2, nil, nil, slipway.ErrShadowNotSent, 0)
	e.s.Finish(ex, 200, 10)
	if e.s.ShadowSink(ex, false) != nil {
		t.Fatal("a shadow that does not compare got a sink")
	}
	e.s.Close() // flushes the queue

	from, to := e.now.Now().Add(-time.Hour), e.now.Now().Add(time.Hour)
	var pairs []*slipway.ShadowPair
	if err := e.data.ScanShadowPairs(ctx, "churn", from, to, func(p *slipway.ShadowPair) error { pairs = append(pairs, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pairs) != n {
		t.Fatalf("%d pairs stored, want %d", len(pairs), n)
	}
	got, err := e.s.ShadowReport(ctx, "churn", from, to)
	if err != nil {
		t.Fatal(err)
	}

	// Direct computation on the stored pairs, for this output layout (prediction INT64, probability FP64).
	var compared, agreed, shadowErrs int64
	var diffSum, diffMax float64
	var lat []float64
	for _, p := range pairs {
		if p.ShadowError != "" {
			shadowErrs++
			continue
		}
		lat = append(lat, p.ShadowMS)
		l, _ := workerproto.DecodeTensors(p.LiveOutputs)
		s, _ := workerproto.DecodeTensors(p.ShadowOutputs)
		lpred, _ := l[0].Int64s()
		spred, _ := s[0].Int64s()
		lprob, _ := l[1].Float64s()
		sprob, _ := s[1].Float64s()
		for r := range lpred {
			compared++
			if lpred[r] == spred[r] {
				agreed++
			}
			d := math.Abs(lprob[r] - sprob[r])
			diffSum += d
			diffMax = max(diffMax, d)
		}
	}
	slices.Sort(lat)
	if got.Requests != n || got.Compared != compared || got.Errors.Shadow != shadowErrs || got.Errors.Live != 0 ||
		!near(got.Agreement, float64(agreed)/float64(compared)) || !near(got.MeanAbsDiff, diffSum/float64(compared)) ||
		!near(got.MaxAbsDiff, diffMax) || !near(got.LatencyP99MS.Shadow, lat[int(math.Ceil(0.99*float64(len(lat))))-1]) ||
		got.Version != 2 || got.LiveVersion != 1 {
		t.Errorf("report %+v\nwant compared %d agreed %d shadow errors %d", got, compared, agreed, shadowErrs)
	}
	if len(got.ByFeature) != 1 || got.ByFeature[0].Feature != "age" {
		t.Errorf("slices: %+v (age is the one numeric input)", got.ByFeature)
	}
}

// A deployment that captures nothing compares nothing: the sampling is the capture's.
func TestShadowSamplingFollowsCapture(t *testing.T) {
	e := newEnv(t, nil)
	st := slipway.DefaultMonitoringSettings()
	st.SamplingRate = 0
	if _, err := e.s.PutSettings(context.Background(), "churn", st); err != nil {
		t.Fatal(err)
	}
	ex := &Exchange{Deployment: "churn", Protocol: ProtoV2, Start: e.now.Now(), RequestID: "r"}
	ex.Serving(1)
	if e.s.ShadowSink(ex, true) != nil {
		t.Fatal("sampling rate 0 still compares")
	}
}

// A live answer whose shadow never answers is stored as a shadow error after the join's bounded wait.
func TestShadowJoinBoundedWait(t *testing.T) {
	e := newEnv(t, nil)
	e.s.Start()
	ex := &Exchange{Deployment: "churn", Protocol: ProtoV2, Start: e.now.Now(), RequestID: "slow"}
	ex.Serving(1)
	if e.s.ShadowSink(ex, true) == nil {
		t.Fatal("no sink")
	}
	ex.Tensors(1, "r0", []workerproto.Tensor{workerproto.NewFloat64("age", nil, []float64{30})},
		[]workerproto.Tensor{workerproto.NewInt64("prediction", nil, []int64{1})})
	e.s.Finish(ex, 200, 10)
	e.s.sweepShadow(context.Background()) // within the wait: still waiting
	e.now.Add(shadowJoinWait + time.Second)
	e.s.sweepShadow(context.Background())
	e.s.Close()
	var pairs []*slipway.ShadowPair
	if err := e.data.ScanShadowPairs(context.Background(), "churn", ex.Start.Add(-time.Minute), e.now.Now(), func(p *slipway.ShadowPair) error {
		pairs = append(pairs, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 1 || pairs[0].RequestID != "slow" || !strings.Contains(pairs[0].ShadowError, "no answer within 1m0s") || pairs[0].LiveError != "" {
		t.Fatalf("pairs after the wait: %+v", pairs)
	}
	if len(e.s.join.pending) != 0 {
		t.Fatalf("%d requests still wait", len(e.s.join.pending))
	}
}

package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestShadowPairsAndCapturePages(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		db := openMonitorDB(t, td)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

		var ps []*slipway.ShadowPair
		for i := range 100 {
			ps = append(ps, &slipway.ShadowPair{Deployment: "d", RequestID: fmt.Sprint("r", i), Time: t0.Add(time.Duration(i) * time.Second),
				LiveVersion: 1, ShadowVersion: 2, Rows: 1, LiveOutputs: []byte{1}, ShadowOutputs: []byte{2}, LiveMS: 1.5, ShadowMS: 2.5,
				ShadowError: map[bool]string{true: "boom"}[i%10 == 0]})
		}
		if err := db.InsertShadowPairs(ctx, ps); err != nil {
			t.Fatal(err)
		}
		var got []*slipway.ShadowPair
		if err := db.ScanShadowPairs(ctx, "d", t0.Add(10*time.Second), t0.Add(20*time.Second), func(p *slipway.ShadowPair) error {
			got = append(got, p)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 10 || got[0].RequestID != "r10" || got[0].ShadowError != "boom" || got[0].ShadowMS != 2.5 ||
			!got[0].Time.Equal(t0.Add(10*time.Second)) || got[9].RequestID != "r19" || got[1].ShadowError != "" {
			t.Fatalf("scanned pairs: %d, first %+v", len(got), got[0])
		}

		// Captures: several in the same millisecond, so that pages split ties; one version filtered.
		var cs []*slipway.Capture
		for i := range 50 {
			cs = append(cs, &slipway.Capture{Deployment: "d", RequestID: fmt.Sprint("c", i), ModelVersion: 1 + i%2,
				Time: t0.Add(time.Duration(i/5) * time.Millisecond), Rows: 1, Protocol: "v2", Inputs: []byte{1}, Outputs: []byte{2}})
		}
		if err := db.InsertCaptures(ctx, cs); err != nil {
			t.Fatal(err)
		}
		label := "1"
		if _, err := db.UpsertFeedback(ctx, []*slipway.Feedback{{Deployment: "d", RequestID: "c7", Row: 0, Label: &label, Time: t0, ReceivedAt: t0}}); err != nil {
			t.Fatal(err)
		}
		for _, version := range []int{0, 2} {
			page := slipway.CapturePage{Deployment: "d", From: t0, To: t0.Add(time.Second), Version: version, Limit: 3}
			var ids []string
			for {
				items, err := db.PageCaptures(ctx, page)
				if err != nil {
					t.Fatal(err)
				}
				for _, lc := range items {
					ids = append(ids, lc.Capture.RequestID)
					if (lc.Capture.RequestID == "c7") != (len(lc.Feedback) == 1) {
						t.Fatalf("feedback of %s: %v", lc.Capture.RequestID, lc.Feedback)
					}
				}
				if len(items) < page.Limit {
					break
				}
				last := items[len(items)-1].Capture
				page.AfterTime, page.AfterID = last.Time, last.ID
			}
			var want []string
			for i := range 50 {
				if version == 0 || 1+i%2 == version {
					want = append(want, fmt.Sprint("c", i))
				}
			}
			if fmt.Sprint(ids) != fmt.Sprint(want) {
				t.Fatalf("version %d: pages gave %v, want %v", version, ids, want)
			}
		}

		n, err := db.Prune(ctx, slipway.MonitoringPrune{Deployment: "d", CapturesBefore: t0.Add(50 * time.Second)})
		if err != nil || n < 50 {
			t.Fatalf("prune: %d %v", n, err)
		}
		count := 0
		_ = db.ScanShadowPairs(ctx, "d", t0, t0.Add(time.Hour), func(*slipway.ShadowPair) error { count++; return nil })
		if count != 50 {
			t.Fatalf("%d pairs after pruning the first 50 seconds, want 50", count)
		}
	})
}

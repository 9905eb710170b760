package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func openMonitorDB(t *testing.T, td testDialect) *MonitorDB {
	t.Helper()
	inst := td.fresh(t)
	db, err := inst.openMonitor(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Reopening applies nothing new.
	if db, err = inst.openMonitor(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMonitorCapturesFeedbackAndRetention(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		db := openMonitorDB(t, td)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var cs []*slipway.Capture
		for i := range 200 { // more than one multi-row INSERT
			cs = append(cs, &slipway.Capture{Deployment: "d", RequestID: fmt.Sprint("r", i), ModelVersion: 1, Time: t0.Add(time.Duration(i) * time.Second),
				Rows: 2, Protocol: "v2", Inputs: []byte{1}, Outputs: []byte{2}})
		}
		cs = append(cs, &slipway.Capture{Deployment: "other", RequestID: "r1", Time: t0, Rows: 5, Inputs: []byte{}, Outputs: []byte{}})
		if err := db.InsertCaptures(ctx, cs); err != nil {
			t.Fatal(err)
		}
		rows, err := db.CaptureRows(ctx, "d", []string{"r1", "r150", "nope"})
		if err != nil || len(rows) != 2 || rows["r1"] != 2 || rows["r150"] != 2 {
			t.Fatalf("capture rows: %v %v", rows, err)
		}
		n := 0
		if err := db.ScanCaptures(ctx, "d", t0.Add(10*time.Second), t0.Add(20*time.Second), func(*slipway.Capture) error { n++; return nil }); err != nil || n != 10 {
			t.Fatalf("scan: %d %v", n, err)
		}
		one, two := "1", "0"
		fb := []*slipway.Feedback{{Deployment: "d", RequestID: "r1", Row: 0, Label: &one, Time: t0, ReceivedAt: t0},
			{Deployment: "d", RequestID: "r1", Row: 1, Label: &two, Time: t0, ReceivedAt: t0}}
		res, err := db.UpsertFeedback(ctx, fb)
		if err != nil || res.Inserted != 2 {
			t.Fatalf("feedback: %+v %v", res, err)
		}
		fb[1].Label = &one
		if res, err = db.UpsertFeedback(ctx, fb); err != nil || res.Unchanged != 1 || res.Updated != 1 {
			t.Fatalf("feedback again: %+v %v", res, err)
		}
		var labelled []string
		err = db.ScanLabelled(ctx, "d", t0, t0.Add(time.Hour), func(c *slipway.Capture, fs []*slipway.Feedback) error {
			for _, f := range fs {
				labelled = append(labelled, fmt.Sprintf("%s/%d=%s", c.RequestID, f.Row, *f.Label))
			}
			return nil
		})
		if err != nil || fmt.Sprint(labelled) != "[r1/0=1 r1/1=1]" {
			t.Fatalf("labelled: %v %v", labelled, err)
		}
		// Retention: by age, then by count.
		if _, err := db.Prune(ctx, slipway.MonitoringPrune{Deployment: "d", CapturesBefore: t0.Add(100 * time.Second), MaxCaptures: 50}); err != nil {
			t.Fatal(err)
		}
		n = 0
		db.ScanCaptures(ctx, "d", t0, t0.Add(time.Hour), func(c *slipway.Capture) error {
			if c.Time.Before(t0.Add(150 * time.Second)) {
				t.Errorf("capture at %s kept", c.Time)
			}
			n++
			return nil
		})
		if n != 50 {
			t.Errorf("%d captures kept, want the newest 50", n)
		}
		if rows, _ := db.CaptureRows(ctx, "other", []string{"r1"}); rows["r1"] != 5 {
			t.Errorf("another deployment's captures pruned")
		}
	})
}

func TestMonitorLogsAndMetrics(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		db := openMonitorDB(t, td)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var ls []*slipway.LogLine
		for i := range 100 {
			kind := slipway.LogAccess
			if i%2 == 1 {
				kind = slipway.LogPredict
			}
			ls = append(ls, &slipway.LogLine{Deployment: "d", Time: t0.Add(time.Duration(i) * time.Second), Kind: kind, Replica: "d-1", Line: fmt.Sprint("line ", i)})
		}
		if err := db.InsertLogs(ctx, ls); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindLogs(ctx, slipway.LogFilter{Deployment: "d", Kind: slipway.LogPredict, Since: t0.Add(90 * time.Second), Limit: 100})
		if err != nil || len(got) != 5 || got[0].Line != "line 91" {
			t.Fatalf("logs: %d %v", len(got), err)
		}
		page, _ := db.FindLogs(ctx, slipway.LogFilter{Deployment: "d", AfterID: got[4].ID - 2, Limit: 1})
		if len(page) != 1 || page[0].ID != got[4].ID-1 {
			t.Fatalf("after: %+v", page)
		}
		if _, err := db.Prune(ctx, slipway.MonitoringPrune{Deployment: "d", LogsBefore: t0.Add(50 * time.Second), MaxLogLines: 30}); err != nil {
			t.Fatal(err)
		}
		if all, _ := db.FindLogs(ctx, slipway.LogFilter{Deployment: "d", Limit: 1000}); len(all) != 30 || all[0].Line != "line 70" {
			t.Fatalf("after pruning: %d lines, first %q", len(all), all[0].Line)
		}
		p := &slipway.MetricPoint{Deployment: "d", Minute: t0, Requests: 10, LatencyMeanMS: 2, Status2xx: 10}
		if err := db.UpsertMetricPoints(ctx, []*slipway.MetricPoint{p}); err != nil {
			t.Fatal(err)
		}
		// The same minute again (a restart within it) adds up.
		if err := db.UpsertMetricPoints(ctx, []*slipway.MetricPoint{{Deployment: "d", Minute: t0, Requests: 30, LatencyMeanMS: 4, Status2xx: 30}}); err != nil {
			t.Fatal(err)
		}
		pts, err := db.FindMetricPoints(ctx, "d", t0, t0.Add(time.Minute))
		if err != nil || len(pts) != 1 || pts[0].Requests != 40 || pts[0].LatencyMeanMS != 3.5 {
			t.Fatalf("points: %+v %v", pts, err)
		}
		if _, err := db.FindDriftWindow(ctx, "d", t0, t0.Add(time.Hour)); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("missing window: %v", err)
		}
		if err := db.PutDriftWindow(ctx, &slipway.DriftReport{Deployment: "d", From: t0, To: t0.Add(time.Hour), Rows: 7}); err != nil {
			t.Fatal(err)
		}
		if w, err := db.FindDriftWindow(ctx, "d", t0, t0.Add(time.Hour)); err != nil || w.Rows != 7 {
			t.Fatalf("window: %+v %v", w, err)
		}
	})
}

func TestMonitorMainStore(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		db := openTestDB(t, td)
		v := readyVersion(t, db, "m")
		if err := db.CreateDeployment(ctx, &slipway.Deployment{Name: "d", State: slipway.DeploymentActive, Model: "m", Version: v.Version, Replicas: 1, TimeoutMS: 1, MaxQueue: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.FindSettings(ctx, "d"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("settings: %v", err)
		}
		st := slipway.DefaultMonitoringSettings()
		if err := db.PutSettings(ctx, "d", &st); err != nil {
			t.Fatal(err)
		}
		if err := db.PutSettings(ctx, "nope", &st); err == nil {
			t.Fatal("settings of a missing deployment stored")
		}
		r := &slipway.AlertRule{ID: "r1", Deployment: "d", Name: "acc", Metric: "accuracy", Op: "below", Threshold: 0.8, State: slipway.AlertOK,
			Webhook: &slipway.Webhook{URL: "http://x", Secret: "0123456789abcdef"}, CreatedAt: time.Now()}
		if err := db.CreateAlertRule(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAlertRule(ctx, &slipway.AlertRule{ID: "r2", Deployment: "d", Name: "acc", State: "ok", CreatedAt: time.Now()}); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("duplicate rule: %v", err)
		}
		now := time.Now()
		v1 := 0.5
		r.State, r.Value, r.Since, r.LastEvaluated = slipway.AlertFiring, &v1, &now, &now
		ev := &slipway.AlertEvent{RuleID: "r1", Deployment: "d", Rule: "acc", State: slipway.AlertFiring, Value: &v1, Threshold: 0.8, Message: "m", Time: now}
		if err := db.RecordAlertEvaluation(ctx, r, ev); err != nil || ev.ID == 0 {
			t.Fatal(err)
		}
		rules, err := db.FindAlertRules(ctx, "d")
		if err != nil || len(rules) != 1 || rules[0].State != slipway.AlertFiring || rules[0].Webhook.Secret == "" || *rules[0].Value != 0.5 {
			t.Fatalf("rules: %+v %v", rules, err)
		}
		// Deleting the deployment deletes its rules, history and settings.
		if err := db.DeleteDeployment(ctx, "d"); err != nil {
			t.Fatal(err)
		}
		if rules, _ := db.FindAlertRules(ctx, ""); len(rules) != 0 {
			t.Fatalf("rules left: %+v", rules)
		}
		if evs, _ := db.FindAlertEvents(ctx, "d", 10); len(evs) != 0 {
			t.Fatalf("events left: %+v", evs)
		}
	})
}

// Two servers write the same deployment-minute (a failover or hand-over minute: each served part of it), many
// times and at once: the stored minute holds the sum of every count, never one server's written over the
// other's. Each write reads and adds under the monitoring data's write lock.
func TestMetricMinuteOfTwoServersAddsUp(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		inst := td.fresh(t)
		var servers [2]*MonitorDB
		for i := range servers {
			db, err := inst.openMonitor(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			servers[i] = db
		}
		minute := time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC)
		const writes = 25
		errs := make(chan error, 2*writes)
		for i, db := range servers {
			go func() {
				for w := range writes {
					p := &slipway.MetricPoint{Deployment: "churn", Minute: minute, Requests: int64(i + 1), Status2xx: int64(i + 1),
						BytesIn: 100, LatencyMeanMS: float64(10 * (i + 1)), LatencyMaxMS: float64(w + 100*i)}
					errs <- db.UpsertMetricPoints(ctx, []*slipway.MetricPoint{p})
				}
			}()
		}
		for range 2 * writes {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		pts, err := servers[0].FindMetricPoints(ctx, "churn", minute, minute.Add(time.Minute))
		if err != nil || len(pts) != 1 {
			t.Fatalf("points: %+v %v", pts, err)
		}
		p := pts[0]
		// Server 0 sent 25 × 1 request at 10 ms, server 1 25 × 2 at 20 ms.
		if p.Requests != 75 || p.Status2xx != 75 || p.BytesIn != 5000 || p.LatencyMaxMS != 124 ||
			p.LatencyMeanMS < 16.66 || p.LatencyMeanMS > 16.67 {
			t.Fatalf("the minute of two servers: %+v, want 75 requests, 5000 bytes in, max 124 ms, mean 16.67 ms", p)
		}
	})
}

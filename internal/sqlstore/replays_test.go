package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestReplaysRoundTripAndAttemptFence(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "churn")
		d := &slipway.Deployment{Name: "churn-api", State: slipway.DeploymentActive, Model: v.Model, Version: v.Version,
			Replicas: 1, TimeoutMS: 1000, MaxQueue: 10}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		from := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
		r := &slipway.Replay{ID: "p1", Deployment: d.Name, Model: v.Model, State: slipway.ReplayRunning, CreatedBy: "alice",
			Spec: slipway.ReplaySpec{Version: 2, From: from, To: from.Add(time.Hour), Limit: 50, Replicas: 1}}
		if err := db.CreateReplay(ctx, r); err != nil {
			t.Fatal(err)
		}
		// A server takes it (attempt 0 → 1) and records progress; the older attempt's write is refused.
		taken := *r
		taken.Attempt, taken.Sent, taken.Total = 1, 10, 50
		if err := db.UpdateReplay(ctx, &taken, 0); err != nil {
			t.Fatal(err)
		}
		stale := *r
		stale.Sent = 3
		if err := db.UpdateReplay(ctx, &stale, 0); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("a write of a superseded attempt: %v, want conflict", err)
		}
		agree := 0.75
		taken.State, taken.Sent, taken.Report = slipway.ReplaySucceeded, 50, &slipway.ShadowReport{Deployment: d.Name, Version: 2, LiveVersion: 1, Requests: 50, Agreement: &agree}
		now := time.Now().UTC()
		taken.EndedAt = &now
		if err := db.UpdateReplay(ctx, &taken, 1); err != nil {
			t.Fatal(err)
		}
		if err := db.UpdateReplay(ctx, &taken, 1); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("a write after the end: %v, want conflict", err)
		}
		got, err := db.FindReplay(ctx, d.Name, "p1")
		if err != nil || got.State != slipway.ReplaySucceeded || got.Sent != 50 || got.Total != 50 || got.Attempt != 1 ||
			got.Report == nil || *got.Report.Agreement != 0.75 || !got.Spec.From.Equal(from) || got.Spec.Limit != 50 || got.EndedAt == nil {
			t.Fatalf("stored replay = %+v, %v", got, err)
		}
		if running, err := db.FindRunningReplays(ctx); err != nil || len(running) != 0 {
			t.Fatalf("running = %v, %v", running, err)
		}
		if list, err := db.FindReplays(ctx, d.Name, 10); err != nil || len(list) != 1 {
			t.Fatalf("list = %v, %v", list, err)
		}
		if _, err := db.FindReplay(ctx, "other", "p1"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("replay under another deployment: %v", err)
		}
		if err := db.DeleteDeployment(ctx, d.Name); err != nil {
			t.Fatal(err)
		}
		if list, _ := db.FindReplays(ctx, d.Name, 10); len(list) != 0 {
			t.Fatalf("replays outlived their deployment: %v", list)
		}
	})
}

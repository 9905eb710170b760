package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestRolloutsRoundTripOneRunningPerDeploymentAndCompareAndSet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "churn")
		d := &slipway.Deployment{Name: "churn-api", State: slipway.DeploymentActive, Model: v.Model, Version: v.Version,
			Replicas: 1, TimeoutMS: 1000, MaxQueue: 10}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		ten := slipway.Duration(10 * time.Second)
		agree := 0.9
		r := &slipway.Rollout{ID: "r1", Deployment: d.Name, Model: v.Model, Version: 2, From: 1, State: slipway.RolloutRunning,
			Steps: []slipway.RolloutStep{{Shadow: &ten}, {Canary: 50, For: &ten}}, Gates: slipway.RolloutGates{MinAgreement: &agree}.WithDefaults(),
			StepPhase: "starting", CreatedBy: "alice"}
		if err := db.CreateRollout(ctx, r); err != nil {
			t.Fatal(err)
		}
		second := *r
		second.ID = "r2"
		if err := db.CreateRollout(ctx, &second); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("a second RUNNING rollout of the deployment: %v, want conflict", err)
		}
		started := time.Now().UTC().Truncate(time.Millisecond)
		r.StepPhase, r.StepStartedAt = "observing", &started
		r.Decisions = append(r.Decisions, slipway.RolloutDecision{Time: started, Action: slipway.RolloutStepStarted, Message: "shadow serves",
			Checks: []slipway.GateCheck{{Gate: "min_agreement", Threshold: 0.9, Value: &agree, Passed: true, Evidence: "90 of 100 rows"}}})
		if err := db.UpdateRollout(ctx, r, slipway.RolloutRunning); err != nil {
			t.Fatal(err)
		}
		running, err := db.FindRunningRollouts(ctx)
		if err != nil || len(running) != 1 || running[0].ID != "r1" {
			t.Fatalf("running = %v, %v", running, err)
		}
		got := running[0]
		if got.StepStartedAt == nil || !got.StepStartedAt.Equal(started) || len(got.Decisions) != 1 ||
			*got.Decisions[0].Checks[0].Value != 0.9 || got.Steps[1].Canary != 50 || got.Steps[0].Shadow.D() != 10*time.Second ||
			*got.Gates.MinAgreement != 0.9 || *got.Gates.MinRequests != slipway.DefaultRolloutMinReqs {
			t.Fatalf("stored rollout = %+v", got)
		}
		// A cancel moved it: the driver's stale write is refused.
		canceled := *got
		canceled.State, canceled.EndedAt = slipway.RolloutCanceled, &started
		if err := db.UpdateRollout(ctx, &canceled, slipway.RolloutRunning); err != nil {
			t.Fatal(err)
		}
		got.Step = 1
		if err := db.UpdateRollout(ctx, got, slipway.RolloutRunning); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("stale update: %v, want conflict", err)
		}
		// Once it ended, a new one may run.
		if err := db.CreateRollout(ctx, &second); err != nil {
			t.Fatal(err)
		}
		list, err := db.FindRollouts(ctx, d.Name, 10)
		if err != nil || len(list) != 2 || list[0].ID != "r2" || list[1].State != slipway.RolloutCanceled || list[1].EndedAt == nil {
			t.Fatalf("list = %+v, %v", list, err)
		}
		if _, err := db.FindRollout(ctx, "other", "r1"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("rollout under another deployment: %v", err)
		}
		if err := db.DeleteDeployment(ctx, d.Name); err != nil {
			t.Fatal(err)
		}
		if list, _ := db.FindRollouts(ctx, d.Name, 10); len(list) != 0 {
			t.Fatalf("rollouts outlived their deployment: %v", list)
		}
	})
}

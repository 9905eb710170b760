package sqlstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

func TestDeploymentStateChangesAreCompareAndSet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "churn")
		d := &slipway.Deployment{Name: "churn-api", State: slipway.DeploymentCreating, Model: v.Model, Version: v.Version,
			Replicas: 1, TimeoutMS: 1000, MaxQueue: 10}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name     string
			from, to slipway.DeploymentState
			code     string // "" = success
		}{
			{"start", slipway.DeploymentCreating, slipway.DeploymentActive, ""},
			{"from a state it left", slipway.DeploymentCreating, slipway.DeploymentFailed, slipway.ECONFLICT},
			{"crash loop", slipway.DeploymentActive, slipway.DeploymentNeedsAttention, ""},
		}
		for _, st := range steps {
			err := db.SetDeploymentState(ctx, "churn-api", st.from, st.to, st.name)
			if (st.code == "" && err != nil) || (st.code != "" && slipway.ErrorCode(err) != st.code) {
				t.Errorf("%s: err = %v, want %q", st.name, err, st.code)
			}
		}
		got, err := db.FindDeployment(ctx, "churn-api")
		if err != nil || got.State != slipway.DeploymentNeedsAttention || got.Reason != "crash loop" {
			t.Errorf("deployment = %+v, %v", got, err)
		}
		err = db.SetDeploymentState(ctx, "nope", slipway.DeploymentActive, slipway.DeploymentInactive, "")
		if slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("unknown deployment: %v, want not found", err)
		}
	})
}

func TestDeploymentAutoscalingAndLoadRoundTrip(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "churn")
		policy := &slipway.Autoscaling{MinReplicas: 0, MaxReplicas: 4, TargetInFlight: 2.5, ScaleDownAfterS: 30}
		d := &slipway.Deployment{Name: "elastic", State: slipway.DeploymentCreating, Model: v.Model, Version: v.Version,
			Replicas: 0, TimeoutMS: 1000, MaxQueue: 10, Autoscaling: policy, Load: slipway.LoadLazy, Isolation: slipway.IsolationInProcess}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindDeployment(ctx, "elastic")
		if err != nil || got.Autoscaling == nil || *got.Autoscaling != *policy || got.Load != slipway.LoadLazy || got.Isolation != slipway.IsolationInProcess {
			t.Fatalf("stored = %+v (autoscaling %+v), %v", got, got.Autoscaling, err)
		}
		got.Autoscaling, got.Load, got.Isolation = nil, slipway.LoadEager, slipway.IsolationProcess
		if err := db.UpdateDeployment(ctx, got); err != nil {
			t.Fatal(err)
		}
		got, err = db.FindDeployment(ctx, "elastic")
		if err != nil || got.Autoscaling != nil || got.Load != slipway.LoadEager || got.Isolation != slipway.IsolationProcess {
			t.Fatalf("after removing the policy = %+v, %v", got, err)
		}
	})
}

// Two servers read a deployment and both write a change: the second write, based on a revision that moved on,
// is refused instead of overwriting the first (no lost update); a state change moves the revision too.
func TestDeploymentUpdatesAreCompareAndSet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "churn")
		d := &slipway.Deployment{Name: "churn-api", State: slipway.DeploymentActive, Model: v.Model, Version: v.Version,
			Replicas: 1, TimeoutMS: 1000, MaxQueue: 10}
		if err := db.CreateDeployment(ctx, d); err != nil || d.Revision != 1 {
			t.Fatalf("create: revision %d, %v", d.Revision, err)
		}
		a, _ := db.FindDeployment(ctx, "churn-api")
		b, _ := db.FindDeployment(ctx, "churn-api")
		a.MaxQueue = 20
		if err := db.UpdateDeployment(ctx, a); err != nil || a.Revision != 2 {
			t.Fatalf("first writer: revision %d, %v", a.Revision, err)
		}
		b.TimeoutMS = 5000
		err := db.UpdateDeployment(ctx, b)
		if slipway.ErrorCode(err) != slipway.ECONFLICT || !errors.Is(err, slipway.ErrStaleDeployment) ||
			!strings.Contains(slipway.ErrorMessage(err), "changed by another request meanwhile (revision 2, this change was based on revision 1)") {
			t.Fatalf("stale writer: %v", err)
		}
		if got, _ := db.FindDeployment(ctx, "churn-api"); got.MaxQueue != 20 || got.TimeoutMS != 1000 || got.Revision != 2 {
			t.Fatalf("after the refused write: %+v", got)
		}
		if err := db.SetDeploymentState(ctx, "churn-api", slipway.DeploymentActive, slipway.DeploymentUpdating, ""); err != nil {
			t.Fatal(err)
		}
		a.Reason = "based on the revision before the state change"
		if err := db.UpdateDeployment(ctx, a); !errors.Is(err, slipway.ErrStaleDeployment) {
			t.Fatalf("a write based on the revision before a state change: %v", err)
		}
		gone := &slipway.Deployment{Name: "nope", Revision: 1}
		if err := db.UpdateDeployment(ctx, gone); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("unknown deployment: %v", err)
		}
	})
}

func TestDeploymentResourcesRoundTrip(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "churn")
		res := &slipway.Resources{CPU: 0.5, MemoryMB: 512}
		d := &slipway.Deployment{Name: "sized", State: slipway.DeploymentCreating, Model: v.Model, Version: v.Version,
			Replicas: 1, TimeoutMS: 1000, MaxQueue: 10, Resources: res}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindDeployment(ctx, "sized")
		if err != nil || got.Resources == nil || *got.Resources != *res {
			t.Fatalf("stored = %+v (resources %+v), %v", got, got.Resources, err)
		}
		got.Resources = &slipway.Resources{MemoryMB: 2048}
		if err := db.UpdateDeployment(ctx, got); err != nil {
			t.Fatal(err)
		}
		if got, err = db.FindDeployment(ctx, "sized"); err != nil || got.Resources == nil || *got.Resources != (slipway.Resources{MemoryMB: 2048}) {
			t.Fatalf("after the update = %+v, %v", got.Resources, err)
		}
		got.Resources = nil
		if err := db.UpdateDeployment(ctx, got); err != nil {
			t.Fatal(err)
		}
		if got, err = db.FindDeployment(ctx, "sized"); err != nil || got.Resources != nil {
			t.Fatalf("after removing them = %+v, %v", got.Resources, err)
		}
	})
}

package sqlstore

import (
	"context"
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

package sqlstore

import (
	"bytes"
	"context"
	"testing"

	"github.com/slipway-ml/slipway"
)

func TestReplicaSecretIsCreatedOnceAndGoesWithItsDeployment(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "remote")
		d := &slipway.Deployment{Name: "remote-api", State: slipway.DeploymentCreating, Model: v.Model, Version: v.Version,
			Replicas: 1, TimeoutMS: 1000, MaxQueue: 10, Engine: slipway.EngineExternal}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		if got, err := db.FindDeployment(ctx, "remote-api"); err != nil || got.Engine != slipway.EngineExternal {
			t.Fatalf("engine not stored: %+v, %v", got, err)
		}
		first, err := db.ReplicaSecret(ctx, "remote-api")
		if err != nil || len(first) != 32 {
			t.Fatalf("secret = %x, %v", first, err)
		}
		again, err := db.ReplicaSecret(ctx, "remote-api")
		if err != nil || !bytes.Equal(first, again) {
			t.Fatalf("second read gave another secret: %x vs %x (%v)", again, first, err)
		}
		if _, err := db.ReplicaSecret(ctx, "nope"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("secret of an unknown deployment: %v, want not found", err)
		}
		if err := db.DeleteDeployment(ctx, "remote-api"); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		fresh, err := db.ReplicaSecret(ctx, "remote-api")
		if err != nil || bytes.Equal(fresh, first) {
			t.Errorf("a recreated deployment kept its old secret (%v)", err)
		}
	})
}

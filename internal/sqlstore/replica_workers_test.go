package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestReplicaWorkersAreSharedAndExpire(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v := readyVersion(t, db, "pods")
		d := &slipway.Deployment{Name: "pods-api", State: slipway.DeploymentActive, Model: v.Model, Version: v.Version,
			Replicas: 2, TimeoutMS: 1000, MaxQueue: 10}
		if err := db.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		a := slipway.ReplicaAnnouncement{ID: "w1", Address: "10.0.0.1:7070", Version: v.Version, Runtime: "onnx", TLS: true, Pod: "pod-1"}
		if err := db.RecordReplicaWorker(ctx, "pods-api", a, time.Minute); err != nil {
			t.Fatal(err)
		}
		b := slipway.ReplicaAnnouncement{ID: "w2", Address: "10.0.0.2:7070", Version: v.Version, Runtime: "onnx"}
		if err := db.RecordReplicaWorker(ctx, "pods-api", b, time.Minute); err != nil {
			t.Fatal(err)
		}
		// A heartbeat refreshes the row (a moved address is taken).
		a.Address = "10.0.0.9:7070"
		if err := db.RecordReplicaWorker(ctx, "pods-api", a, time.Minute); err != nil {
			t.Fatal(err)
		}
		ws, err := db.ReplicaWorkers(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 2 || ws[0].ReplicaAnnouncement != a || ws[1].ReplicaAnnouncement != b || ws[0].Deployment != "pods-api" {
			t.Fatalf("workers = %+v, want %+v and %+v", ws, a, b)
		}
		if ws[0].Age < 0 || ws[0].Age > time.Minute {
			t.Errorf("age %v", ws[0].Age)
		}
		// A worker of a deployment that does not exist is refused.
		if err := db.RecordReplicaWorker(ctx, "nope", a, time.Minute); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("worker of an unknown deployment: %v, want not found", err)
		}
		// Silent workers drop out of the list at once, and out of the table at the next heartbeat of any worker.
		time.Sleep(50 * time.Millisecond)
		if ws, err := db.ReplicaWorkers(ctx, 10*time.Millisecond); err != nil || len(ws) != 0 {
			t.Fatalf("workers silent for 50 ms listed within 10 ms: %+v, %v", ws, err)
		}
		if err := db.RecordReplicaWorker(ctx, "pods-api", b, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if ws, err := db.ReplicaWorkers(ctx, time.Hour); err != nil || len(ws) != 1 || ws[0].ID != "w2" {
			t.Fatalf("after the silent one was forgotten: %+v, %v", ws, err)
		}
		// Withdraw deletes the row; a second withdraw finds nothing.
		if ok, err := db.DeleteReplicaWorker(ctx, "pods-api", "w2"); err != nil || !ok {
			t.Fatalf("delete: %v %v", ok, err)
		}
		if ok, err := db.DeleteReplicaWorker(ctx, "pods-api", "w2"); err != nil || ok {
			t.Fatalf("second delete: %v %v", ok, err)
		}
		// Deleting the deployment deletes its workers.
		if err := db.RecordReplicaWorker(ctx, "pods-api", a, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteDeployment(ctx, "pods-api"); err != nil {
			t.Fatal(err)
		}
		if ws, err := db.ReplicaWorkers(ctx, time.Hour); err != nil || len(ws) != 0 {
			t.Fatalf("workers of a deleted deployment: %+v, %v", ws, err)
		}
	})
}

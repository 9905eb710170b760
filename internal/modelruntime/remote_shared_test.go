package modelruntime

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/sqlstore"
)

// sharedRegistry is a real database holding the deployment churn-api (the workers' rows reference it).
func sharedRegistry(t *testing.T) *sqlstore.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var v *slipway.ModelVersion
	for i := range 2 { // the fake worker serves version 2
		v = &slipway.ModelVersion{Model: "churn", VersionMetadata: slipway.VersionMetadata{Runtime: "python"}}
		if err := db.CreateVersion(ctx, v); err != nil {
			t.Fatal(err)
		}
		v.State, v.Digest, v.Files = slipway.VersionReady, fmt.Sprint("d", i), []slipway.File{{Path: "score.py", Size: 3, SHA256: "abc"}}
		if err := db.FinishVersion(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	d := &slipway.Deployment{Name: "churn-api", State: slipway.DeploymentActive, Model: "churn", Version: v.Version,
		Replicas: 1, TimeoutMS: 1000, MaxQueue: 10}
	if err := db.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	return db
}

func sharedEngine(t *testing.T, secret []byte, reg slipway.ReplicaWorkerStore) *RemoteEngine {
	e := NewRemoteEngine(RemoteConfig{
		Secret:   func(context.Context, string) ([]byte, error) { return secret, nil },
		Registry: reg, WaitTimeout: 20 * time.Second, HeartbeatInterval: 200 * time.Millisecond,
	})
	t.Cleanup(e.Close)
	return e
}

// Two servers on one database: a worker announces itself to one of them, and both hold a session to it.
func TestRemoteEngineSharesWorkersThroughTheRegistry(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	db := sharedRegistry(t)
	addr, _ := fakeWorker(t, secret, nil)
	a, b := sharedEngine(t, secret, db), sharedEngine(t, secret, db)
	ctx := context.Background()
	ann := slipway.ReplicaAnnouncement{ID: "w1", Address: addr, Version: 2}
	spec := ProcessSpec{Runtime: slipway.RuntimePython, Deployment: "churn-api", Version: 2}
	// The worker's heartbeats reach server a only (the one URL in front of them picked it).
	stop := make(chan struct{})
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		for {
			if _, err := a.Heard(ctx, "churn-api", ann); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-beats }()
	for _, e := range []*RemoteEngine{a, b} {
		rep, err := startReplica(ctx, e, spec, 20*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rep.Stop(time.Second)
		if out, err := rep.PredictJSON(ctx, []byte(`{"x": 1}`)); err != nil || string(out) != `{"x": 1}` {
			t.Fatalf("predict = %s, %v", out, err)
		}
	}
	for name, e := range map[string]*RemoteEngine{"a": a, "b": b} {
		if ws := e.Workers("churn-api"); len(ws) != 1 || ws[0].State != "CONNECTED" {
			t.Errorf("server %s: workers = %+v, want w1 CONNECTED (its own session)", name, ws)
		}
		if d := e.Demand("churn-api"); d[2] != 1 {
			t.Errorf("server %s: demand %v, want its one session", name, d)
		}
	}
	// A withdrawal on server a reaches server b through the database: b never takes it for a new slot.
	if ok, err := a.Withdraw(ctx, "churn-api", "w1"); err != nil || !ok {
		t.Fatalf("withdraw: %v %v", ok, err)
	}
	if ws, err := db.ReplicaWorkers(ctx, time.Hour); err != nil || len(ws) != 0 {
		t.Fatalf("rows after the withdrawal: %+v, %v", ws, err)
	}
}

// A worker that only ever announced itself to another server, which then stopped hearing from it, is
// forgotten here too once its heartbeats are older than the TTL.
func TestRemoteEngineForgetsRegistryWorkersThatStopBeating(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	db := sharedRegistry(t)
	addr, _ := fakeWorker(t, secret, nil)
	a, b := sharedEngine(t, secret, db), sharedEngine(t, secret, db)
	if _, err := a.Heard(context.Background(), "churn-api", slipway.ReplicaAnnouncement{ID: "w1", Address: addr, Version: 2}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	seen := false
	for time.Now().Before(deadline) {
		n := len(b.Workers("churn-api"))
		if n == 1 {
			seen = true
		}
		if seen && n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server b: seen %v, then not forgotten: %+v", seen, b.Workers("churn-api"))
}

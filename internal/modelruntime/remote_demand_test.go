package modelruntime

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// The demand is what the kubernetes engine sizes a deployment's pods by: it must count each replica slot
// once, through its start, its session and a crash, and fall only when a slot is gone on purpose.
func TestRemoteEngineDemandCountsEachSlotOnce(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	addr, conns := fakeWorker(t, secret, nil)
	e := newTestEngine(t, secret, nil)
	want := func(what string, exp map[int]int) {
		t.Helper()
		if got := e.Demand("churn-api"); !maps.Equal(got, exp) {
			t.Fatalf("%s: demand %v, want %v", what, got, exp)
		}
	}
	want("no replica", map[int]int{})

	// A Start waiting for a worker counts.
	started := make(chan *Replica, 1)
	go func() {
		rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
		if err != nil {
			t.Error(err)
		}
		started <- rep
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.Demand("churn-api")[2] != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	want("a Start waiting", map[int]int{2: 1})

	// Its session replaces it.
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w1", Address: addr, Version: 2})
	rep := <-started
	want("a session", map[int]int{2: 1})

	// A crash keeps the slot's place (its pool restarts it)...
	(<-conns).Close()
	if _, err := rep.PredictJSON(context.Background(), []byte(`{}`)); err == nil { // the call finds it dead
		t.Fatal("a call on a dropped connection succeeded")
	}
	<-rep.Done()
	want("a crashed session", map[int]int{2: 1})
	// ... and the restart takes it over: still one.
	ctx, cancel := context.WithCancel(context.Background())
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		_, _ = startReplica(ctx, e, remoteSpec, time.Minute, nil) // no worker: it waits until canceled
	}()
	time.Sleep(100 * time.Millisecond)
	want("the crashed slot restarting", map[int]int{2: 1})
	// The pool is closed meanwhile: the restart gives up, nothing is wanted any more.
	cancel()
	<-restarted
	want("the restart canceled", map[int]int{})

	// A crash of a deployment that is then deactivated: Release drops the crash's credit at once.
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w2", Address: addr, Version: 2})
	rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep.Kill()
	<-rep.Done()
	want("killed", map[int]int{2: 1})
	e.Release("churn-api")
	want("released", map[int]int{})
}

func TestRemoteEngineDemandFallsOnAStoppedSession(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	addr, _ := fakeWorker(t, secret, nil)
	var mu sync.Mutex
	changes := 0
	e := NewRemoteEngine(RemoteConfig{Secret: func(context.Context, string) ([]byte, error) { return secret, nil },
		WaitTimeout: 2 * time.Second, HeartbeatInterval: time.Hour,
		DemandChanged: func(d string) {
			if d == "churn-api" {
				mu.Lock()
				changes++
				mu.Unlock()
			}
		}})
	t.Cleanup(e.Close)
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w1", Address: addr, Version: 2})
	rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Demand("churn-api"); got[2] != 1 {
		t.Fatalf("demand %v", got)
	}
	rep.Stop(time.Second) // the pool retires the slot: no credit
	if got := e.Demand("churn-api"); len(got) != 0 {
		t.Fatalf("demand after a clean stop %v, want none", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if changes < 2 {
		t.Errorf("DemandChanged called %d times, want at least 2 (start, stop)", changes)
	}
}

// A worker whose pod the cluster says is not ready is not dialled; DropPod ends the session of a pod that
// went away.
func TestRemoteEnginePodGate(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	addr, _ := fakeWorker(t, secret, nil)
	var mu sync.Mutex
	ready := map[string]bool{}
	e := NewRemoteEngine(RemoteConfig{Secret: func(context.Context, string) ([]byte, error) { return secret, nil },
		WaitTimeout: 5 * time.Second, HeartbeatInterval: time.Hour,
		PodReady: func(pod string) bool { mu.Lock(); defer mu.Unlock(); return ready[pod] }})
	t.Cleanup(e.Close)
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w1", Address: addr, Version: 2, Pod: "p1"})
	started := make(chan *Replica, 1)
	go func() {
		rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
		if err != nil {
			t.Error(err)
		}
		started <- rep
	}()
	select {
	case <-started:
		t.Fatal("a worker of a pod that is not ready was connected")
	case <-time.After(300 * time.Millisecond):
	}
	mu.Lock()
	ready["p1"] = true
	mu.Unlock()
	e.Wake()
	var rep *Replica
	select {
	case rep = <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the worker was not connected once its pod was ready")
	}
	if ws := e.Workers("churn-api"); len(ws) != 1 || ws[0].Pod != "p1" {
		t.Fatalf("workers %+v", ws)
	}
	e.DropPod("p1")
	select {
	case <-rep.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session of a dropped pod's worker did not end")
	}
	if ws := e.Workers("churn-api"); len(ws) != 0 {
		t.Errorf("workers after DropPod %+v", ws)
	}
}

// A Start waiting for a worker of a version whose pods cannot serve (the cluster's watch says why) fails at
// once with that reason, keeps its slot's place in the demand, and an old failure does not fail a later Start.
func TestRemoteEnginePodFailingEndsTheWait(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	e := NewRemoteEngine(RemoteConfig{Secret: func(context.Context, string) ([]byte, error) { return secret, nil },
		WaitTimeout: time.Hour, HeartbeatInterval: time.Hour})
	t.Cleanup(e.Close)
	failed := make(chan error, 1)
	go func() {
		_, err := startReplica(context.Background(), e, remoteSpec, time.Hour, nil)
		failed <- err
	}()
	waitDemand := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); e.Demand("churn-api")[2] != want; {
			if time.Now().After(deadline) {
				t.Fatalf("demand %v, want %d of version 2", e.Demand("churn-api"), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitDemand(1)
	e.PodFailing("churn-api", 1, "another version's problem", time.Now())
	e.PodFailing("churn-api", 2, "image registry.invalid/x:1 of replica pod p could not be pulled", time.Now())
	select {
	case err := <-failed:
		if err == nil || !strings.Contains(err.Error(), "registry.invalid/x:1") || !strings.Contains(err.Error(), "version 2") {
			t.Fatalf("Start failed with %v, want the pods' problem", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Start kept waiting after the pods of its version failed")
	}
	if got := e.Demand("churn-api"); got[2] != 1 {
		t.Errorf("demand after the failed Start %v: want its slot kept (1 of version 2)", got)
	}

	// A failure from long before a Start began (an OOM kill an hour ago) does not fail it.
	e.Release("churn-api")
	e.PodFailing("churn-api", 2, "OOM-killed long ago", time.Now().Add(-time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := startReplica(ctx, e, remoteSpec, time.Hour, nil); err == nil || strings.Contains(err.Error(), "OOM") {
		t.Errorf("a Start after an old failure: %v, want it to wait (until its context ends)", err)
	}
}

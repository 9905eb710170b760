package modelruntime

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/procsched"
)

// The model reports the policy of its main thread, of a thread it started while loading (before the server
// applied the policy) and of one it starts per call (which inherits it). Linux: SCHED_OTHER 0, SCHED_BATCH 3.
const schedScore = `
import os, threading
def _policy_of_new_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(os.sched_getscheduler(0)))
    t.start(); t.join()
    return out[0]
_loaded = threading.Event()
_asked = threading.Event()
_answer = []
def _loader_thread():
    _loaded.set()
    _asked.wait()
    _answer.append(os.sched_getscheduler(0))
def load_model():
    threading.Thread(target=_loader_thread, daemon=True).start()
    _loaded.wait()
def predict(data, model=None):
    _asked.set()
    while not _answer:
        pass
    return {"main": os.sched_getscheduler(0), "loaded": _answer[0], "new": _policy_of_new_thread()}
`

// A replica starts in the server's class (it is the server's child) and is put in its own once loaded. The
// server's class is the test process's here, set for the subtest's duration.
func TestReplicaScheduling(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "score.py"), []byte(schedScore), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		server     procsched.Class
		scheduling Scheduling
		want       int
	}{
		{procsched.Normal, SchedulingBatch, 3},
		{procsched.Normal, SchedulingNormal, 0},
		{procsched.Normal, "", 0},
		{procsched.Batch, SchedulingNormal, 0}, // the default: the server under SCHED_BATCH, its replicas not
		{procsched.Batch, SchedulingBatch, 3},
		{procsched.Batch, "", 3}, // left as inherited
	}
	for _, tc := range tests {
		t.Run(string(tc.server)+"/"+string(tc.scheduling), func(t *testing.T) {
			if err := procsched.Set(os.Getpid(), tc.server); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := procsched.Set(os.Getpid(), procsched.Normal); err != nil {
					t.Error(err)
				}
			})
			rt, err := New(Config{ScratchDir: t.TempDir(), Scheduling: ReplicaScheduling{Python: tc.scheduling}})
			if err != nil {
				t.Fatal(err)
			}
			spec, err := rt.ReplicaSpec("python", dir, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, err := rt.Start(context.Background(), spec, time.Minute, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop(time.Second)
			out, err := r.PredictJSON(context.Background(), []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]int
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			for _, thread := range []string{"main", "loaded", "new"} {
				if got[thread] != tc.want {
					t.Errorf("%s thread policy %d, want %d (all: %s)", thread, got[thread], tc.want, out)
				}
			}
		})
	}
}

func TestReplicaSchedulingFor(t *testing.T) {
	tests := []struct {
		flag         string
		serverBatch  bool
		python, onnx Scheduling
	}{
		{"auto", true, SchedulingNormal, SchedulingBatch}, // the default
		{"auto", false, SchedulingBatch, SchedulingBatch},
		{"batch", true, SchedulingBatch, SchedulingBatch},
		{"batch", false, SchedulingBatch, SchedulingBatch},
		{"normal", true, SchedulingNormal, SchedulingNormal},
		{"normal", false, "", ""}, // already in the class the server was started in
	}
	for _, tc := range tests {
		got := ReplicaSchedulingFor(tc.flag, tc.serverBatch)
		if got.For(slipway.RuntimePython) != tc.python || got.For(slipway.RuntimeONNX) != tc.onnx {
			t.Errorf("ReplicaSchedulingFor(%q, %v) = %+v, want python %q onnx %q", tc.flag, tc.serverBatch, got, tc.python, tc.onnx)
		}
	}
}

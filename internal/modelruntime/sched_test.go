package modelruntime

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
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

func TestReplicaScheduling(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "score.py"), []byte(schedScore), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		scheduling Scheduling
		want       int
	}{
		{SchedulingBatch, 3},
		{SchedulingNormal, 0},
		{"", 0},
	}
	for _, tc := range tests {
		t.Run(string(tc.scheduling), func(t *testing.T) {
			rt, err := New(Config{ScratchDir: t.TempDir(), Scheduling: tc.scheduling})
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

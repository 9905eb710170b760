package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// TestPythonReplicaPipelined: a 1-replica Python deployment (unbatched) takes several calls in flight at once
// (their frames pipelined on the replica's stream, docs/worker-protocol.md), and each concurrent request gets
// its own answer: every row's probability is what scikit-learn itself computes for that row. Killing the model
// process while it has calls in flight loses no request: they are retried, or moved to its replacement. Both as a
// local replica process and as a network worker (`slipway worker serve`), whose one harness process takes the
// calls of the server's session pipelined too.
func TestPythonReplicaPipelined(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"local", "worker"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			pipelinedAcrossAKill(t, engine)
		})
	}
}

func pipelinedAcrossAKill(t *testing.T, engine string) {
	s := startServer(t, "")
	dir := t.TempDir()
	if out, err := exec.Command("/usr/bin/python3", examplePath("..", "bench", "pywide", "make_model.py"), dir).CombinedOutput(); err != nil {
		t.Fatalf("make_model.py: %v\n%s", err, out)
	}
	if out, errOut, code := s.cli("models", "push", dir, "--model", "wide", "--metadata", dir+"/metadata.json"); code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
	modelPID := func(d *slipway.Deployment) int { return d.ReplicaStatus[0].PID } // the local replica process
	if engine == "local" {
		deploy(t, s, "wide", "--model", "wide:1", "--replicas", "1")
	} else {
		deploy(t, s, "wide", "--model", "wide:1", "--replicas", "1", "--engine", "external", "--no-wait")
		w := startWorker(t, replicaSpec(t, s, "wide"), t.TempDir())
		w.waitReady()
		waitActive(t, s, "wide")
		modelPID = func(*slipway.Deployment) int { return harnessOf(w.cmd.Process.Pid) } // the worker's harness child
	}

	const nRows = 48
	cols := make([]string, 30)
	for j := range cols {
		cols[j] = fmt.Sprintf("f%02d", j)
	}
	rows := make([][]float64, nRows)
	for i := range rows {
		rows[i] = make([]float64, len(cols))
		for j := range cols {
			rows[i][j] = math.Round(math.Sin(float64(i*37+j*11))*1e4*float64(j%7+1)) / 1e3
		}
	}
	want := sklearnProbabilities(t, dir, rows)

	// A NaN (null in a float column) still reaches scikit-learn's own check, which refuses it: a 400
	// problem+json with scikit-learn's message, and the replica keeps serving.
	withNaN := append([]any{nil}, make([]any, len(cols)-1)...)
	for j := 1; j < len(cols); j++ {
		withNaN[j] = rows[0][j]
	}
	resp, body := s.do(t, "POST", "/deployments/wide/invocations", s.Token,
		bytes.NewReader(mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": [][]any{withNaN}}})), "application/json")
	if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") ||
		!strings.Contains(string(body), "the model rejected the input: ValueError: Input X contains NaN") {
		t.Fatalf("a row with NaN: HTTP %d %s %s, want 400 problem+json with scikit-learn's own message", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	c := s.Client()
	ctx := context.Background()
	pid := func() (int, int) {
		d, err := c.GetDeployment(ctx, "wide")
		if err != nil || len(d.ReplicaStatus) != 1 {
			t.Fatalf("deployment %+v, %v", d, err)
		}
		return modelPID(d), d.ReplicaStatus[0].InFlight
	}

	// Concurrent requests, each its own row; the checker also records the most calls seen in flight.
	var mu sync.Mutex
	answered, maxInFlight := 0, 0
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 60 * time.Second}
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += 12 {
				select {
				case <-stop:
					return
				default:
				}
				row := i % nRows
				body := mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": [][]float64{rows[row]}}})
				req, _ := http.NewRequest("POST", s.URL+"/deployments/wide/invocations", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.Token)
				req.Header.Set("Content-Type", "application/json")
				got, err := answerOf(client, req)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("row %d: %v", row, err))
				case len(got) != 1 || math.Abs(got[0]-want[row]) > 1e-12:
					failures = append(failures, fmt.Sprintf("row %d: got %v, want [%v] (another request's answer?)", row, got, want[row]))
				default:
					answered++
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return answered
	}
	// The replica takes more than one call at a time (its in-flight count passes 1), then is killed while it
	// does.
	victim := 0
	waitFor(t, "two calls in flight on the replica", 60*time.Second, func() bool {
		p, n := pid()
		maxInFlight = max(maxInFlight, n)
		victim = p
		return victim > 0 && n >= 2 && count() >= 200 // never kill(0): that is the test's own process group
	})
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := count()
	waitFor(t, "a replacement replica answering", 120*time.Second, func() bool {
		p, _ := pid()
		return p != 0 && p != victim && count() >= before+200
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed or got another's answer (of %d answered); first: %s", len(failures), answered, strings.Join(failures[:min(5, len(failures))], "; "))
	}
	t.Logf("%d concurrent requests answered correctly, up to %d calls in flight on the one replica, across a kill", answered, maxInFlight)
}

// harnessOf is the pid of the worker's Python harness (its only child), 0 while there is none. A child is listed
// under the thread that started it, which may be any of the worker's.
func harnessOf(worker int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", worker))
	var kids []string
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		kids = append(kids, strings.Fields(string(b))...)
	}
	if len(kids) != 1 {
		return 0
	}
	pid, _ := strconv.Atoi(kids[0])
	return pid
}

// answerOf posts req and reads {"predictions": [...]}; a status other than 200 is an error.
func answerOf(client *http.Client, req *http.Request) ([]float64, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("HTTP %d %s", resp.StatusCode, b.String())
	}
	var out struct {
		Predictions []float64 `json:"predictions"`
	}
	if err := json.Unmarshal(b.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("%v: %s", err, b.String())
	}
	return out.Predictions, nil
}

// sklearnProbabilities is the bench model's own answer for each row, one row at a time, in a Python process
// of its own.
func sklearnProbabilities(t *testing.T, modelDir string, rows [][]float64) []float64 {
	t.Helper()
	script := `import json, pickle, sys
import numpy as np
rows = json.load(sys.stdin)
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
print(json.dumps([float(model.predict_proba(np.asarray([r]))[0, 1]) for r in rows]))`
	cmd := exec.Command("/usr/bin/python3", "-c", script, modelDir+"/model.pkl")
	cmd.Stdin = bytes.NewReader(mustJSON(rows))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sklearn reference: %v", err)
	}
	var probs []float64
	if err := json.Unmarshal(out, &probs); err != nil || len(probs) != len(rows) {
		t.Fatalf("sklearn reference: %v: %s", err, out)
	}
	return probs
}

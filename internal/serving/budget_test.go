package serving

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx/onnxtest"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// tinyModel is one model written by bench/manymodels/tiny_models.py, with an input row and numpy's output.
type tinyModel struct {
	Name   string      `json:"name"`
	Input  [][]float32 `json:"input"`
	Output [][]float32 `json:"output"`
	dir    string
}

// tinyModels writes n distinct ONNX models (skipping when python3 lacks onnx or numpy).
func tinyModels(t testing.TB, n int) []tinyModel {
	t.Helper()
	onnxtest.RunPython(t, "pass") // skips without onnx and numpy
	dir := t.TempDir()
	script, err := filepath.Abs(filepath.Join("..", "..", "bench", "manymodels", "tiny_models.py"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(onnxtest.PythonPath, script, dir, strconv.Itoa(n)).CombinedOutput(); err != nil {
		t.Fatalf("tiny_models.py: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var models []tinyModel
	if err := json.Unmarshal(raw, &models); err != nil {
		t.Fatal(err)
	}
	for i := range models {
		models[i].dir = filepath.Join(dir, models[i].Name)
	}
	return models
}

func inProcessStarter(rt *modelruntime.Runtimes, dir string) Starter {
	return func(ctx context.Context) (*modelruntime.Replica, error) {
		spec, err := rt.ReplicaSpec(slipway.RuntimeONNX, dir, []slipway.File{{Path: "model.onnx"}}, nil)
		if err != nil {
			return nil, err
		}
		spec.Isolation = slipway.IsolationInProcess
		return rt.Start(ctx, spec, time.Minute, nil)
	}
}

func fp32(rows [][]float32) workerproto.Tensor {
	t := workerproto.Tensor{Name: "x", Datatype: "FP32", Shape: []int64{int64(len(rows)), int64(len(rows[0]))}}
	for _, r := range rows {
		for _, f := range r {
			t.Data = binary.LittleEndian.AppendUint32(t.Data, math.Float32bits(f))
		}
	}
	return t
}

func checkTiny(t *testing.T, p *Pool, m tinyModel) {
	t.Helper()
	res, err := p.PredictTensors(context.Background(), []workerproto.Tensor{fp32(m.Input)})
	if err != nil {
		t.Fatalf("%s: %v", m.Name, err)
	}
	y := res.Outputs[0]
	for j, want := range m.Output[0] {
		got := math.Float32frombits(binary.LittleEndian.Uint32(y.Data[4*j:]))
		if math.Abs(float64(got-want)) > 1e-5*math.Max(1, math.Abs(float64(want))) {
			t.Fatalf("%s output %d: %g, numpy says %g", m.Name, j, got, want)
		}
	}
}

// syncLog collects a budget's log lines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Under a budget that holds three in-process replicas, requests to six lazy pools in turn keep the three most
// recently used loaded: each load unloads the least recently used idle replica, the measured total never
// passes the budget, every pool answers with its own model, and the log names each unloaded replica.
func TestMemoryBudgetUnloadsTheLeastRecentlyUsed(t *testing.T) {
	onnxtest.Init(t)
	models := tinyModels(t, 6)
	rt, err := modelruntime.New(modelruntime.Config{ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// The size of one session, measured as the budget measures it (after a first load, which also pays for
	// ONNX Runtime's one-time set-up).
	var size int64
	for range 2 {
		rep, err := inProcessStarter(rt, models[0].dir)(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		size = rep.MemoryBytes()
		rep.Stop(time.Second)
	}
	if size <= 0 {
		t.Fatalf("an in-process session measured %d bytes", size)
	}
	var logs syncLog
	budget := NewMemoryBudget(3*size+size/2, slog.New(slog.NewTextHandler(&logs, nil)))
	pools := make([]*Pool, len(models))
	for i, m := range models {
		p := NewPool(m.Name, Options{MaxQueue: 10, Timeout: 30 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		p.SetBudget(budget, size)
		if err := p.Rollout(context.Background(), 1, 0, inProcessStarter(rt, m.dir)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pools[i] = p
	}
	loaded := func() (names []string) {
		for i, p := range pools {
			if n, _ := p.Size(); n > 0 {
				names = append(names, models[i].Name)
			}
		}
		return names
	}
	for i, m := range models {
		checkTiny(t, pools[i], m)
		if got := budget.Loaded(); got > budget.Limit() {
			t.Fatalf("after %s: %d bytes loaded, budget %d", m.Name, got, budget.Limit())
		}
	}
	// m000 comes back on its next request.
	checkTiny(t, pools[0], models[0])
	if got := budget.Loaded(); got > budget.Limit() {
		t.Fatalf("after m000 again: %d bytes loaded, budget %d", got, budget.Limit())
	}
	// Sessions differ by some KB (the C heap of the moment), so how many fit varies a little; the order does
	// not: the replicas unloaded are the least recently used, m000 first (requested first, and idle since),
	// and each load unloads only what it must.
	unloaded := regexp.MustCompile(`unloaded an idle replica" deployment=(m\d+)`).FindAllStringSubmatch(logs.String(), -1)
	var names []string
	for _, u := range unloaded {
		names = append(names, u[1])
	}
	lru := []string{"m000", "m001", "m002", "m003", "m004"}
	if len(names) < 3 || !slices.Equal(names, lru[:min(len(names), len(lru))]) {
		t.Fatalf("unloaded %v: want the least recently used first, %v, at least 3 of them\n%s", names, lru, logs.String())
	}
	want := []string{"m000"}
	for _, m := range models[1:] {
		if !slices.Contains(names, m.Name) {
			want = append(want, m.Name)
		}
	}
	if got := loaded(); !slices.Equal(got, want) {
		t.Fatalf("loaded %v, want %v (every model but the unloaded ones)\n%s", got, want, logs.String())
	}
	if n, _ := budget.Unloads(); n != int64(len(names)) {
		t.Errorf("%d unloads counted, %d logged", n, len(names))
	}
}

// The default budget is half of what the machine (or the cgroup) offers, and says which.
func TestDefaultMemoryBudget(t *testing.T) {
	got, from, err := DefaultMemoryBudget()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			if _, err := fmt.Sscan(rest, &kb); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got <= 0 || got > kb<<10/2 || (from != "MemTotal" && from != "the cgroup's memory.max") {
		t.Fatalf("default budget %d from %q; MemTotal is %d bytes", got, from, kb<<10)
	}
	if from == "MemTotal" && got != kb<<10/2 {
		t.Fatalf("default budget %d, want half of MemTotal %d", got, kb<<10)
	}
}

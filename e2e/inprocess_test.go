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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// tinyModel is one model written by bench/manymodels/tiny_models.py: distinct weights, one input row and the
// output numpy computes for it.
type tinyModel struct {
	Name   string      `json:"name"`
	Input  [][]float32 `json:"input"`
	Output [][]float32 `json:"output"`
	file   string
}

// tinyModels writes n distinct ONNX models (hidden > 0: with a hidden×hidden layer of weights).
func tinyModels(t testing.TB, n, hidden int) []tinyModel {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(repoDir, "bench", "manymodels", "tiny_models.py")
	out, err := exec.Command("/usr/bin/python3", script, dir, strconv.Itoa(n), strconv.Itoa(hidden)).CombinedOutput()
	if err != nil {
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
		models[i].file = filepath.Join(dir, models[i].Name, "model.onnx")
	}
	return models
}

// pushONNX registers file as a version of model and checks the outcome.
func pushONNX(t testing.TB, c *client.Client, model, file string) *slipway.ModelVersion {
	t.Helper()
	body, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v, err := c.PushVersion(ctx, model, bytes.NewReader(body), "model.onnx", &slipway.VersionMetadata{Runtime: slipway.RuntimeONNX}, nil, int64(len(body)))
	if err != nil {
		t.Fatalf("push %s: %v", model, err)
	}
	return v
}

// createDeployment creates a deployment through the API and waits until it is ACTIVE.
func createDeployment(t testing.TB, s *server, spec slipway.DeploymentSpec) {
	t.Helper()
	if _, err := s.Client().CreateDeployment(context.Background(), spec); err != nil {
		t.Fatalf("create %s: %v", spec.Name, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, err := s.Client().GetDeployment(context.Background(), spec.Name)
		if err == nil && d.State == slipway.DeploymentActive {
			return
		}
		if err == nil && d.State == slipway.DeploymentFailed || time.Now().After(deadline) {
			t.Fatalf("deployment %s: %+v, %v", spec.Name, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

// inferTiny sends m's input row to deployment name (V2) and returns the raw answer and its output y.
func inferTiny(t testing.TB, s *server, name string, m tinyModel) ([]byte, []float32) {
	t.Helper()
	flat := append([]float32{}, m.Input[0]...)
	req := map[string]any{"inputs": []map[string]any{{"name": "x", "shape": []int{1, len(flat)}, "datatype": "FP32", "data": flat}}}
	resp, body := s.do(t, "POST", "/v2/models/"+name+"/infer", s.Token, bytes.NewReader(mustJSON(req)), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
	}
	var v2 struct {
		Outputs []struct {
			Name string    `json:"name"`
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &v2); err != nil || len(v2.Outputs) != 1 || len(v2.Outputs[0].Data) != 2 {
		t.Fatalf("%s: %s (%v)", name, body, err)
	}
	return body, v2.Outputs[0].Data
}

// checkNumpy compares y with numpy's float32 answer (MatMul sums may round differently in the last bits).
func checkNumpy(t testing.TB, name string, m tinyModel, y []float32) {
	t.Helper()
	for j, want := range m.Output[0] {
		if math.Abs(float64(y[j]-want)) > 1e-4*math.Max(1, math.Abs(float64(want))) {
			t.Fatalf("%s (model %s) output %d: %g, numpy says %g", name, m.Name, j, y[j], want)
		}
	}
}

// withoutModelName drops what names the deployment or the request from an answer (V2's model_name and id, a
// problem's instance and request_id), which differ by design.
func withoutModelName(t *testing.T, body []byte) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	for _, k := range []string{"model_name", "id", "instance", "request_id"} {
		delete(v, k)
	}
	return string(mustJSON(v))
}

// The same ONNX models answer the same, bit for bit, whether their replicas are processes or sessions inside
// the server: the example model through every protocol and under batching, and distinct small models. A
// Python model cannot be deployed in-process.
func TestInProcessONNXAnswersAsAProcess(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "onnx-proc", "--model", "churn-onnx:1")
	deploy(t, s, "onnx-inproc", "--model", "churn-onnx:1", "--isolation", "in-process", "--batch-size", "64")
	d, err := s.Client().GetDeployment(t.Context(), "onnx-inproc")
	if err != nil || d.Isolation != slipway.IsolationInProcess || len(d.ReplicaStatus) != 1 || d.ReplicaStatus[0].PID != 0 {
		t.Fatalf("in-process deployment: %+v, %v; want isolation in-process, one replica without a process", d, err)
	}
	if out, _, code := s.cli("deployments", "get", "onnx-inproc"); code != 0 || !strings.Contains(out, "in-process") {
		t.Errorf("deployments get does not show the isolation (exit %d):\n%s", code, out)
	}
	raw, err := os.ReadFile(examplePath("onnx-churn", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedONNX
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	flat := make([]float64, 0, 4*len(exp.Features))
	for _, r := range exp.Features {
		flat = append(flat, r...)
	}
	requests := []struct{ path, body string }{
		{"/deployments/%s/invocations", string(mustJSON(map[string]any{"inputs": exp.Features}))},
		{"/deployments/%s/predict", string(mustJSON(map[string]any{"inputs": map[string]any{"features": exp.Features}}))},
		{"/v2/models/%s/infer", string(mustJSON(map[string]any{"inputs": []map[string]any{{"name": "features", "shape": []int{len(exp.Features), 4}, "datatype": "FP32", "data": flat}}}))},
		{"/deployments/%s/invocations", `{"inputs": [[1, 2]]}`},              // refused before the model
		{"/deployments/%s/predict", `{"inputs": {"features": [[1, 2, 3]]}}`}, // the model's own error, worded the same
	}
	for _, r := range requests {
		var answers []string
		for _, name := range []string{"onnx-proc", "onnx-inproc"} {
			resp, body := s.do(t, "POST", fmt.Sprintf(r.path, name), s.Token, strings.NewReader(r.body), "application/json")
			answers = append(answers, fmt.Sprintf("%d %s", resp.StatusCode, withoutModelName(t, body)))
		}
		if answers[0] != answers[1] {
			t.Errorf("%s: process answered\n%s\nin-process answered\n%s", r.path, answers[0], answers[1])
		}
	}
	// Under batching: 32 concurrent one-row requests, each answered as the process answers that row alone.
	var wg sync.WaitGroup
	for i := range 32 {
		row := exp.Features[i%len(exp.Features)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := string(mustJSON(map[string]any{"inputs": [][]float64{row}}))
			var answers []string
			for _, name := range []string{"onnx-proc", "onnx-inproc"} {
				resp, out := s.do(t, "POST", "/deployments/"+name+"/invocations", s.Token, strings.NewReader(body), "application/json")
				answers = append(answers, fmt.Sprintf("%d %s", resp.StatusCode, out))
			}
			if answers[0] != answers[1] || !strings.HasPrefix(answers[0], "200 ") {
				t.Errorf("row %v: process %s, in-process (batched) %s", row, answers[0], answers[1])
			}
		}()
	}
	wg.Wait()

	// Distinct small models: the same bits both ways, and numpy's answer.
	for _, m := range tinyModels(t, 3, 0) {
		pushONNX(t, s.Client(), m.Name, m.file)
		createDeployment(t, s, slipway.DeploymentSpec{Name: m.Name + "-proc", Model: m.Name})
		createDeployment(t, s, slipway.DeploymentSpec{Name: m.Name + "-inproc", Model: m.Name, Isolation: ptr(slipway.IsolationInProcess)})
		procBody, y := inferTiny(t, s, m.Name+"-proc", m)
		inBody, _ := inferTiny(t, s, m.Name+"-inproc", m)
		if withoutModelName(t, procBody) != withoutModelName(t, inBody) {
			t.Errorf("%s: process %s, in-process %s", m.Name, procBody, inBody)
		}
		checkNumpy(t, m.Name, m, y)
	}

	// Only ONNX models run inside the server.
	resp, body := s.do(t, "POST", "/api/v1/deployments", s.Token, strings.NewReader(`{"name": "py-inproc", "model": "churn", "isolation": "in-process"}`), "application/json")
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") ||
		!strings.Contains(string(body), "ONNX models only") {
		t.Errorf("a Python model in-process: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = s.do(t, "POST", "/api/v1/deployments", s.Token, strings.NewReader(`{"name": "bad-iso", "model": "churn-onnx", "isolation": "thread"}`), "application/json")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `isolation must be \"process\" or \"in-process\"`) {
		t.Errorf("an unknown isolation: %d %s", resp.StatusCode, body)
	}
	// Switching isolation rolls the deployment out again, and it still answers the same.
	if _, err := s.Client().UpdateDeployment(t.Context(), "onnx-proc", slipway.DeploymentSpec{Isolation: ptr(slipway.IsolationInProcess)}); err != nil {
		t.Fatal(err)
	}
	waitDeploymentState(t, s, "onnx-proc", "in-process replicas", func(d *slipway.Deployment) bool {
		return d.State == slipway.DeploymentActive && d.Isolation == slipway.IsolationInProcess && len(d.ReplicaStatus) == 1 &&
			d.ReplicaStatus[0].State == "READY" && d.ReplicaStatus[0].PID == 0
	})
}

// hostileONNX are model files that must never be accepted: not a protobuf, all zeros, cut in half, and weights
// stored outside the model's folder (an absolute path and a parent path).
func hostileONNX(t *testing.T, good string) map[string][]byte {
	t.Helper()
	whole, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"garbage":   []byte("this is not a model, just some text\n"),
		"zeros":     make([]byte, 64),
		"truncated": whole[:len(whole)/2],
	}
	const external = `
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto as T
w = numpy_helper.from_array(np.array([1, 2, 3, 4], dtype=np.float32), "W")
w.ClearField("raw_data"); w.data_location = T.EXTERNAL
e = w.external_data.add(); e.key = "location"; e.value = sys.argv[2]
g = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "ext", [helper.make_tensor_value_info("x", T.FLOAT, ["n", 4])],
    [helper.make_tensor_value_info("y", T.FLOAT, ["n", 4])], initializer=[w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
open(sys.argv[1], "wb").write(m.SerializeToString())
`
	for name, location := range map[string]string{"external absolute": "/etc/passwd", "external parent": "../../../../etc/passwd"} {
		path := filepath.Join(t.TempDir(), "model.onnx")
		if out, err := exec.Command("/usr/bin/python3", "-c", external, path, location).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		if files[name], err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// With in-process deployments serving, hostile ONNX files are still refused at registration: the checks load
// them in a process of their own, so the server, and the in-process models it serves, never see them.
func TestHostileONNXRefusedWithInProcessDeployments(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	models := tinyModels(t, 1, 0)
	m := models[0]
	pushONNX(t, s.Client(), m.Name, m.file)
	createDeployment(t, s, slipway.DeploymentSpec{Name: "served", Model: m.Name, Isolation: ptr(slipway.IsolationInProcess)})
	_, y := inferTiny(t, s, "served", m)
	checkNumpy(t, "served", m, y)
	for name, body := range hostileONNX(t, m.file) {
		file := filepath.Join(t.TempDir(), "model.onnx")
		if err := os.WriteFile(file, body, 0o644); err != nil {
			t.Fatal(err)
		}
		v := pushONNX(t, s.Client(), "hostile", file)
		failed := ""
		for _, ch := range v.Checks {
			if !ch.Passed {
				failed += ch.ID + ": " + ch.Message + "; "
			}
		}
		if v.State != slipway.VersionFailed || !strings.Contains(failed, "model.load") {
			t.Errorf("%s: version %s, failed checks %q; want FAILED at model.load", name, v.State, failed)
		}
		// Nor can it be deployed, in-process or not.
		resp, out := s.do(t, "POST", "/api/v1/deployments", s.Token,
			strings.NewReader(fmt.Sprintf(`{"name": "h%d", "model": "hostile", "version": %d, "isolation": "in-process"}`, v.Version, v.Version)), "application/json")
		if resp.StatusCode != http.StatusConflict || !strings.Contains(string(out), "only READY versions can be deployed") {
			t.Errorf("%s: deploying the failed version: %d %s", name, resp.StatusCode, out)
		}
	}
	select {
	case <-s.exited:
		t.Fatalf("the server exited:\n%s", s.Log())
	default:
	}
	_, y = inferTiny(t, s, "served", m)
	checkNumpy(t, "served", m, y)
}

// procStatus is a figure of the server's /proc/PID/status, in bytes.
func procStatus(t testing.TB, s *server, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in %s", field, b)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// metricValue reads an unlabelled figure from the server's Prometheus metrics.
func metricValue(t testing.TB, s *server, name string) float64 {
	t.Helper()
	_, out := s.do(t, "GET", "/metrics", s.Token, nil, "")
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %q", name, line)
			}
			return v
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// envInt is the integer in the environment variable key, or def.
func envInt(t testing.TB, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", key, v)
	}
	return n
}

// nonGoResident is the server's anonymous resident memory that Go's runtime does not account for (RssAnon less
// everything Go obtained from the system): the C heap, where in-process models live.
func nonGoResident(t testing.TB, s *server) int64 {
	return procStatus(t, s, "RssAnon") - int64(metricValue(t, s, "go_memstats_sys_bytes"))
}

// Many distinct ONNX models, each pushed and deployed lazy and in-process, on a server whose model memory
// budget holds a fraction of them: every deployment answers with its own model, twice round (so the first ones
// come back after they were unloaded); the loaded models, as measured, never pass the budget; the log names
// every unloaded deployment, the least recently used first; and the server's resident memory outside Go's
// heap grows by less than the models would take all loaded (what it does hold beyond the budget is a fixed
// overhead of ONNX Runtime and the allocator, the same with 40 models as with 300: docs/benchmarks.md).
// SLIPWAY_MANY_MODELS sets the count (default 40; bench/manymodels runs 300).
func TestManyInProcessDeploymentsUnderABudget(t *testing.T) {
	n := envInt(t, "SLIPWAY_MANY_MODELS", 40)
	const hidden = 512 // 1 MiB of weights per model: memory that shows in the resident set
	const budget = 8 << 20
	s := startServer(t, "", "--model-memory-budget", "8MiB")
	models := tinyModels(t, n, hidden)
	for _, m := range models {
		if v := pushONNX(t, s.Client(), m.Name, m.file); v.State != slipway.VersionReady {
			t.Fatalf("%s: %s %+v", m.Name, v.State, v.Checks)
		}
	}
	for _, m := range models {
		createDeployment(t, s, slipway.DeploymentSpec{Name: m.Name, Model: m.Name, Load: ptr(slipway.LoadLazy),
			Isolation: ptr(slipway.IsolationInProcess)})
	}
	_, y := inferTiny(t, s, models[0].Name, models[0])
	checkNumpy(t, models[0].Name, models[0], y)
	base := nonGoResident(t, s) - int64(metricValue(t, s, "slipway_model_memory_loaded_bytes"))
	peak := base
	for round := range 2 {
		for _, m := range models {
			_, y := inferTiny(t, s, m.Name, m)
			checkNumpy(t, fmt.Sprintf("%s (round %d)", m.Name, round+1), m, y)
			if loaded := metricValue(t, s, "slipway_model_memory_loaded_bytes"); loaded > budget {
				t.Fatalf("after %s: %g bytes of models loaded, budget %d", m.Name, loaded, budget)
			}
			peak = max(peak, nonGoResident(t, s))
		}
	}
	unloads := metricValue(t, s, "slipway_model_unloads_total")
	// What every model measured at its load: those unloaded and those still loaded, over the loads.
	perModel := (metricValue(t, s, "slipway_model_unloaded_bytes_total") + metricValue(t, s, "slipway_model_memory_loaded_bytes")) /
		(unloads + float64(countLoaded(t, s, models)))
	allLoaded := int64(perModel * float64(n))
	t.Logf("%d models of %.0f bytes each as measured (all loaded: %d), budget %d: resident outside Go's heap grew by %d; %g unloads",
		n, perModel, allLoaded, budget, peak-base, unloads)
	logged := regexp.MustCompile(`unloaded an idle replica" deployment=(m\d+)`).FindAllStringSubmatch(s.Log(), -1)
	if unloads == 0 || len(logged) != int(unloads) {
		t.Fatalf("%g unloads counted, %d logged", unloads, len(logged))
	}
	if logged[0][1] != models[0].Name {
		t.Errorf("the first unloaded was %s, want the least recently used, %s", logged[0][1], models[0].Name)
	}
	if peak-base >= allLoaded {
		t.Errorf("the server's resident memory outside Go's heap grew by %d bytes: as much as %d models all loaded (%d)", peak-base, n, allLoaded)
	}
}

// countLoaded is how many of the models' deployments hold a replica now.
func countLoaded(t testing.TB, s *server, models []tinyModel) int {
	t.Helper()
	n := 0
	for _, m := range models {
		d, err := s.Client().GetDeployment(t.Context(), m.Name)
		if err != nil {
			t.Fatal(err)
		}
		n += d.ReadyReplicas
	}
	return n
}

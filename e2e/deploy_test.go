package e2e

import (
	"bytes"
	"context"
	byteorder "encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// churnRows reads the first n feature rows of the bundled data set.
func churnRows(t *testing.T, n int) (cols []string, rows [][]any) {
	t.Helper()
	f, err := os.Open(examplePath("data", "churn.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	cols = []string{"age", "tenure_months", "monthly_charges", "plan", "support_calls"}
	idx := map[string]int{}
	for i, h := range recs[0] {
		idx[h] = i
	}
	for _, rec := range recs[1 : n+1] {
		row := make([]any, len(cols))
		for j, c := range cols {
			if c == "plan" {
				row[j] = rec[idx[c]]
			} else {
				row[j], _ = strconv.ParseFloat(rec[idx[c]], 64)
			}
		}
		rows = append(rows, row)
	}
	return cols, rows
}

// pythonReference runs the pickled model directly in Python on the same rows: the ground truth.
func pythonReference(t *testing.T, n int) (pred []int, prob []float64) {
	t.Helper()
	script := fmt.Sprintf(`
import json, pickle, pandas as pd
m = pickle.load(open(%q, "rb"))
df = pd.read_csv(%q).head(%d)[["age", "tenure_months", "monthly_charges", "plan", "support_calls"]]
print(json.dumps({"pred": m.predict(df).tolist(), "prob": m.predict_proba(df)[:, 1].tolist()}))
`, examplePath("sklearn-churn", "model.pkl"), examplePath("data", "churn.csv"), n)
	out, err := exec.Command("/usr/bin/python3", "-c", script).Output()
	if err != nil {
		t.Fatalf("python reference: %v", err)
	}
	var ref struct {
		Pred []int     `json:"pred"`
		Prob []float64 `json:"prob"`
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	return ref.Pred, ref.Prob
}

// v2Inputs are churn rows as Open Inference Protocol v2 inputs: one tensor per feature.
func v2Inputs(cols []string, rows [][]any) []map[string]any {
	inputs := make([]map[string]any, len(cols))
	for j, c := range cols {
		data := make([]any, len(rows))
		for i := range rows {
			data[i] = rows[i][j]
		}
		dt := "FP64"
		if c == "plan" {
			dt = "BYTES"
		}
		inputs[j] = map[string]any{"name": c, "shape": []int{len(rows)}, "datatype": dt, "data": data}
	}
	return inputs
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// deploy creates a deployment through the CLI and waits until it is ACTIVE.
func deploy(t *testing.T, s *server, args ...string) {
	t.Helper()
	out, errOut, code := s.cli(append([]string{"deploy"}, args...)...)
	if code != 0 {
		t.Fatalf("deploy %v: exit %d\n%s\n%s", args, code, out, errOut)
	}
}

func pushExamples(t *testing.T, s *server) {
	t.Helper()
	if out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--alias", "champion"); code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
	if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx: %s %s", out, errOut)
	}
}

// pushChurnV2 registers the scikit-learn example again: version 2 of churn.
func pushChurnV2(t *testing.T, s *server) {
	t.Helper()
	if out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push churn v2: %s %s", out, errOut)
	}
}

// invokeChurn sends n rows of the churn data set to a deployment through the MLflow protocol.
func invokeChurn(t *testing.T, s *server, deployment string, n int) (*http.Response, []byte) {
	t.Helper()
	cols, rows := churnRows(t, n)
	return s.do(t, "POST", "/deployments/"+deployment+"/invocations", s.Token,
		bytes.NewReader(mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})), "application/json")
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// The same rows through all three protocols give the predictions of the model run directly in Python.
func TestDeployThreeProtocolsMatchPython(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "churn", "--model", "churn@champion", "--replicas", "2")
	checkScheduling(t, s, "churn", "SCHED_OTHER", 1)
	const n = 20
	cols, rows := churnRows(t, n)
	wantPred, wantProb := pythonReference(t, n)

	check := func(proto string, pred []int, prob []float64) {
		t.Helper()
		if len(pred) != n || len(prob) != n {
			t.Fatalf("%s: %d predictions, %d probabilities; want %d", proto, len(pred), len(prob), n)
		}
		for i := range pred {
			if pred[i] != wantPred[i] || !closeTo(prob[i], wantProb[i]) {
				t.Fatalf("%s row %d: got %d/%v, python %d/%v", proto, i, pred[i], prob[i], wantPred[i], wantProb[i])
			}
		}
	}

	// OCI predict: the body goes to predict() as is.
	resp, body := s.do(t, "POST", "/deployments/churn/predict", s.Token, bytes.NewReader(mustJSON(map[string]any{"data": rows, "columns": cols})), "application/json")
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Slipway-Model-Version") != "1" {
		t.Fatalf("predict: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	var oci struct {
		Prediction  []int     `json:"prediction"`
		Probability []float64 `json:"probability"`
	}
	json.Unmarshal(body, &oci)
	check("predict", oci.Prediction, oci.Probability)

	// MLflow: dataframe_split, dataframe_records and CSV.
	records := make([]map[string]any, n)
	var csvBuf strings.Builder
	csvBuf.WriteString(strings.Join(cols, ",") + "\n")
	for i, r := range rows {
		records[i] = map[string]any{}
		fields := make([]string, len(r))
		for j, c := range cols {
			records[i][c] = r[j]
			fields[j] = fmt.Sprint(r[j])
		}
		csvBuf.WriteString(strings.Join(fields, ",") + "\n")
	}
	for _, tc := range []struct {
		name, ct string
		body     []byte
	}{
		{"dataframe_split", "application/json", mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})},
		{"dataframe_records", "application/json", mustJSON(map[string]any{"dataframe_records": records})},
		{"csv", "text/csv", []byte(csvBuf.String())},
	} {
		resp, body := s.do(t, "POST", "/deployments/churn/invocations", s.Token, bytes.NewReader(tc.body), tc.ct)
		if resp.StatusCode != 200 {
			t.Fatalf("invocations %s: %d %s", tc.name, resp.StatusCode, body)
		}
		var ml struct {
			Predictions []struct {
				Prediction  int     `json:"prediction"`
				Probability float64 `json:"probability"`
			} `json:"predictions"`
		}
		if err := json.Unmarshal(body, &ml); err != nil {
			t.Fatalf("%s: %v: %s", tc.name, err, body)
		}
		pred, prob := make([]int, len(ml.Predictions)), make([]float64, len(ml.Predictions))
		for i, p := range ml.Predictions {
			pred[i], prob[i] = p.Prediction, p.Probability
		}
		check("invocations "+tc.name, pred, prob)
	}

	// Open Inference Protocol v2: one tensor per feature.
	resp, body = s.do(t, "POST", "/v2/models/churn/infer", s.Token, bytes.NewReader(mustJSON(map[string]any{"id": "req-42", "inputs": v2Inputs(cols, rows)})), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("v2 infer: %d %s", resp.StatusCode, body)
	}
	var v2 struct {
		ID      string `json:"id"`
		Model   string `json:"model_name"`
		Outputs []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	json.Unmarshal(body, &v2)
	if v2.ID != "req-42" || v2.Model != "churn" {
		t.Fatalf("v2 envelope: %s", body)
	}
	var pred []int
	var prob []float64
	for _, o := range v2.Outputs {
		switch o.Name {
		case "prediction":
			for _, v := range o.Data {
				pred = append(pred, int(v))
			}
		case "probability":
			prob = o.Data
		}
	}
	check("v2", pred, prob)
	for _, path := range []string{"/v2/health/live", "/v2/health/ready"} {
		if resp, body := s.do(t, "GET", path, "", nil, ""); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := s.do(t, "GET", "/v2/models/churn/ready", s.Token, nil, ""); resp.StatusCode != 200 {
		t.Fatalf("model ready: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.do(t, "GET", "/v2/models/churn", s.Token, nil, ""); resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"monthly_charges"`)) {
		t.Fatalf("model metadata: %d %s", resp.StatusCode, body)
	}
}

type expectedONNX struct {
	Features      [][]float64 `json:"features"`
	Probabilities [][]float64 `json:"probabilities"`
	Labels        []int       `json:"label"`
}

func TestDeployONNXMatchesReference(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "churn-onnx", "--model", "churn-onnx:1", "--replicas", "2")
	checkScheduling(t, s, "churn-onnx", "SCHED_BATCH", 2)
	raw, err := os.ReadFile(examplePath("onnx-churn", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedONNX
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	n := len(exp.Features)
	flat := make([]float64, 0, n*4)
	for _, r := range exp.Features {
		flat = append(flat, r...)
	}
	compare := func(proto string, probs [][]float64, labels []int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if labels[i] != exp.Labels[i] || math.Abs(probs[i][1]-exp.Probabilities[i][1]) > 1e-5 {
				t.Fatalf("%s row %d: %v/%d, want %v/%d", proto, i, probs[i], labels[i], exp.Probabilities[i], exp.Labels[i])
			}
		}
	}
	// MLflow tensor input.
	resp, body := s.do(t, "POST", "/deployments/churn-onnx/invocations", s.Token, bytes.NewReader(mustJSON(map[string]any{"inputs": exp.Features})), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("invocations: %d %s", resp.StatusCode, body)
	}
	// Several outputs, not all 1-D: MLflow answers {"predictions": {output: nested list}}.
	var ml struct {
		Predictions struct {
			Probabilities [][]float64 `json:"probabilities"`
			Label         []int       `json:"label"`
		} `json:"predictions"`
	}
	if err := json.Unmarshal(body, &ml); err != nil || len(ml.Predictions.Label) != n {
		t.Fatalf("invocations body %s: %v", body, err)
	}
	probs, labels := ml.Predictions.Probabilities, ml.Predictions.Label
	compare("invocations", probs, labels)

	// V2 with the model's own input.
	req := map[string]any{"inputs": []map[string]any{{"name": "features", "shape": []int{n, 4}, "datatype": "FP32", "data": flat}}}
	resp, body = s.do(t, "POST", "/v2/models/churn-onnx/infer", s.Token, bytes.NewReader(mustJSON(req)), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("v2: %d %s", resp.StatusCode, body)
	}
	var v2 struct {
		Outputs []struct {
			Name  string    `json:"name"`
			Shape []int     `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"outputs"`
	}
	json.Unmarshal(body, &v2)
	for _, o := range v2.Outputs {
		switch o.Name {
		case "probabilities":
			for i := range probs {
				probs[i] = o.Data[2*i : 2*i+2]
			}
		case "label":
			for i := range labels {
				labels[i] = int(o.Data[i])
			}
		}
	}
	compare("v2", probs, labels)
	v2JSON := body

	// V2 with the binary tensor data extension, as Triton's clients send by default: the same answer.
	checkV2Binary(t, s, "churn-onnx", flat, n, v2JSON)

	// OCI predict on an ONNX model: {"inputs": {name: nested list}}.
	resp, body = s.do(t, "POST", "/deployments/churn-onnx/predict", s.Token, bytes.NewReader(mustJSON(map[string]any{"inputs": map[string]any{"features": exp.Features}})), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("predict: %d %s", resp.StatusCode, body)
	}
	var oci struct {
		Outputs struct {
			Probabilities [][]float64 `json:"probabilities"`
			Label         []int       `json:"label"`
		} `json:"outputs"`
	}
	json.Unmarshal(body, &oci)
	compare("predict", oci.Outputs.Probabilities, oci.Outputs.Label)
}

// checkV2Binary sends features (n rows of 4) in the binary tensor data extension, asks for every output in
// binary, and checks that the answer carries the same outputs as the JSON answer v2JSON.
func checkV2Binary(t *testing.T, s *server, model string, features []float64, n int, v2JSON []byte) {
	t.Helper()
	head := mustJSON(map[string]any{
		"inputs":     []map[string]any{{"name": "features", "shape": []int{n, 4}, "datatype": "FP32", "parameters": map[string]any{"binary_data_size": 16 * n}}},
		"parameters": map[string]any{"binary_data_output": true}})
	body := append([]byte{}, head...)
	for _, f := range features {
		body = byteorder.LittleEndian.AppendUint32(body, math.Float32bits(float32(f)))
	}
	req, err := http.NewRequest("POST", s.URL+"/v2/models/"+model+"/infer", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(head)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	jsonLen, err := strconv.Atoi(resp.Header.Get("Inference-Header-Content-Length"))
	if resp.StatusCode != 200 || err != nil || resp.Header.Get("Content-Type") != "application/octet-stream" || jsonLen > len(answer) {
		t.Fatalf("binary v2: %d %q %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Inference-Header-Content-Length"), answer)
	}
	type output struct {
		Name       string          `json:"name"`
		Datatype   string          `json:"datatype"`
		Shape      []int           `json:"shape"`
		Data       json.RawMessage `json:"data"`
		Parameters struct {
			Size int `json:"binary_data_size"`
		} `json:"parameters"`
	}
	var bin, plain struct{ Outputs []output }
	if err := json.Unmarshal(answer[:jsonLen], &bin); err != nil {
		t.Fatalf("the JSON part %q: %v", answer[:jsonLen], err)
	}
	if err := json.Unmarshal(v2JSON, &plain); err != nil || len(plain.Outputs) != len(bin.Outputs) {
		t.Fatalf("outputs: binary %d, JSON %d (%v)", len(bin.Outputs), len(plain.Outputs), err)
	}
	raw := answer[jsonLen:]
	for i, o := range bin.Outputs {
		if o.Data != nil || o.Parameters.Size == 0 || o.Parameters.Size > len(raw) {
			t.Fatalf("binary output %s: %+v with %d bytes left", o.Name, o, len(raw))
		}
		var got []float64
		for j := 0; j < o.Parameters.Size; {
			switch o.Datatype {
			case "FP32":
				got, j = append(got, float64(math.Float32frombits(byteorder.LittleEndian.Uint32(raw[j:])))), j+4
			case "INT64":
				got, j = append(got, float64(int64(byteorder.LittleEndian.Uint64(raw[j:])))), j+8
			default:
				t.Fatalf("output %s: datatype %s not expected of this model", o.Name, o.Datatype)
			}
		}
		raw = raw[o.Parameters.Size:]
		var want []float64
		err := json.Unmarshal(plain.Outputs[i].Data, &want)
		if o.Datatype == "FP32" { // JSON writes a float32 in its shortest form: equal as float32, bit for bit
			for k := range want {
				want[k] = float64(float32(want[k]))
			}
		}
		if err != nil || plain.Outputs[i].Name != o.Name || !slices.Equal(got, want) {
			t.Fatalf("output %s in binary %v, in JSON %s %v", o.Name, got, plain.Outputs[i].Data, err)
		}
	}
	if len(raw) != 0 {
		t.Fatalf("%d bytes after the last output's binary data", len(raw))
	}
}

// checkScheduling: by default every thread of the server runs under SCHED_BATCH, and every thread of every
// replica of deployment name under policy (SCHED_OTHER for Python, SCHED_BATCH for ONNX), as chrt sees them.
// A Go program (the server, an ONNX replica) runs several threads.
func checkScheduling(t *testing.T, s *server, name, policy string, replicaThreads int) {
	t.Helper()
	d, err := s.Client().GetDeployment(context.Background(), name)
	if err != nil || len(d.ReplicaStatus) == 0 {
		t.Fatalf("deployment %+v, %v", d, err)
	}
	checkPolicy(t, "server", s.cmd.Process.Pid, "SCHED_BATCH", 2)
	for _, r := range d.ReplicaStatus {
		checkPolicy(t, "replica", r.PID, policy, replicaThreads)
	}
}

// checkPolicy: every thread of process pid, of which there are at least threads, is under policy.
func checkPolicy(t *testing.T, what string, pid int, policy string, threads int) {
	t.Helper()
	out, err := exec.Command("chrt", "--all-tasks", "--pid", strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		t.Fatalf("chrt: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, line := range lines {
		if strings.Contains(line, "policy") && !strings.HasSuffix(line, policy) {
			t.Errorf("%s %d: %s, want %s", what, pid, line, policy)
		}
	}
	if len(lines) < 2*threads { // a policy and a priority line per thread
		t.Errorf("%s %d: chrt listed %d lines, want %d threads: %s", what, pid, len(lines), threads, out)
	}
}

// Bad payloads get a clear 4xx in each protocol.
func TestBadPayloads(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", "--max-payload-bytes", "4096")
	pushExamples(t, s)
	deploy(t, s, "churn", "--model", "churn@champion")
	deploy(t, s, "onnx", "--model", "churn-onnx")
	big := bytes.Repeat([]byte("1"), 5000)
	tests := []struct {
		name, path, ct, body string
		status               int
		detail               string
	}{
		{"not json", "/deployments/churn/invocations", "application/json", "{not json", 400, "JSON"},
		{"no mlflow key", "/deployments/churn/invocations", "application/json", `{"rows": []}`, 400, "dataframe_split"},
		{"two mlflow keys", "/deployments/churn/invocations", "application/json", `{"instances": [[1]], "inputs": [[1]]}`, 400, "instances"},
		{"missing feature", "/deployments/churn/invocations", "application/json", `{"dataframe_split": {"columns": ["age"], "data": [[1.0]]}}`, 400, "tenure_months"},
		{"wrong dtype", "/deployments/churn/invocations", "application/json", `{"dataframe_split": {"columns": ["age","tenure_months","monthly_charges","plan","support_calls"], "data": [["old", 1, 2, "pro", 0]]}}`, 400, "age"},
		{"value not allowed", "/deployments/churn/invocations", "application/json", `{"dataframe_split": {"columns": ["age","tenure_months","monthly_charges","plan","support_calls"], "data": [[30, 1, 2, "platinum", 0]]}}`, 400, "platinum"},
		{"csv wrong field count", "/deployments/churn/invocations", "text/csv", "age,tenure_months,monthly_charges,plan,support_calls\n1,2,3\n", 400, "line"},
		{"too large", "/deployments/churn/invocations", "application/json", string(big), 413, "limit"},
		{"empty body", "/deployments/churn/predict", "application/json", "", 400, "empty"},
		{"model rejects input", "/deployments/churn/predict", "application/json", `{"data": [[1]]}`, 400, "rejected"},
		{"v2 wrong shape", "/v2/models/onnx/infer", "application/json", `{"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [1,2,3]}]}`, 400, "inputs[0]"},
		{"v2 wrong dtype", "/v2/models/onnx/infer", "application/json", `{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ["a","b","c","d"]}]}`, 400, "inputs[0]"},
		{"v2 missing inputs", "/v2/models/onnx/infer", "application/json", `{"id": "x"}`, 400, "inputs"},
		{"v2 unknown model", "/v2/models/nope/infer", "application/json", `{"inputs": []}`, 404, "nope"},
		{"unknown deployment", "/deployments/nope/predict", "application/json", `{}`, 404, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := s.do(t, "POST", tc.path, s.Token, strings.NewReader(tc.body), tc.ct)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.detail) {
				t.Fatalf("%d %s; want %d mentioning %q", resp.StatusCode, body, tc.status, tc.detail)
			}
		})
	}
}

// load steadily calls a deployment until stop; it counts outcomes by status.
type load struct {
	mu     sync.Mutex
	status map[int]int
	errs   []string
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startLoad(t *testing.T, s *server, path string, body []byte, workers int) *load {
	l := &load{status: map[int]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 60 * time.Second}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", s.URL+path, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.Token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				l.mu.Lock()
				if err != nil {
					l.status[-1]++
					l.errs = append(l.errs, err.Error())
				} else {
					b := new(bytes.Buffer)
					b.ReadFrom(resp.Body)
					resp.Body.Close()
					l.status[resp.StatusCode]++
					if resp.StatusCode != 200 && len(l.errs) < 20 {
						l.errs = append(l.errs, fmt.Sprintf("%d %s", resp.StatusCode, b.String()))
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() (map[int]int, []string) {
	close(l.stop)
	l.wg.Wait()
	return l.status, l.errs
}

func sampleBody(t *testing.T) []byte {
	cols, rows := churnRows(t, 1)
	return mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill -9 one replica under steady load: no failed requests (in-flight ones are retried), a replacement is
// ready within seconds.
func TestReplicaCrashUnderLoad(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "churn", "--model", "churn@champion", "--replicas", "2")
	c := s.Client()
	ctx := context.Background()
	d, err := c.GetDeployment(ctx, "churn")
	if err != nil || len(d.ReplicaStatus) != 2 {
		t.Fatalf("deployment %+v, %v", d, err)
	}
	victim := d.ReplicaStatus[0].PID
	l := startLoad(t, s, "/deployments/churn/invocations", sampleBody(t), 4)
	time.Sleep(500 * time.Millisecond)
	syscall.Kill(victim, syscall.SIGKILL)
	waitFor(t, "replacement replica", 30*time.Second, func() bool {
		d, err := c.GetDeployment(ctx, "churn")
		if err != nil {
			return false
		}
		ready, restarts := 0, 0
		for _, r := range d.ReplicaStatus {
			if r.State == "READY" && r.PID != victim {
				ready++
			}
			restarts += r.Restarts
		}
		return ready == 2 && restarts >= 1
	})
	time.Sleep(300 * time.Millisecond)
	status, errs := l.finish()
	if len(status) != 1 || status[200] == 0 {
		t.Fatalf("statuses %v (want only 200): %v", status, errs)
	}
	t.Logf("%d requests, all 200, across a replica kill", status[200])
}

// Overload answers 429 with Retry-After at once, and the server stays responsive.
func TestOverload429(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	out, errOut, code := s.cli("deploy", "slow", "--model", "churn@champion", "--max-queue", "1", "--replicas", "1")
	if code != 0 {
		t.Fatalf("%s %s", out, errOut)
	}
	l := startLoad(t, s, "/deployments/slow/invocations", sampleBody(t), 24)
	saw429 := false
	waitFor(t, "a 429", 30*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		saw429 = l.status[429] > 0
		return saw429
	})
	// Health and the API answer while the deployment is saturated.
	for _, path := range []string{"/healthz", "/api/v1/deployments/slow"} {
		if resp, body := s.do(t, "GET", path, s.Token, nil, ""); resp.StatusCode != 200 {
			t.Fatalf("%s during overload: %d %s", path, resp.StatusCode, body)
		}
	}
	resp, _ := s.do(t, "POST", "/deployments/slow/invocations", s.Token, bytes.NewReader(sampleBody(t)), "application/json")
	status, _ := l.finish()
	if status[-1] > 0 || status[500] > 0 || status[504] > 0 {
		t.Fatalf("statuses %v", status)
	}
	if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	t.Logf("statuses under overload: %v", status)
}

// A version update and deactivate/activate under load: no 5xx during the update; the URL never changes.
func TestUpdateAndDeactivateUnderLoad(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	pushChurnV2(t, s)
	deploy(t, s, "churn", "--model", "churn:1", "--replicas", "2")
	c := s.Client()
	ctx := context.Background()
	l := startLoad(t, s, "/deployments/churn/invocations", sampleBody(t), 4)
	time.Sleep(300 * time.Millisecond)
	if out, errOut, code := s.cli("deployments", "update", "churn", "--model-version", "2"); code != 0 {
		t.Fatalf("update: %s %s", out, errOut)
	}
	d, err := c.GetDeployment(ctx, "churn")
	if err != nil || d.Version != 2 || d.State != slipway.DeploymentActive {
		t.Fatalf("after update: %+v, %v", d, err)
	}
	time.Sleep(300 * time.Millisecond)
	status, errs := l.finish()
	if len(status) != 1 || status[200] == 0 {
		t.Fatalf("statuses during update %v: %v", status, errs)
	}
	resp, _ := s.do(t, "POST", "/deployments/churn/invocations", s.Token, bytes.NewReader(sampleBody(t)), "application/json")
	if resp.Header.Get("X-Slipway-Model-Version") != "2" {
		t.Fatalf("serving version %q after update", resp.Header.Get("X-Slipway-Model-Version"))
	}

	if out, errOut, code := s.cli("deployments", "deactivate", "churn"); code != 0 {
		t.Fatalf("deactivate: %s %s", out, errOut)
	}
	resp, body := s.do(t, "POST", "/deployments/churn/invocations", s.Token, bytes.NewReader(sampleBody(t)), "application/json")
	if resp.StatusCode != 503 || !strings.Contains(string(body), "INACTIVE") {
		t.Fatalf("inactive deployment answered %d %s", resp.StatusCode, body)
	}
	if out, errOut, code := s.cli("deployments", "activate", "churn"); code != 0 {
		t.Fatalf("activate: %s %s", out, errOut)
	}
	resp, body = s.do(t, "POST", "/deployments/churn/invocations", s.Token, bytes.NewReader(sampleBody(t)), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("after activate: %d %s", resp.StatusCode, body)
	}
}

// A canary takes its share of the requests on replicas of its own; V2's versioned paths reach either version;
// it survives deactivate/activate; promoting it sends every request to its version. Bad canaries are refused
// before anything starts.
func TestCanaryTraffic(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	pushChurnV2(t, s)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--canary-version", "1"}, "the canary's version 1 is the deployment's own"},
		{[]string{"--canary-version", "9"}, "canary: version 9"},
		{[]string{"--canary-version", "2", "--canary-weight", "100"}, "canary weight must be 1-99"},
		{[]string{"--canary-weight", "20"}, "the deployment has no canary: give --canary-version"},
	} {
		out, errOut, code := s.cli(append([]string{"deploy", "bad", "--model", "churn:1", "--no-wait"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Fatalf("deploy %v: exit %d, want an error saying %q\n%s\n%s", tc.args, code, tc.want, out, errOut)
		}
	}
	deploy(t, s, "churn", "--model", "churn:1", "--canary-version", "2", "--canary-weight", "50")
	body := sampleBody(t)
	versions := func(n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for range n {
			resp, out := s.do(t, "POST", "/deployments/churn/invocations", s.Token, bytes.NewReader(body), "application/json")
			if resp.StatusCode != 200 {
				t.Fatalf("invocations: %d %s", resp.StatusCode, out)
			}
			seen[resp.Header.Get("X-Slipway-Model-Version")]++
		}
		return seen
	}
	// 200 requests at 50%: each side outside 50-150 has a probability under 1e-12.
	if seen := versions(200); len(seen) != 2 || seen["1"] < 50 || seen["2"] < 50 {
		t.Fatalf("versions that answered 200 requests: %v, want about half each of 1 and 2", seen)
	}
	// Prometheus counts each version's requests apart, so that the canary can be compared.
	if resp, out := s.do(t, "GET", "/metrics", s.Token, nil, ""); resp.StatusCode != 200 ||
		!strings.Contains(string(out), `slipway_predict_requests_total{code="200",deployment="churn",protocol="invocations",version="1"}`) ||
		!strings.Contains(string(out), `slipway_predict_requests_total{code="200",deployment="churn",protocol="invocations",version="2"}`) {
		t.Fatalf("metrics by version: %d\n%s", resp.StatusCode, out)
	}
	d, err := s.Client().GetDeployment(context.Background(), "churn")
	if err != nil || d.Canary == nil || *d.Canary != (slipway.Canary{Version: 2, Weight: 50, Replicas: 1}) || len(d.ReplicaStatus) != 2 {
		t.Fatalf("deployment with a canary: %+v %+v, %v", d, d.Canary, err)
	}
	if out, _, _ := s.cli("deployments", "get", "churn"); !strings.Contains(out, "version 2 takes 50% of the requests on 1 replica(s)") {
		t.Fatalf("deployments get does not show the canary:\n%s", out)
	}

	// The versioned V2 paths reach either version, and say which ones exist.
	cols, rows := churnRows(t, 1)
	infer := mustJSON(map[string]any{"inputs": v2Inputs(cols, rows)})
	for _, v := range []string{"1", "2"} {
		resp, out := s.do(t, "POST", "/v2/models/churn/versions/"+v+"/infer", s.Token, bytes.NewReader(infer), "application/json")
		if resp.StatusCode != 200 || resp.Header.Get("X-Slipway-Model-Version") != v || !strings.Contains(string(out), `"model_version":"`+v+`"`) {
			t.Fatalf("v2 infer of version %s: %d %s %s", v, resp.StatusCode, resp.Header.Get("X-Slipway-Model-Version"), out)
		}
	}
	resp, out := s.do(t, "POST", "/v2/models/churn/versions/3/infer", s.Token, bytes.NewReader(infer), "application/json")
	if resp.StatusCode != 404 || !strings.Contains(string(out), "serves version 1 and 2, not 3") {
		t.Fatalf("v2 infer of an unknown version: %d %s", resp.StatusCode, out)
	}
	if resp, out := s.do(t, "GET", "/v2/models/churn", s.Token, nil, ""); resp.StatusCode != 200 || !strings.Contains(string(out), `"versions":["1","2"]`) {
		t.Fatalf("v2 model metadata: %d %s", resp.StatusCode, out)
	}

	// Deactivate and activate bring the canary back.
	for _, verb := range []string{"deactivate", "activate"} {
		if out, errOut, code := s.cli("deployments", verb, "churn"); code != 0 {
			t.Fatalf("%s: %s %s", verb, out, errOut)
		}
	}
	if seen := versions(100); len(seen) != 2 {
		t.Fatalf("versions after deactivate/activate: %v, want 1 and 2", seen)
	}

	// Promote: the canary's version becomes the deployment's, and the canary goes.
	if out, errOut, code := s.cli("deployments", "update", "churn", "--model-version", "2", "--no-canary"); code != 0 {
		t.Fatalf("promote: %s %s", out, errOut)
	}
	if seen := versions(50); seen["2"] != 50 {
		t.Fatalf("versions after promotion: %v, want only 2", seen)
	}
	if d, err := s.Client().GetDeployment(context.Background(), "churn"); err != nil || d.Canary != nil || len(d.ReplicaStatus) != 1 || d.ReplicaStatus[0].Version != 2 {
		t.Fatalf("after promotion: %+v, %v", d, err)
	}
}

// A shadow gets a copy of every request on replicas of its own; the deployment's version alone answers, and
// the copies' outcomes are counted.
func TestShadowTraffic(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	pushChurnV2(t, s)
	if out, errOut, code := s.cli("deploy", "bad", "--model", "churn:1", "--shadow-version", "1", "--no-wait"); code == 0 || !strings.Contains(errOut, "the shadow's version 1 is the deployment's own") {
		t.Fatalf("shadow of the deployment's own version: exit %d\n%s\n%s", code, out, errOut)
	}
	deploy(t, s, "churn", "--model", "churn:1", "--shadow-version", "2")
	const n = 30
	body := sampleBody(t)
	for range n {
		resp, out := s.do(t, "POST", "/deployments/churn/invocations", s.Token, bytes.NewReader(body), "application/json")
		if resp.StatusCode != 200 || resp.Header.Get("X-Slipway-Model-Version") != "1" {
			t.Fatalf("invocations with a shadow: %d version %q %s", resp.StatusCode, resp.Header.Get("X-Slipway-Model-Version"), out)
		}
	}
	shadowed := func() map[string]float64 {
		_, out := s.do(t, "GET", "/metrics", s.Token, nil, "")
		seen := map[string]float64{}
		for _, m := range regexp.MustCompile(`slipway_shadow_requests_total\{deployment="churn",outcome="(\w+)",version="2"\} (\d+)`).FindAllStringSubmatch(string(out), -1) {
			seen[m[1]], _ = strconv.ParseFloat(m[2], 64)
		}
		return seen
	}
	waitFor(t, "every copy to be counted", 60*time.Second, func() bool {
		seen := shadowed()
		return seen["ok"]+seen["error"]+seen["dropped"] == n
	})
	seen := shadowed()
	if seen["ok"] == 0 || seen["error"] != 0 {
		t.Fatalf("shadow outcomes %v: want copies answered and none failed", seen)
	}
	t.Logf("shadow outcomes of %d requests: %v", n, seen)
	d, err := s.Client().GetDeployment(context.Background(), "churn")
	if err != nil || d.Shadow == nil || *d.Shadow != (slipway.Shadow{Version: 2, Replicas: 1}) || len(d.ReplicaStatus) != 2 {
		t.Fatalf("deployment with a shadow: %+v, %v", d, err)
	}
	if out, _, _ := s.cli("deployments", "get", "churn"); !strings.Contains(out, "version 2 gets a copy of every request on 1 replica(s)") {
		t.Fatalf("deployments get does not show the shadow:\n%s", out)
	}
	if out, errOut, code := s.cli("deployments", "update", "churn", "--no-shadow"); code != 0 {
		t.Fatalf("remove the shadow: %s %s", out, errOut)
	}
	if d, err := s.Client().GetDeployment(context.Background(), "churn"); err != nil || d.Shadow != nil || len(d.ReplicaStatus) != 1 {
		t.Fatalf("after removing the shadow: %+v, %v", d, err)
	}
}

// A model whose load_model() raises, hangs or exits at deploy time: FAILED with its own output, server fine.
func TestBrokenModelsFailDeployment(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", "--replica-ready-timeout", "20s")
	score := `
import os, sys, time
def load_model():
    mode = os.environ.get("BREAK", "")
    if mode == "raise":
        raise RuntimeError("cannot open weights.bin")
    if mode == "hang":
        time.sleep(3600)
    if mode == "exit":
        print("fatal: GPU not found", file=sys.stderr)
        os._exit(3)
    return 1
def predict(data, model=None):
    return {"prediction": [1]}
`
	v, err := push(t, s.Client(), "fragile", tarGz(t, pythonArtifact(score, nil)), "a.tar.gz", pythonMeta(""))
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, v)
	for _, tc := range []struct{ mode, reason string }{
		{"raise", "cannot open weights.bin"},
		{"hang", "did not become ready within 20s"},
		{"exit", "GPU not found"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			out, errOut, code := s.cli("deploy", "fragile-"+tc.mode, "--model", "fragile:1", "--env", "BREAK="+tc.mode)
			if code == 0 {
				t.Fatalf("deploy succeeded: %s", out)
			}
			d, err := s.Client().GetDeployment(context.Background(), "fragile-"+tc.mode)
			if err != nil || d.State != slipway.DeploymentFailed || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("deployment %+v, %v\n%s", d, err, errOut)
			}
		})
	}
	if resp, _ := s.do(t, "GET", "/healthz", "", nil, ""); resp.StatusCode != 200 {
		t.Fatal("server unhealthy after broken models")
	}
}

// A deployment that follows an alias moves when the alias moves; a model in use cannot be deleted.
func TestFollowAliasAndDeleteGuard(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	pushChurnV2(t, s)
	// Version 2 as a canary first: the alias moving to it promotes it.
	deploy(t, s, "churn", "--model", "churn@champion", "--follow-alias", "--canary-version", "2", "--canary-weight", "5")
	c := s.Client()
	ctx := context.Background()
	if _, err := c.SetAlias(ctx, "churn", "champion", 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deployment to follow the alias and promote its canary", 60*time.Second, func() bool {
		d, err := c.GetDeployment(ctx, "churn")
		return err == nil && d.Version == 2 && d.Canary == nil && d.State == slipway.DeploymentActive && len(d.ReplicaStatus) == 1
	})
	if err := c.DeleteModel(ctx, "churn"); err == nil {
		t.Fatal("deleted a model in use")
	} else if !strings.Contains(err.Error(), "used by a deployment") {
		t.Fatalf("delete error: %v", err)
	}
	if err := c.DeleteDeployment(ctx, "churn"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteModel(ctx, "churn"); err != nil {
		t.Fatalf("delete after the deployment is gone: %v", err)
	}
}

// SIGTERM: the server stops accepting, finishes the request in flight, stops its replicas and exits 0.
func TestSigtermDrainsAndStopsReplicas(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	score := "import time\ndef load_model():\n    return 1\ndef predict(data, model=None):\n    time.sleep(data.get('sleep', 0))\n    return {'prediction': [1]}\n"
	v, err := push(t, s.Client(), "sleepy", tarGz(t, pythonArtifact(score, nil)), "a.tar.gz", pythonMeta(""))
	if err != nil {
		t.Fatal(err)
	}
	assertReady(t, v)
	deploy(t, s, "sleepy", "--model", "sleepy:1", "--replicas", "2")
	d, err := s.Client().GetDeployment(context.Background(), "sleepy")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.URL+"/deployments/sleepy/predict", strings.NewReader(`{"sleep": 2}`))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	waitFor(t, "the request to be in flight", 30*time.Second, func() bool {
		d, err := s.Client().GetDeployment(context.Background(), "sleepy")
		if err != nil {
			return false
		}
		for _, r := range d.ReplicaStatus {
			if r.InFlight > 0 {
				return true
			}
		}
		return false
	})
	s.cmd.Process.Signal(syscall.SIGTERM)
	res := <-done
	if res.err != nil || res.status != 200 {
		t.Fatalf("in-flight request during shutdown: %d, %v", res.status, res.err)
	}
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, r := range d.ReplicaStatus {
		if err := syscall.Kill(r.PID, 0); err == nil {
			t.Errorf("replica pid %d still alive after shutdown", r.PID)
		}
	}
}

// failingScore loads like goodScore and fails every prediction: a canary that must not be promoted.
const failingScore = `
def load_model():
    return {"bias": 1}
def predict(data, model=None):
    raise RuntimeError("this version is broken")
`

// TestCanaryAnalysis: with --canary-analysis the server judges a canary by its own requests. A canary that
// answers 5xx is removed at its first interval and the deployment says why; a healthy one is promoted after
// the intervals it must pass; both while the deployment answers every request of its own version.
func TestCanaryAnalysis(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	c := s.Client()
	meta := &slipway.VersionMetadata{Runtime: "python"} // no sample_input: the broken version registers
	for i, score := range []string{goodScore, failingScore, goodScore} {
		if v, err := push(t, c, "toy", tarGz(t, pythonArtifact(score, nil)), "model.tar.gz", meta); err != nil || v.State != slipway.VersionReady {
			t.Fatalf("push version %d: %+v, %v", i+1, v, err)
		}
	}
	body := []byte(`{"data": [[1, 2]]}`)
	// Traffic for the analysis: 4 clients until stop; every answer of version 1 must be a 200.
	traffic := func() (stop func() (ok, canaryErrors int)) {
		var mu sync.Mutex
		var ok, canaryErrors int
		done := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					resp, out := s.do(t, "POST", "/deployments/toy/predict", s.Token, bytes.NewReader(body), "application/json")
					mu.Lock()
					switch v := resp.Header.Get("X-Slipway-Model-Version"); {
					case resp.StatusCode == 200:
						ok++
					case v != "1" && resp.StatusCode == 500:
						canaryErrors++
					default:
						t.Errorf("version %q answered %d: %s", v, resp.StatusCode, out)
					}
					mu.Unlock()
				}
			})
		}
		return func() (int, int) { close(done); wg.Wait(); return ok, canaryErrors }
	}
	waitDeployment := func(what string, cond func(d *slipway.Deployment) bool) *slipway.Deployment {
		t.Helper()
		var d *slipway.Deployment
		waitFor(t, what, 90*time.Second, func() bool {
			var err error
			d, err = c.GetDeployment(context.Background(), "toy")
			return err == nil && cond(d)
		})
		return d
	}

	// Refused: analysis on a deployment that follows an alias, and bad thresholds.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--canary-max-error-rate", "2"}, "max_error_rate is a share of the requests, 0-1"},
		{[]string{"--canary-interval", "1500ms"}, "--canary-interval must be whole seconds"},
		{[]string{"--canary-promote-after", "-1"}, "promote_after must be 1-1000"},
	} {
		args := append([]string{"deploy", "bad", "--model", "toy:1", "--canary-version", "2", "--no-wait"}, tc.args...)
		if out, errOut, code := s.cli(args...); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Fatalf("deploy %v: exit %d, want %q\n%s%s", tc.args, code, tc.want, out, errOut)
		}
	}

	deploy(t, s, "toy", "--model", "toy:1", "--replicas", "2", "--canary-version", "2", "--canary-weight", "30",
		"--canary-interval", "1s", "--canary-min-requests", "10")
	if out, _, _ := s.cli("deployments", "get", "toy"); !strings.Contains(out, "Canary analysis:") || !strings.Contains(out, "every 1s with ≥ 10 requests") {
		t.Errorf("deployments get does not show the analysis:\n%s", out)
	}
	stop := traffic()
	d := waitDeployment("the broken canary to be removed", func(d *slipway.Deployment) bool { return d.Canary == nil && d.State == slipway.DeploymentActive })
	ok, canaryErrors := stop()
	if d.Version != 1 || !strings.Contains(d.Reason, "canary version 2 removed by its analysis: error rate 100.00% > 1.00%") {
		t.Errorf("after the failed analysis: version %d, reason %q", d.Version, d.Reason)
	}
	if ok == 0 || canaryErrors < 10 {
		t.Errorf("traffic: %d ok, %d canary errors", ok, canaryErrors)
	}

	// A healthy canary is promoted after two passed intervals, without a failed request.
	if out, errOut, code := s.cli("deployments", "update", "toy", "--canary-version", "3", "--canary-weight", "30",
		"--canary-interval", "1s", "--canary-min-requests", "10", "--canary-promote-after", "2", "--canary-max-latency-ratio", "20"); code != 0 {
		t.Fatalf("update: %s %s", out, errOut)
	}
	stop = traffic()
	d = waitDeployment("the healthy canary to be promoted", func(d *slipway.Deployment) bool {
		return d.Version == 3 && d.Canary == nil && d.State == slipway.DeploymentActive
	})
	ok, canaryErrors = stop()
	if !strings.Contains(d.Reason, "canary version 3 promoted by its analysis after 2 passed intervals") || canaryErrors != 0 {
		t.Errorf("after the promotion: reason %q, %d canary errors (%d ok)", d.Reason, canaryErrors, ok)
	}
}

package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPredict(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"split.json":         `{"dataframe_split": {"columns": ["age", "plan"], "data": [[41.0, "pro"]]}}`,
		"records.json":       `{"dataframe_records": [{"age": 41.0, "plan": "pro"}], "params": {"threshold": 0.3}}`,
		"mlflow-inputs.json": `{"inputs": [[1, 2], [3, 4]]}`,
		"v2.json":            `{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [41.0]}]}`,
		"own.json":           `{"data": [[41.0, "pro"]]}`,
		"list.json":          `[1, 2, 3]`,
		"rows.csv":           "age,plan\n41.0,pro\n",
		"rows.txt":           "age,plan\n41.0,pro\n",
		"broken.json":        `{"data": [1, 2}`,
		"empty.json":         " \n",
	})
	path := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantWrite  string // "METHOD /path" of the request, without its body
		wantCT     string
		wantCode   int
		wantStderr string
	}{
		{name: "dataframe_split goes to invocations", args: []string{"--data", path("split.json")},
			wantWrite: "POST /deployments/churn-api/invocations", wantCT: "application/json"},
		{name: "dataframe_records with params", args: []string{"--data", path("records.json")},
			wantWrite: "POST /deployments/churn-api/invocations", wantCT: "application/json"},
		{name: "MLflow inputs", args: []string{"--data", path("mlflow-inputs.json")},
			wantWrite: "POST /deployments/churn-api/invocations", wantCT: "application/json"},
		{name: "a list of tensors is v2", args: []string{"--data", path("v2.json")},
			wantWrite: "POST /v2/models/churn-api/infer", wantCT: "application/json"},
		{name: "the model's own JSON goes to predict", args: []string{"--data", path("own.json")},
			wantWrite: "POST /deployments/churn-api/predict", wantCT: "application/json"},
		{name: "a JSON list goes to predict", args: []string{"--data", path("list.json")},
			wantWrite: "POST /deployments/churn-api/predict", wantCT: "application/json"},
		{name: "--protocol wins", args: []string{"--data", path("split.json"), "--protocol", "predict"},
			wantWrite: "POST /deployments/churn-api/predict", wantCT: "application/json"},
		{name: "--protocol v2", args: []string{"--data", path("own.json"), "--protocol", "v2"},
			wantWrite: "POST /v2/models/churn-api/infer", wantCT: "application/json"},
		{name: "csv", args: []string{"--data", path("rows.csv")},
			wantWrite: "POST /deployments/churn-api/invocations", wantCT: "text/csv"},
		{name: "csv by content", args: []string{"--data", path("rows.txt"), "--protocol", "invocations"},
			wantWrite: "POST /deployments/churn-api/invocations", wantCT: "text/csv"},
		{name: "json on stdin", args: []string{"-d", "-"}, stdin: `{"instances": [[1, 2]]}`,
			wantWrite: "POST /deployments/churn-api/invocations", wantCT: "application/json"},
		{name: "csv on stdin", args: []string{"-d", "-"}, stdin: "a,b\n1,2\n",
			wantWrite: "POST /deployments/churn-api/invocations", wantCT: "text/csv"},
		{name: "csv to predict", args: []string{"--data", path("rows.csv"), "--protocol", "predict"}, wantCode: 1,
			wantStderr: "Error: " + path("rows.csv") + " is CSV: only --protocol invocations (MLflow) takes CSV; send JSON to predict\n"},
		{name: "broken json", args: []string{"--data", path("broken.json")}, wantCode: 1,
			wantStderr: "Error: " + path("broken.json") + ": not valid JSON at byte 15: invalid character '}' after array element\n"},
		{name: "empty", args: []string{"--data", path("empty.json")}, wantCode: 1,
			wantStderr: "Error: " + path("empty.json") + " is empty: give a JSON document or CSV with a header line\n"},
		{name: "missing file", args: []string{"--data", path("nope.json")}, wantCode: 1,
			wantStderr: "Error: read --data: open " + path("nope.json") + ": no such file or directory\n"},
		{name: "bad protocol", args: []string{"--data", path("own.json"), "--protocol", "grpc"}, wantCode: 1,
			wantStderr: "Error: invalid --protocol \"grpc\": use invocations, predict or v2\n"},
		{name: "no data", args: []string{}, wantCode: 1,
			wantStderr: "Error: required flag(s) \"data\" not set\nRun 'slipway predict --help' for usage.\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeDeployAPI(t)
			stdout, stderr, code := runCLI(t, api.env(), tc.stdin, append([]string{"predict", "churn-api"}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if stderr != tc.wantStderr {
				t.Errorf("stderr\n got %q\nwant %q", stderr, tc.wantStderr)
			}
			writes := api.writes()
			if tc.wantWrite == "" {
				if len(writes) != 0 || stdout != "" {
					t.Errorf("sent %q, printed %q; want nothing", writes, stdout)
				}
				return
			}
			if len(writes) != 1 || !strings.HasPrefix(writes[0], tc.wantWrite+" ") {
				t.Errorf("requests %q, want one %s", writes, tc.wantWrite)
			}
			if api.predictCT != tc.wantCT {
				t.Errorf("Content-Type %q, want %q", api.predictCT, tc.wantCT)
			}
			if want := "{\n  \"predictions\": [\n    0.25,\n    0.75\n  ]\n}\n"; stdout != want {
				t.Errorf("stdout %q, want the indented answer %q", stdout, want)
			}
		})
	}
}

func TestPredictSendsTheBodyAsIs(t *testing.T) {
	api := newFakeDeployAPI(t)
	body := "{\"data\": [[41.0, \"pro\"]],\n \"note\": \"1e400 stays text\"}"
	if _, stderr, code := runCLI(t, api.env(), body, "predict", "churn-api", "--data", "-"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if w := api.writes(); len(w) != 1 || w[0] != "POST /deployments/churn-api/predict "+body {
		t.Errorf("request %q", w)
	}
}

func TestPredictErrors(t *testing.T) {
	api := newFakeDeployAPI(t)
	api.v2Error = "inputs[0]: unknown datatype \"FP128\""
	stdout, stderr, code := runCLI(t, api.env(), `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP128", "data": [1]}]}`,
		"predict", "churn-api", "-d", "-")
	if code != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	if want := "Error: inputs[0]: unknown datatype \"FP128\"\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}

	api.predictOut = "not json"
	stdout, _, code = runCLI(t, api.env(), `{"x": 1}`, "predict", "churn-api", "-d", "-")
	if code != 0 || stdout != "not json\n" {
		t.Errorf("exit %d, stdout %q: a body that is not JSON is printed as is", code, stdout)
	}
}

package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// MLflow's own scoring-server test cases, run against /invocations of the binary. Source: mlflow/mlflow,
// tests/pyfunc/test_scoring_server.py at commit 02531f8d12b83e392fb1a3b95f7a91ac694a08be; each case names the
// MLflow test it comes from. The model is that file's sklearn_model fixture (a KNeighborsClassifier on iris's
// first two features, saved by mlflow.sklearn.save_model without a signature), written without MLflow by
// testdata/mlflow_iris_knn.py. Its requests are built as the MLflow tests build them with pandas
// (DataFrame(X).to_dict(orient="split"|"records"): integer column names, an index).
//
// Where Slipway answers differently from MLflow, on purpose, the case says so: errors are
// application/problem+json like every other error of the API (MLflow answers {"error_code": "BAD_REQUEST",
// "message", "stack_trace"}), with the status MLflow gives (400, 415), and never a stack trace.
func TestMLflowScoringServerCases(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	dir := filepath.Join(t.TempDir(), "iris-knn")
	out, err := exec.Command("/usr/bin/python3", filepath.Join(repoDir, "e2e", "testdata", "mlflow_iris_knn.py"), dir).Output()
	if err != nil {
		t.Fatalf("mlflow_iris_knn.py: %v", err)
	}
	var fixture struct {
		Data        [][]float64 `json:"data"`
		Predictions []float64   `json:"predictions"`
	}
	if err := json.Unmarshal(out, &fixture); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := s.cli("models", "push", dir, "--model", "iris-knn"); code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", code, out, errOut)
	}
	deploy(t, s, "iris-knn", "--model", "iris-knn:1")

	n := len(fixture.Data)
	index := make([]int, n)
	records := make([]map[string]float64, n)
	for i, row := range fixture.Data {
		index[i] = i
		records[i] = map[string]float64{"0": row[0], "1": row[1]}
	}
	split := map[string]any{"columns": []int{0, 1}, "index": index, "data": fixture.Data}
	splitNoIndex := map[string]any{"columns": []int{0, 1}, "data": fixture.Data}
	post := func(body, contentType string) (int, []byte, string) {
		resp, b := s.do(t, "POST", "/deployments/iris-knn/invocations", s.Token, strings.NewReader(body), contentType)
		return resp.StatusCode, b, resp.Header.Get("Content-Type")
	}
	const jsonType = "application/json"

	ok := []struct {
		from, name, body, contentType string
	}{
		{"test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_records_orientation", "records",
			string(mustJSON(map[string]any{"dataframe_records": records})), jsonType},
		{"test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_records_orientation", "records, charset",
			string(mustJSON(map[string]any{"dataframe_records": records})), jsonType + "; charset=UTF-8"},
		{"test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_split_orientation", "split with index",
			string(mustJSON(map[string]any{"dataframe_split": split})), jsonType},
		{"test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_split_orientation", "split with index, charset",
			string(mustJSON(map[string]any{"dataframe_split": split})), jsonType + "; charset=UTF-8"},
		{"test_parse_json_input_split_oriented (without index)", "split without index",
			string(mustJSON(map[string]any{"dataframe_split": splitNoIndex})), jsonType},
		{"test_scoring_server_successfully_evaluates_correct_tf_serving_sklearn", "instances",
			string(mustJSON(map[string]any{"instances": fixture.Data})), jsonType},
		{"test_scoring_server_successfully_evaluates_correct_tf_serving_keras_inputs (a tensor for sklearn)", "inputs",
			string(mustJSON(map[string]any{"inputs": fixture.Data})), jsonType},
		{"test_scoring_server_client (ScoringServerClient.invoke sends CSV)", "csv",
			csvOf(fixture.Data), "text/csv"},
	}
	for _, c := range ok {
		code, body, _ := post(c.body, c.contentType)
		if code != http.StatusOK {
			t.Errorf("%s (%s): %d %s", c.name, c.from, code, body)
			continue
		}
		// Beyond MLflow's status check, the answer is the model's own: assert_allclose as in test_scoring_server_client.
		sameFloats(t, c.name, predictionsOf(t, body), fixture.Predictions)
	}

	bad := []struct {
		from, name, body, contentType string
		status                        int
		message                       string
	}{
		{"test_scoring_server_responds_to_malformed_json_input_with_error_code_and_message", "malformed JSON",
			"this is,,,, not valid json", jsonType, 400, "JSON"},
		{"test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message", "a number",
			`1`, jsonType, 400, "dataframe_split"},
		{"test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message", "a string",
			`"1"`, jsonType, 400, "dataframe_split"},
		{"test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message", "a list",
			`[1]`, jsonType, 400, "dataframe_split"},
		{"test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message", "no input field",
			`{"not": "a serialized dataframe"}`, jsonType, 400, "dataframe_split"},
		{"test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message", "two input fields",
			`{"dataframe_records": [], "dataframe_split": {"data": []}}`, jsonType, 400, "send only one of"},
		{"test_scoring_server_responds_to_invalid_pandas_input_format_with_stacktrace_and_error_code", "split given records",
			string(mustJSON(map[string]any{"dataframe_split": records})), jsonType, 400, "dataframe_split"},
		{"test_scoring_server_responds_to_invalid_pandas_input_format_with_stacktrace_and_error_code", "records given split",
			string(mustJSON(map[string]any{"dataframe_records": split})), jsonType, 400, "dataframe_records"},
		{"test_scoring_server_responds_to_invalid_dataframe_with_stacktrace_and_error_code", "index and data of different lengths",
			`{"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}}`, jsonType, 400, "index"},
		{"test_scoring_server_responds_to_incompatible_inference_dataframe_with_stacktrace_and_error_code", "one column for a two-feature model",
			`{"dataframe_split": {"columns": [0], "index": [0,1,2,3,4,5,6,7,8,9], "data": [[0],[1],[2],[3],[4],[5],[6],[7],[8],[9]]}}`, jsonType, 400, ""},
		{"test_scoring_server_responds_to_invalid_csv_input_with_stacktrace_and_error_code", "empty CSV",
			"", "text/csv", 400, ""},
		{"test_scoring_server_responds_to_invalid_content_type_request_with_unsupported_content_type_code", "unsupported content type",
			string(mustJSON(split)), "not_a_supported_content_type", 415, "This predictor only supports the following content types"},
		{"test_scoring_server_responds_to_invalid_content_type_request_with_unrecognized_content_param", "unrecognized content type parameter",
			string(mustJSON(split)), jsonType + "; something=something", 415, "This predictor only supports the following content types"},
	}
	for _, c := range bad {
		code, body, ctype := post(c.body, c.contentType)
		var problem struct {
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if code != c.status || ctype != "application/problem+json" || json.Unmarshal(body, &problem) != nil || problem.Status != c.status {
			t.Errorf("%s (%s): %d %s %s, want %d as a problem", c.name, c.from, code, ctype, body, c.status)
			continue
		}
		if !strings.Contains(problem.Detail, c.message) || strings.Contains(string(body), "Traceback") {
			t.Errorf("%s (%s): detail %q, want one naming %q and no stack trace", c.name, c.from, problem.Detail, c.message)
		}
	}
}

// csvOf writes rows as pandas' DataFrame(X).to_csv(index=False) does: a header of the column names, 0 and 1.
func csvOf(rows [][]float64) string {
	var b strings.Builder
	b.WriteString("0,1\n")
	for _, r := range rows {
		b.WriteString(strings.Trim(string(mustJSON(r)), "[]") + "\n")
	}
	return b.String()
}

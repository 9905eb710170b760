package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPythonFastPathMatchesGeneralPath: through the binary, the Python harness's fast path (frames decoded into
// one 2-D block: a DataFrame over it, or the numpy block for a model declaring numpy input) answers every MLflow
// input form exactly as the general path does (the same model deployed with HARNESS_FAST_PATH=0), on a
// table of 30 floats, and on the churn example's mixed columns (floats and a string column). Registration
// records what predict() takes, and the per-call profile reaches Prometheus.
func TestPythonFastPathMatchesGeneralPath(t *testing.T) {
	s := startServer(t, t.TempDir())
	for _, m := range []struct{ name, input string }{{"wide-np", "numpy"}, {"wide-df", "dataframe"}} {
		dir := t.TempDir()
		if out, err := exec.Command("/usr/bin/python3", examplePath("..", "bench", "pywide", "make_model.py"), dir, "--input", m.input).CombinedOutput(); err != nil {
			t.Fatalf("make_model.py: %v\n%s", err, out)
		}
		if out, errOut, code := s.cli("models", "push", dir, "--model", m.name, "--metadata", dir+"/metadata.json"); code != 0 {
			t.Fatalf("push %s: %s %s", m.name, out, errOut)
		}
		_, body := s.do(t, "GET", "/api/v1/models/"+m.name+"/versions/1", s.Token, nil, "")
		var v struct {
			State        string `json:"state"`
			PredictInput string `json:"predict_input"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.State != "READY" || v.PredictInput != m.input {
			t.Fatalf("version of %s: %+v (%v), want READY with predict_input %q: %s", m.name, v, err, m.input, body)
		}
	}
	pushExamples(t, s)
	general := "HARNESS_FAST_PATH=0"
	deploy(t, s, "wide-np", "--model", "wide-np:1")
	deploy(t, s, "wide-df", "--model", "wide-df:1")
	deploy(t, s, "wide-general", "--model", "wide-df:1", "--env", general)
	deploy(t, s, "churn", "--model", "churn:1")
	deploy(t, s, "churn-general", "--model", "churn:1", "--env", general)

	wideCols := make([]string, 30)
	wideRows := make([][]any, 7)
	for j := range wideCols {
		wideCols[j] = fmt.Sprintf("f%02d", j)
	}
	for i := range wideRows {
		wideRows[i] = make([]any, len(wideCols))
		for j := range wideCols {
			wideRows[i][j] = math.Round(math.Sin(float64(i*31+j))*1e4*float64(j+1)) / 1e3
		}
	}
	churnCols, churnRowsData := churnRows(t, 9)

	for _, tc := range []struct {
		fast, general, numpy string
		cols                 []string
		rows                 [][]any
	}{
		{fast: "wide-df", general: "wide-general", numpy: "wide-np", cols: wideCols, rows: wideRows},
		{fast: "churn", general: "churn-general", cols: churnCols, rows: churnRowsData},
	} {
		for form, req := range mlflowForms(tc.cols, tc.rows) {
			answer := func(dep string) []byte {
				resp, body := s.do(t, "POST", "/deployments/"+dep+"/invocations", s.Token, bytes.NewReader(req.body), req.contentType)
				if resp.StatusCode != 200 {
					t.Fatalf("%s %s: HTTP %d %s", dep, form, resp.StatusCode, body)
				}
				return body
			}
			fast, gen := answer(tc.fast), answer(tc.general)
			if !bytes.Equal(fast, gen) {
				t.Errorf("%s: the fast path answered\n%s\nthe general path\n%s", form, fast, gen)
			}
			if tc.numpy == "" {
				continue
			}
			// The numpy block is the DataFrame's own values: the same probabilities, up to the last bits a BLAS
			// may sum in another order.
			np, df := predictions(t, answer(tc.numpy)), predictions(t, fast)
			if len(np) != len(tc.rows) || len(df) != len(tc.rows) {
				t.Fatalf("%s: %d and %d predictions for %d rows", form, len(np), len(df), len(tc.rows))
			}
			for i := range np {
				if math.Abs(np[i]-df[i]) > 1e-12 {
					t.Errorf("%s row %d: numpy in %v, DataFrame %v", form, i, np[i], df[i])
				}
			}
		}
	}

	_, metrics := s.do(t, "GET", "/metrics", s.Token, nil, "")
	for _, stage := range []string{"decode", "predict", "encode", "call", "transport"} {
		re := regexp.MustCompile(`slipway_replica_stage_seconds_count\{deployment="wide-np",stage="` + stage + `"\} (\d+)`)
		m := re.FindSubmatch(metrics)
		if n, _ := strconv.Atoi(string(m[min(1, len(m)-1)])); len(m) < 2 || n < 5 {
			t.Errorf("stage %s of wide-np: %q, want a count of at least the 5 forms sent", stage, m)
		}
	}
}

type mlflowRequest struct {
	contentType string
	body        []byte
}

// mlflowForms are the same rows in each MLflow input form: dataframe_split, dataframe_records, instances and
// inputs (records, and an object of columns), and CSV.
func mlflowForms(cols []string, rows [][]any) map[string]mlflowRequest {
	records := make([]map[string]any, len(rows))
	columns := map[string][]any{}
	var csv strings.Builder
	csv.WriteString(strings.Join(cols, ",") + "\n")
	for i, r := range rows {
		records[i] = map[string]any{}
		fields := make([]string, len(r))
		for j, c := range cols {
			records[i][c] = r[j]
			columns[c] = append(columns[c], r[j])
			fields[j] = fmt.Sprint(r[j])
		}
		csv.WriteString(strings.Join(fields, ",") + "\n")
	}
	js := func(v any) mlflowRequest { return mlflowRequest{"application/json", mustJSON(v)} }
	return map[string]mlflowRequest{
		"dataframe_split":   js(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}}),
		"dataframe_records": js(map[string]any{"dataframe_records": records}),
		"instances":         js(map[string]any{"instances": records}),
		"inputs":            js(map[string]any{"inputs": columns}),
		"csv":               {"text/csv", []byte(csv.String())},
	}
}

// predictions reads {"predictions": [p, ...]} of a model answering one number per row.
func predictions(t *testing.T, body []byte) []float64 {
	t.Helper()
	var out struct {
		Predictions []float64 `json:"predictions"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("predictions: %v: %s", err, body)
	}
	return out.Predictions
}

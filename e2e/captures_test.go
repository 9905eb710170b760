package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/slipway-ml/slipway/client"
)

// capturesParquetRow is a row of the ONNX example's Parquet capture export.
type capturesParquetRow struct {
	Time          time.Time `parquet:"time,timestamp(millisecond)"`
	RequestID     string    `parquet:"request_id"`
	Version       int64     `parquet:"version"`
	Row           int64     `parquet:"row"`
	Features      []float64 `parquet:"features"`
	Probabilities []float64 `parquet:"output.probabilities"`
	Label         *string   `parquet:"label,optional"`
}

// Captured predictions of the ONNX example, served by two versions (a 50% canary), come back complete and in
// order through `slipway captures export`, each row with its inputs, outputs, version and the ground truth
// sent for it; --version keeps one version's rows, --format csv writes a table.
func TestCapturesExport(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx v2: %s %s", out, errOut)
	}
	deploy(t, s, "onnx-api", "--model", "churn-onnx:1", "--canary-version", "2", "--canary-weight", "50")

	_, rows := churnRows(t, 120)
	type sent struct {
		id      string
		version int
		ages    []float64
	}
	var reqs []sent
	for i := 0; i < len(rows); i += 2 {
		var data []float64
		for _, r := range rows[i : i+2] {
			data = append(data, r[0].(float64), r[1].(float64), r[2].(float64), r[4].(float64)) // age, tenure, charges, support calls
		}
		id := fmt.Sprintf("req-%03d", i/2)
		body := mustJSON(map[string]any{"id": id, "inputs": []map[string]any{{"name": "features", "shape": []int{2, 4}, "datatype": "FP32", "data": data}}})
		resp, out := s.do(t, "POST", "/v2/models/onnx-api/infer", s.Token, bytes.NewReader(body), "application/json")
		if resp.StatusCode != 200 {
			t.Fatalf("infer: %d %s", resp.StatusCode, out)
		}
		v, _ := strconv.Atoi(resp.Header.Get("X-Slipway-Model-Version"))
		reqs = append(reqs, sent{id: id, version: v, ages: []float64{data[0], data[4]}})
	}
	byVersion := map[int]int{}
	for _, r := range reqs {
		byVersion[r.version] += 2
	}
	if byVersion[1] == 0 || byVersion[2] == 0 {
		t.Fatalf("rows by version %v: the canary should have taken some", byVersion)
	}
	ctx := context.Background()
	waitFor(t, "every capture to be written", 30*time.Second, func() bool {
		var buf bytes.Buffer
		if _, err := s.Client().ExportCaptures(ctx, "onnx-api", client.CaptureExport{}, &buf, nil); err != nil {
			t.Fatal(err)
		}
		return bytes.Count(buf.Bytes(), []byte("\n")) == 2*len(reqs)
	})
	// Ground truth for the second row of every third request.
	var fb []client.Feedback
	for i := 0; i < len(reqs); i += 3 {
		row := 1
		fb = append(fb, client.Feedback{RequestID: reqs[i].id, Row: &row, Label: int64(i % 2)})
	}
	if res, err := s.Client().SendFeedback(ctx, "onnx-api", fb); err != nil || res.UnknownCount != 0 {
		t.Fatalf("feedback: %+v %v", res, err) // unknown: the captures were not written yet
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "captures.jsonl")
	out, errOut, code := s.cli("captures", "export", "onnx-api", "--from", "1h", "--file", file)
	if code != 0 || !strings.Contains(errOut, "Exported") {
		t.Fatalf("captures export: exit %d\n%s\n%s", code, out, errOut)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type line struct {
		Time      time.Time      `json:"time"`
		RequestID string         `json:"request_id"`
		Version   int            `json:"version"`
		Row       int            `json:"row"`
		Inputs    map[string]any `json:"inputs"`
		Outputs   map[string]any `json:"outputs"`
		Label     *string        `json:"label"`
	}
	var lines []line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		lines = append(lines, l)
	}
	if len(lines) != 2*len(reqs) {
		t.Fatalf("%d rows exported for %d requests of 2 rows", len(lines), len(reqs))
	}
	for i, l := range lines {
		r := reqs[i/2] // the requests were sent one after the other: the export's time order is theirs
		if l.RequestID != r.id || l.Row != i%2 || l.Version != r.version || i > 0 && l.Time.Before(lines[i-1].Time) {
			t.Fatalf("row %d: %+v, want request %s row %d version %d, in time order", i, l, r.id, i%2, r.version)
		}
		features, _ := l.Inputs["features"].([]any)
		if len(features) != 4 || features[0] != r.ages[i%2] || l.Outputs["label"] == nil || l.Outputs["probabilities"] == nil {
			t.Fatalf("row %d values: %+v", i, l)
		}
		if want := (i/2)%3 == 0 && i%2 == 1; (l.Label != nil) != want || want && *l.Label != strconv.Itoa((i/2)%2) {
			t.Fatalf("row %d ground truth %v, want %v", i, l.Label, want)
		}
	}

	csvFile := filepath.Join(dir, "v2.csv")
	if out, errOut, code := s.cli("captures", "export", "onnx-api", "--version", "2", "--format", "csv", "--file", csvFile); code != 0 {
		t.Fatalf("captures export csv: exit %d\n%s\n%s", code, out, errOut)
	}
	b, _ := os.ReadFile(csvFile)
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) != byVersion[2]+1 || strings.Join(recs[0], ",") != "time,request_id,version,row,features,output.probabilities,output.label,label,value" {
		t.Fatalf("csv of version 2 (%d rows expected): %v\n%s", byVersion[2], err, b)
	}
	for _, r := range recs[1:] {
		if r[2] != "2" {
			t.Fatalf("version filter: %v", r)
		}
	}

	// Parquet, through the CLI: the same rows in the same order, typed, read back with the Go library (Debian
	// has no pyarrow for pandas to read it in CI).
	pqFile := filepath.Join(dir, "captures.parquet")
	if out, errOut, code := s.cli("captures", "export", "onnx-api", "--from", "1h", "--format", "parquet", "--file", pqFile); code != 0 {
		t.Fatalf("captures export parquet: exit %d\n%s\n%s", code, out, errOut)
	}
	pqRows, err := parquet.ReadFile[capturesParquetRow](pqFile)
	if err != nil || len(pqRows) != len(lines) {
		t.Fatalf("parquet export: %d rows (want %d), %v", len(pqRows), len(lines), err)
	}
	for i, r := range pqRows {
		l := lines[i]
		features, _ := l.Inputs["features"].([]any)
		if r.RequestID != l.RequestID || r.Row != int64(l.Row) || r.Version != int64(l.Version) || !r.Time.Equal(l.Time) ||
			len(r.Features) != 4 || r.Features[0] != features[0] || len(r.Probabilities) != 2 || (r.Label == nil) != (l.Label == nil) ||
			r.Label != nil && *r.Label != *l.Label {
			t.Fatalf("parquet row %d: %+v, jsonl %+v", i, r, l)
		}
	}
	if resp, _ := s.do(t, "GET", "/api/v1/deployments/onnx-api/captures?format=parquet&version=2", s.Token, nil, ""); resp.StatusCode != 200 ||
		resp.Header.Get("Content-Type") != "application/vnd.apache.parquet" {
		t.Errorf("parquet over HTTP: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	for _, tc := range []struct {
		path string
		code int
	}{{"/api/v1/deployments/onnx-api/captures?format=xml", 400}, {"/api/v1/deployments/onnx-api/captures?version=x", 400},
		{"/api/v1/deployments/onnx-api/captures?from=2h&to=3h", 400}, {"/api/v1/deployments/nope/captures", 404}} {
		resp, body := s.do(t, "GET", tc.path, s.Token, nil, "")
		if resp.StatusCode != tc.code || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
			t.Errorf("%s: %d %s, want a %d problem", tc.path, resp.StatusCode, body, tc.code)
		}
	}
	if _, errOut, code := s.cli("captures", "export", "onnx-api", "--format", "xml", "--file", filepath.Join(dir, "x")); code == 0 || !strings.Contains(errOut, "jsonl, csv or parquet") {
		t.Errorf("export --format xml: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Errorf("a refused export left a file: %v", err)
	}
}

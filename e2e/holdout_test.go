package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/slipway-ml/slipway/client"
)

// be64 reads 8 bytes big-endian.
func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

// heldOut is the holdout rule as documented: the first 8 bytes of the request id's SHA-256 below share × 2^64.
func heldOut(share float64, id string) bool {
	sum := sha256.Sum256([]byte(id))
	return float64(be64(sum[:8])) < share*math.Exp2(64)
}

// A deployment with a holdout marks exactly the requests the documented hash picks, in the response and in
// the capture; performance is reported apart for the holdout and the treated traffic. Per-version
// monitoring (?version=) separates the live version from its canary, and neither the canary's nor the
// shadow's traffic mixes into the live version's drift or figures.
func TestHoldoutAndPerVersionMonitoring(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	pushChurnV2(t, s)
	if out, errOut, code := s.cli("models", "push", churnVariant(t, 51), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push v3: %s %s", out, errOut)
	}
	const share = 0.2
	deploy(t, s, "churn-api", "--model", "churn:1", "--canary-version", "2", "--canary-weight", "30",
		"--shadow-version", "3", "--holdout", strconv.FormatFloat(share, 'g', -1, 64))
	if out, _, _ := s.cli("deployments", "get", "churn-api"); !bytes.Contains([]byte(out), []byte("Holdout:")) {
		t.Fatalf("deployments get does not show the holdout:\n%s", out)
	}

	from := time.Now().Add(-time.Second)
	cols, rows := churnRows(t, 300)
	const perRequest = 3
	held := map[string]bool{}
	requestsOf := map[int]int{} // by version
	for i := 0; i*perRequest < len(rows); i++ {
		id := fmt.Sprintf("holdout-%03d", i)
		body := mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows[i*perRequest : (i+1)*perRequest]}})
		req, _ := http.NewRequest("POST", s.URL+"/deployments/churn-api/invocations", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %s: %d %s", id, resp.StatusCode, out)
		}
		want := heldOut(share, id)
		if got := resp.Header.Get("Slipway-Holdout") == "true"; got != want {
			t.Fatalf("request %s: Slipway-Holdout %q, want held out %v", id, resp.Header.Get("Slipway-Holdout"), want)
		}
		held[id] = want
		v, _ := strconv.Atoi(resp.Header.Get("X-Slipway-Model-Version"))
		requestsOf[v]++
	}
	requests := len(held)
	nHeld := 0
	for _, h := range held {
		if h {
			nHeld++
		}
	}
	// The ids are fixed, so the count is too; it is also where a share of 0.2 of 100 requests may be
	// (mean 20, standard deviation 4: within 4 deviations).
	if nHeld < 4 || nHeld > 36 || requestsOf[1] == 0 || requestsOf[2] == 0 || requestsOf[3] != 0 {
		t.Fatalf("%d of %d held out; requests by version %v", nHeld, requests, requestsOf)
	}
	// Every copy the shadow got has been answered or dropped (it is saturated when copies arrive faster than
	// it answers): its traffic has had every chance to mix in.
	waitFor(t, "the shadow's copies", 60*time.Second, func() bool {
		_, out := s.do(t, "GET", "/metrics", s.Token, nil, "")
		n := 0
		for _, outcome := range []string{"ok", "error", "dropped"} {
			re := regexp.MustCompile(fmt.Sprintf(`slipway_shadow_requests_total\{deployment="churn-api",outcome="%s",version="3"\} (\d+)`, outcome))
			if m := re.FindSubmatch(out); m != nil {
				v, _ := strconv.Atoi(string(m[1]))
				n += v
			}
		}
		return n == requests
	})
	to := time.Now().Add(time.Second)
	ctx := context.Background()
	tr := client.TimeRange{From: from, To: to}

	// Every captured row, with its prediction: the ground truth agrees with the held-out rows' predictions
	// and contradicts the treated rows'.
	var exported bytes.Buffer
	waitFor(t, "every capture", 30*time.Second, func() bool {
		exported.Reset()
		if _, err := s.Client().ExportCaptures(ctx, "churn-api", client.CaptureExport{TimeRange: tr, Format: "jsonl"}, &exported, nil); err != nil {
			t.Fatal(err)
		}
		return bytes.Count(exported.Bytes(), []byte("\n")) == len(rows)
	})
	rowsOf := map[int]int{}
	heldRows := 0
	var fb []client.Feedback
	sc := bufio.NewScanner(&exported)
	for sc.Scan() {
		var line struct {
			RequestID string             `json:"request_id"`
			Version   int                `json:"version"`
			Row       int                `json:"row"`
			Outputs   map[string]float64 `json:"outputs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		rowsOf[line.Version]++
		label := int64(line.Outputs["prediction"])
		if held[line.RequestID] {
			heldRows++
		} else {
			label = 1 - label
		}
		row := line.Row
		fb = append(fb, client.Feedback{RequestID: line.RequestID, Row: &row, Label: label})
	}
	if rowsOf[3] != 0 || rowsOf[1] != perRequest*requestsOf[1] || rowsOf[2] != perRequest*requestsOf[2] {
		t.Fatalf("captured rows by version %v for requests %v: the shadow's answers are never captured", rowsOf, requestsOf)
	}
	if res, err := s.Client().SendFeedback(ctx, "churn-api", fb); err != nil || res.UnknownCount != 0 {
		t.Fatalf("feedback: %+v %v", res, err)
	}

	perf, err := s.Client().PerformanceOfVersion(ctx, "churn-api", 0, tr, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var all, hold, treated int
	for _, p := range perf {
		all += p.Labelled
		if p.Holdout == nil || p.Treated == nil {
			t.Fatalf("a window without its split: %+v", p)
		}
		hold += p.Holdout.Labelled
		treated += p.Treated.Labelled
		if p.Holdout.Classification.Accuracy != 1 || p.Treated.Classification.Accuracy != 0 {
			t.Fatalf("holdout accuracy %v, treated %v: want 1 and 0", p.Holdout.Classification.Accuracy, p.Treated.Classification.Accuracy)
		}
	}
	if all != len(rows) || hold != heldRows || treated != len(rows)-heldRows {
		t.Fatalf("labelled %d (holdout %d, treated %d), want %d (%d, %d)", all, hold, treated, len(rows), heldRows, len(rows)-heldRows)
	}

	// ?version= keeps one version's traffic.
	for v := 1; v <= 3; v++ {
		perf, err := s.Client().PerformanceOfVersion(ctx, "churn-api", v, tr, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range perf {
			n += p.Labelled
		}
		if n != rowsOf[v] {
			t.Errorf("performance?version=%d: %d labelled rows, want %d", v, n, rowsOf[v])
		}
		m, err := s.Client().MetricsOfVersion(ctx, "churn-api", v)
		if err != nil {
			t.Fatal(err)
		}
		if m.Version == nil || m.Version.Requests != int64(requestsOf[v]) || len(m.Points) != 0 {
			t.Errorf("metrics?version=%d: %+v, want %d requests", v, m.Version, requestsOf[v])
		}
		if v == 3 {
			continue // the shadow answers no request: its drift has no rows
		}
		d, err := s.Client().DriftOfVersion(ctx, "churn-api", v, tr)
		if err != nil {
			t.Fatalf("drift?version=%d: %v", v, err)
		}
		if d.Version != v || d.Rows != int64(rowsOf[v]) {
			t.Errorf("drift?version=%d: version %d, %d rows, want %d", v, d.Version, d.Rows, rowsOf[v])
		}
	}
	// The live version's drift (no version given) is version 1's rows alone.
	d, err := s.Client().Drift(ctx, "churn-api", tr)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 1 || d.Rows != int64(rowsOf[1]) {
		t.Fatalf("the live version's drift: version %d, %d rows, want version 1 with %d (canary rows %d, shadow copies %d)",
			d.Version, d.Rows, rowsOf[1], rowsOf[2], perRequest*requests)
	}
	t.Logf("%d requests, %d held out (%d rows); by version %v", requests, nHeld, heldRows, requestsOf)

	// Removing the holdout: no request is marked any more.
	if out, errOut, code := s.cli("deployments", "update", "churn-api", "--holdout", "0"); code != 0 {
		t.Fatalf("update: %s %s", out, errOut)
	}
	for i := 0; i < 20; i++ {
		resp, _ := invokeChurn(t, s, "churn-api", 1)
		if resp.Header.Get("Slipway-Holdout") != "" {
			t.Fatalf("a request held out after the holdout was removed")
		}
	}
	resp, body := s.do(t, "PATCH", "/api/v1/deployments/churn-api", s.Token, bytes.NewReader(mustJSON(map[string]any{"holdout": map[string]any{"share": 0.9}})), "application/json")
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("holdout share must be")) {
		t.Fatalf("a holdout of 0.9: %d %s", resp.StatusCode, body)
	}
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// churnReplayVariant is the scikit-learn example whose predicted class flips for the customers aged at least
// minAge and whose probability is 0.8 times the model's for them: it disagrees on a known set of rows and
// its probabilities differ by a known amount.
func churnReplayVariant(t *testing.T, minAge float64) string {
	t.Helper()
	return churnPatched(t, fmt.Sprintf(`

_example_predict = predict


def predict(data, model=None):
    out = _example_predict(data, model)
    ages = _frame(data)["age"].tolist()
    out["prediction"] = [1 - p if a >= %[1]g else p for p, a in zip(out["prediction"], ages)]
    out["probability"] = [0.8 * p if a >= %[1]g else p for p, a in zip(out["probability"], ages)]
    return out
`, minAge))
}

// serverChildren is the number of processes whose parent is the server (its replicas).
func serverChildren(t *testing.T, s *server) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(s.cmd.Process.Pid) {
			n++
		}
	}
	return n
}

func waitReplay(t *testing.T, s *server, deployment, id string) *client.Replay {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := s.Client().WaitReplay(ctx, deployment, id, nil, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("wait for replay %s: %v (last %+v)", id, err, r)
	}
	return r
}

// sameComparison fails unless two reports agree on every figure but the latencies (measured, not counted).
func sameComparison(t *testing.T, what string, got, want *slipway.ShadowReport) {
	t.Helper()
	g, w := *got, *want
	g.LatencyP99MS, w.LatencyP99MS = slipway.ShadowLatency{}, slipway.ShadowLatency{}
	g.From, g.To, w.From, w.To = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("%s:\n got  %s\n want %s", what, gb, wb)
	}
}

// A replay of the traffic a comparing shadow saw gives the shadow's figures; its figures are what the
// captured pairs give when computed directly; it starts and stops its own replicas and never the live ones;
// a restart of the server while it runs resumes it; bad requests are refused with problem+json.
func TestReplayAgreesWithShadowAndCaptures(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	const minAge = 51
	if out, errOut, code := s.cli("models", "push", churnReplayVariant(t, minAge), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push the variant: %s %s", out, errOut)
	}
	deploy(t, s, "churn-api", "--model", "churn:1", "--shadow-version", "2", "--shadow-compare")

	from := time.Now().Add(-time.Second)
	cols, rows := churnRows(t, 160)
	const batch = 4
	requests := 0
	for i := 0; i < len(rows); i += batch {
		chunk := rows[i : i+batch]
		path, body := "/deployments/churn-api/invocations", mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": chunk}})
		if i%(4*batch) == 0 { // every fourth request through the OCI predict path (JSON answers)
			path, body = "/deployments/churn-api/predict", mustJSON(map[string]any{"columns": cols, "data": chunk})
		}
		resp, out := s.do(t, "POST", path, s.Token, bytes.NewReader(body), "application/json")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, out)
		}
		requests++
		waitFor(t, "the shadow's answer", 60*time.Second, func() bool { return shadowAnswered(t, s, "churn-api", 2) == requests })
	}
	to := time.Now().Add(time.Second)
	ctx := context.Background()
	var shadow *client.ShadowReport
	waitFor(t, "every request's pair to be stored", 60*time.Second, func() bool {
		var err error
		if shadow, err = s.Client().ShadowReport(ctx, "churn-api", client.TimeRange{From: from, To: to}); err != nil {
			t.Fatal(err)
		}
		return shadow.Requests == int64(requests)
	})

	// The captured pairs, read back through the export, computed directly: the candidate flips the class and
	// scales the probability by 0.8 of the customers aged at least minAge.
	var exported bytes.Buffer
	waitFor(t, "every request's capture", 30*time.Second, func() bool {
		exported.Reset()
		if _, err := s.Client().ExportCaptures(ctx, "churn-api", client.CaptureExport{TimeRange: client.TimeRange{From: from, To: to}, Format: "jsonl"}, &exported, nil); err != nil {
			t.Fatal(err)
		}
		return bytes.Count(exported.Bytes(), []byte("\n")) == len(rows)
	})
	var agreeRows, capturedRows int
	var diffSum, diffMax float64
	sc := bufio.NewScanner(&exported)
	for sc.Scan() {
		var line struct {
			Inputs  map[string]any     `json:"inputs"`
			Outputs map[string]float64 `json:"outputs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("export line %s: %v", sc.Text(), err)
		}
		capturedRows++
		p := line.Outputs["probability"]
		if line.Inputs["age"].(float64) >= minAge {
			d := math.Abs(p - 0.8*p)
			diffSum += d
			diffMax = math.Max(diffMax, d)
		} else {
			agreeRows++
		}
	}
	childrenBefore := serverChildren(t, s)
	d, err := s.Client().GetDeployment(ctx, "churn-api")
	if err != nil {
		t.Fatal(err)
	}

	out, errOut, code := s.cli("replays", "start", "churn-api", "--version", "2", "--from", from.Format(time.RFC3339Nano),
		"--to", to.Format(time.RFC3339Nano), "--wait")
	if code != 0 || !strings.Contains(out, "SUCCEEDED") || !strings.Contains(out, "Agreement by age") {
		t.Fatalf("replays start --wait: exit %d\n%s\n%s", code, out, errOut)
	}
	list, err := s.Client().ListReplays(ctx, "churn-api")
	if err != nil || len(list) != 1 {
		t.Fatalf("replays: %v %v", list, err)
	}
	rp := list[0]
	if rp.State != slipway.ReplaySucceeded || rp.Sent != int64(requests) || rp.Total != int64(requests) || rp.Report == nil {
		t.Fatalf("replay %+v", rp)
	}
	rep := rp.Report
	sameComparison(t, "the replay's report against the shadow's on the same traffic", rep, shadow)
	if rep.Version != 2 || rep.LiveVersion != 1 || rep.Compared != int64(capturedRows) || rep.Errors != (slipway.ShadowSides{}) {
		t.Fatalf("replay report %+v", rep)
	}
	if want := float64(agreeRows) / float64(capturedRows); *rep.Agreement != want {
		t.Fatalf("agreement %v, want %d/%d from the captures", *rep.Agreement, agreeRows, capturedRows)
	}
	// The candidate's probabilities are computed in Python: the differences agree to rounding.
	if want := diffSum / float64(capturedRows); math.Abs(*rep.MeanAbsDiff-want) > 1e-12 || math.Abs(*rep.MaxAbsDiff-diffMax) > 1e-12 {
		t.Fatalf("diffs mean %v max %v, want %v %v from the captures", *rep.MeanAbsDiff, *rep.MaxAbsDiff, want, diffMax)
	}
	if rep.LatencyP99MS.Live == nil || *rep.LatencyP99MS.Live <= 0 || rep.LatencyP99MS.Shadow == nil || *rep.LatencyP99MS.Shadow <= 0 {
		t.Fatalf("latencies %+v", rep.LatencyP99MS)
	}
	t.Logf("replay of %d requests: agreement %.4f, mean abs diff %.5f, max %.5f, p99 live %.1f ms candidate %.1f ms",
		rp.Sent, *rep.Agreement, *rep.MeanAbsDiff, *rep.MaxAbsDiff, *rep.LatencyP99MS.Live, *rep.LatencyP99MS.Shadow)

	// The replay stopped its replica; the live ones are the same processes.
	waitFor(t, "the replay's replica to exit", 30*time.Second, func() bool { return serverChildren(t, s) == childrenBefore })
	after, err := s.Client().GetDeployment(ctx, "churn-api")
	if err != nil {
		t.Fatal(err)
	}
	pids := func(d *slipway.Deployment) string {
		var p []string
		for _, r := range d.ReplicaStatus {
			p = append(p, fmt.Sprintf("%d:%d", r.Version, r.PID))
		}
		return strings.Join(p, ",")
	}
	if pids(after) != pids(d) {
		t.Fatalf("the live replicas changed: %s, were %s", pids(after), pids(d))
	}

	// The deployment's page shows the replay and its report.
	b := newBrowser(t)
	b.do("open the UI", chromedp.Navigate(s.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	b.do("sign in", chromedp.SetValue(chromedp.ID("token"), s.Token), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
	b.waitJS("the deployments list", `document.body.innerText.includes("churn-api")`)
	b.do("open the deployment", chromedp.Click(chromedp.CSS(`a[href="/ui/deployments/churn-api"]`)))
	b.waitJS("the replay", `document.querySelector("#replays")?.innerText.includes("Agreement by age")`)
	if got := b.text("#replays"); !strings.Contains(got, "Replayed version 2 against the captured answers of version 1") ||
		!strings.Contains(got, fmt.Sprintf("%d of %d requests", requests, requests)) || !strings.Contains(got, "SUCCEEDED") {
		t.Fatalf("the deployment page's replays:\n%s", got)
	}
	b.checkNoErrors()

	// Bad requests.
	bad := []struct {
		name   string
		body   map[string]any
		status int
		says   string
	}{
		{"unknown version", map[string]any{"version": 9, "from": from, "to": to}, 400, "has no version 9"},
		{"empty window", map[string]any{"version": 2, "from": from.Add(-2 * time.Hour), "to": from.Add(-time.Hour)}, 400, "no captured request"},
		{"from after to", map[string]any{"version": 2, "from": to, "to": from}, 400, "from must be before to"},
		{"huge limit", map[string]any{"version": 2, "from": from, "to": to, "limit": 50_000_000}, 400, "limit: 1 to 1000000"},
		{"no window", map[string]any{"version": 2}, 400, "give the window"},
	}
	for _, b := range bad {
		resp, body := s.do(t, "POST", "/api/v1/deployments/churn-api/replays", s.Token, bytes.NewReader(mustJSON(b.body)), "application/json")
		if resp.StatusCode != b.status || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") || !strings.Contains(string(body), b.says) {
			t.Errorf("%s: %d %s %s", b.name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	resp, body := s.do(t, "POST", "/api/v1/deployments/nope/replays", s.Token, bytes.NewReader(mustJSON(map[string]any{"version": 2, "from": from, "to": to})), "application/json")
	if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
		t.Errorf("replay of a missing deployment: %d %s", resp.StatusCode, body)
	}
	resp, body = s.do(t, "POST", "/api/v1/deployments/churn-api/replays/"+rp.ID+"/cancel", s.Token, nil, "")
	if resp.StatusCode != 409 || !strings.Contains(string(body), "already SUCCEEDED") {
		t.Errorf("cancel of an ended replay: %d %s", resp.StatusCode, body)
	}

	// Canceled while its replica starts: it ends CANCELED and its replica stops.
	c2, err := s.Client().StartReplay(ctx, "churn-api", client.ReplaySpec{Version: 2, From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := s.cli("replays", "cancel", "churn-api", c2.ID); code != 0 || !strings.Contains(out, "CANCELED") {
		t.Fatalf("replays cancel: %d %s %s", code, out, errOut)
	}
	waitFor(t, "the canceled replay's replica to exit", 30*time.Second, func() bool { return serverChildren(t, s) == childrenBefore })

	// Interrupted by a restart: the next server starts it again and it ends with the same figures.
	r3, err := s.Client().StartReplay(ctx, "churn-api", client.ReplaySpec{Version: 2, From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s2 := startServer(t, s.dataDir)
	resumed := waitReplay(t, s2, "churn-api", r3.ID)
	if resumed.State != slipway.ReplaySucceeded || resumed.Attempt < 2 || !strings.Contains(resumed.Reason, "resumed") || resumed.Sent != int64(requests) {
		t.Fatalf("the interrupted replay: %+v", resumed)
	}
	sameComparison(t, "the resumed replay's report", resumed.Report, shadow)
	out, _, code = s2.cli("replays", "list", "churn-api")
	if code != 0 || strings.Count(out, "SUCCEEDED") != 2 || !strings.Contains(out, "CANCELED") {
		t.Fatalf("replays list:\n%s", out)
	}
}

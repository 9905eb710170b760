package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// churnVariant copies the scikit-learn example into a folder whose predict() flips the predicted class of
// the customers aged at least minAge (the probabilities stay the model's): a real Python model that disagrees
// with the example on a known set of rows.
func churnVariant(t *testing.T, minAge float64) string {
	t.Helper()
	return churnPatched(t, fmt.Sprintf(`

_example_predict = predict


def predict(data, model=None):
    out = _example_predict(data, model)
    ages = _frame(data)["age"].tolist()
    out["prediction"] = [1 - p if a >= %g else p for p, a in zip(out["prediction"], ages)]
    return out
`, minAge))
}

// shadowAnswered is how many copies the shadow of version answered (ok or error), from /metrics.
func shadowAnswered(t *testing.T, s *server, deployment string, version int) int {
	_, out := s.do(t, "GET", "/metrics", s.Token, nil, "")
	n := 0
	for _, outcome := range []string{"ok", "error"} {
		re := regexp.MustCompile(fmt.Sprintf(`slipway_shadow_requests_total\{deployment="%s",outcome="%s",version="%d"\} (\d+)`, deployment, outcome, version))
		if m := re.FindSubmatch(out); m != nil {
			v, _ := strconv.Atoi(string(m[1]))
			n += v
		}
	}
	return n
}

// A comparing shadow's answers are kept next to the live ones, through the tensor (MLflow) and the JSON (OCI
// predict) paths; the report equals what the rows sent imply: the variant disagrees exactly on the customers
// aged at least minAge, its probabilities are the model's, and the age slice shows where.
func TestShadowComparison(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	const minAge = 51
	if out, errOut, code := s.cli("models", "push", churnVariant(t, minAge), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push the variant: %s %s", out, errOut)
	}
	deploy(t, s, "churn-api", "--model", "churn:1", "--shadow-version", "2", "--shadow-compare")
	if out, _, _ := s.cli("deployments", "get", "churn-api"); !strings.Contains(out, "its answers are compared") {
		t.Fatalf("deployments get does not say the shadow compares:\n%s", out)
	}

	cols, rows := churnRows(t, 200)
	const batch = 5
	var requests, wantRows, wantAgree int
	for i := 0; i < len(rows); i += batch {
		chunk := rows[i : i+batch]
		path, body := "/deployments/churn-api/invocations", mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": chunk}})
		if i%20 == 0 { // every fourth request through the OCI predict path (JSON answers)
			path, body = "/deployments/churn-api/predict", mustJSON(map[string]any{"columns": cols, "data": chunk})
		}
		resp, out := s.do(t, "POST", path, s.Token, bytes.NewReader(body), "application/json")
		if resp.StatusCode != 200 || resp.Header.Get("X-Slipway-Model-Version") != "1" {
			t.Fatalf("%s: %d version %q %s", path, resp.StatusCode, resp.Header.Get("X-Slipway-Model-Version"), out)
		}
		requests++
		// A copy beyond the shadow's in-flight bound is dropped (by design: the shadow never slows the live
		// path), and so is its comparison: wait for each copy's answer, so that every request is compared.
		waitFor(t, "the shadow's answer", 60*time.Second, func() bool { return shadowAnswered(t, s, "churn-api", 2) == requests })
		for _, r := range chunk {
			wantRows++
			if r[0].(float64) < minAge {
				wantAgree++
			}
		}
	}

	ctx := context.Background()
	var rep *client.ShadowReport
	waitFor(t, "every request's pair to be stored", 60*time.Second, func() bool {
		var err error
		rep, err = s.Client().ShadowReport(ctx, "churn-api", client.TimeRange{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests > int64(requests) {
			t.Fatalf("%d pairs for %d requests", rep.Requests, requests)
		}
		return rep.Requests == int64(requests)
	})
	if rep.Version != 2 || rep.LiveVersion != 1 || rep.Compared != int64(wantRows) || rep.Errors != (slipway.ShadowSides{}) {
		t.Fatalf("report %+v: want %d rows compared, versions 2 and 1, no errors", rep, wantRows)
	}
	if want := float64(wantAgree) / float64(wantRows); rep.Agreement == nil || math.Abs(*rep.Agreement-want) > 1e-12 {
		t.Fatalf("agreement %v, want %d/%d", rep.Agreement, wantAgree, wantRows)
	}
	if rep.MeanAbsDiff == nil || *rep.MeanAbsDiff != 0 || *rep.MaxAbsDiff != 0 {
		t.Fatalf("the probabilities are the same model's: diffs %v %v", rep.MeanAbsDiff, rep.MaxAbsDiff)
	}
	if rep.LatencyP99MS.Live == nil || rep.LatencyP99MS.Shadow == nil {
		t.Fatalf("latencies %+v", rep.LatencyP99MS)
	}
	if len(rep.ByFeature) == 0 || rep.ByFeature[0].Feature != "age" {
		t.Fatalf("the disagreement is by age, first slice: %+v", rep.ByFeature)
	}
	for _, b := range rep.ByFeature[0].Bins {
		// A bin wholly at or above minAge disagrees everywhere; one wholly below agrees everywhere.
		if b.Low >= minAge && *b.Agreement != 0 || b.High < minAge && *b.Agreement != 1 {
			t.Errorf("age bin %+v", b)
		}
	}
	t.Logf("shadow report: %d requests, agreement %.3f, slices %+v", rep.Requests, *rep.Agreement, rep.ByFeature[0])

	out, errOut, code := s.cli("deployments", "shadow", "churn-api")
	if code != 0 || !regexp.MustCompile(fmt.Sprintf(`agreement\s+%.1f%%`, 100*float64(wantAgree)/float64(wantRows))).MatchString(out) ||
		!strings.Contains(out, "Agreement by age") {
		t.Fatalf("slipway deployments shadow: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = s.cli("deployments", "shadow", "churn-api", "-o", "json")
	var fromCLI client.ShadowReport
	if code != 0 || json.Unmarshal([]byte(out), &fromCLI) != nil || fromCLI.Requests != rep.Requests {
		t.Fatalf("deployments shadow -o json: %s", out)
	}

	// The deployment's page shows the comparison.
	b := newBrowser(t)
	b.do("open the UI", chromedp.Navigate(s.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	b.do("sign in", chromedp.SetValue(chromedp.ID("token"), s.Token), chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)))
	b.waitJS("the deployments list", `document.body.innerText.includes("churn-api")`)
	b.do("open the deployment", chromedp.Click(chromedp.CSS(`a[href="/ui/deployments/churn-api"]`)))
	b.waitJS("the shadow comparison", `document.querySelector("#shadow-comparison")?.innerText.includes("Agreement by age")`)
	if got := b.text("#shadow-comparison"); !strings.Contains(got, fmt.Sprintf("%g%%", math.Round(1000*float64(wantAgree)/float64(wantRows))/10)) ||
		!strings.Contains(got, "Shadow version 2 against live version 1") {
		t.Fatalf("the deployment page's shadow comparison:\n%s", got)
	}
	b.checkNoErrors()

	// Without compare, the shadow's answers are dropped again: no new pairs.
	if out, errOut, code := s.cli("deployments", "update", "churn-api", "--shadow-compare=false"); code != 0 {
		t.Fatalf("update: %s %s", out, errOut)
	}
	invokeChurn(t, s, "churn-api", 3)
	time.Sleep(time.Second) // the writer's interval is 200 ms: a pair would be stored by now
	if again, err := s.Client().ShadowReport(ctx, "churn-api", client.TimeRange{}); err != nil || again.Requests != rep.Requests {
		t.Fatalf("after compare=false: %+v %v", again, err)
	}
	resp, body := s.do(t, "GET", "/api/v1/deployments/nope/shadow", s.Token, nil, "")
	if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
		t.Fatalf("shadow of a missing deployment: %d %s", resp.StatusCode, body)
	}
}

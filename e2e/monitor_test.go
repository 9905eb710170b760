package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// monitorChurnRow is one row of examples/data/churn.csv with its true label.
type monitorChurnRow struct {
	Age     float64 `parquet:"age"`
	Tenure  float64 `parquet:"tenure_months"`
	Charges float64 `parquet:"monthly_charges"`
	Plan    string  `parquet:"plan"`
	Calls   float64 `parquet:"support_calls"`
	Churned int64   `parquet:"churned"`
}

func readChurnRows(t *testing.T) []monitorChurnRow {
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
	idx := map[string]int{}
	for i, h := range recs[0] {
		idx[h] = i
	}
	num := func(rec []string, c string) float64 {
		v, err := strconv.ParseFloat(rec[idx[c]], 64)
		if err != nil {
			t.Fatalf("churn.csv %s: %v", c, err)
		}
		return v
	}
	var out []monitorChurnRow
	for _, rec := range recs[1:] {
		out = append(out, monitorChurnRow{Age: num(rec, "age"), Tenure: num(rec, "tenure_months"), Charges: num(rec, "monthly_charges"),
			Plan: rec[idx["plan"]], Calls: num(rec, "support_calls"), Churned: int64(num(rec, "churned"))})
	}
	return out
}

// webhookReceiver is a real HTTP server that records signed alert deliveries.
type webhookReceiver struct {
	srv    *httptest.Server
	secret string
	got    chan delivery
}

type delivery struct {
	payload  map[string]any
	verified bool
	err      string
}

func newWebhookReceiver(t *testing.T, secret string) *webhookReceiver {
	w := &webhookReceiver{secret: secret, got: make(chan delivery, 16)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get("X-Slipway-Timestamp")
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(ts + "."))
		m.Write(body)
		want := "sha256=" + hex.EncodeToString(m.Sum(nil))
		d := delivery{verified: hmac.Equal([]byte(want), []byte(r.Header.Get("X-Slipway-Signature")))}
		if err := json.Unmarshal(body, &d.payload); err != nil {
			d.err = err.Error()
		}
		if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
			d.verified, d.err = false, "timestamp missing or stale: "+ts
		}
		w.got <- d
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// The whole monitoring loop through the binary: baseline, traffic from the training distribution (no drift), shifted
// traffic (drift on exactly the shifted features), ground truth with degraded labels (accuracy drops), alerts that
// fire and reach a real webhook with a valid signature, Prometheus output that parses and counts what was sent,
// the logs, the CLI, and clear errors for bad input.
func TestMonitorEndToEnd(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	if out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json"), "--alias", "champion"); code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
	deploy(t, s, "churn", "--model", "churn@champion")
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	data := readChurnRows(t)

	t.Run("baseline errors", func(t *testing.T) {
		for _, tc := range []struct {
			name, ct, body, want string
			status               int
		}{
			{"empty", "text/csv", "", "empty", 400},
			{"header only", "text/csv", "age,tenure_months,monthly_charges,plan,support_calls\n", "no rows", 400},
			{"ragged row", "text/csv", "age,tenure_months,monthly_charges,plan,support_calls\n1,2,3,pro\n", "line 2", 400},
			{"not a number", "text/csv", "age,tenure_months,monthly_charges,plan,support_calls\n1,2,3,pro,0\nold,2,3,pro,0\n", "line 3, column", 400},
			{"missing feature", "text/csv", "age,tenure_months,plan\n1,2,pro\n", "lacks input features", 400},
			{"wrong content type", "application/json", `{"age": 1}`, "text/csv", 400},
			{"garbage parquet", "application/vnd.apache.parquet", "PAR1 not really", "Parquet", 400},
		} {
			resp, body := s.do(t, "PUT", "/api/v1/models/churn/versions/1/baseline", s.Token, strings.NewReader(tc.body), tc.ct)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("%s: %d %s, want %d mentioning %q", tc.name, resp.StatusCode, body, tc.status, tc.want)
			}
		}
		if _, err := c.GetBaseline(ctx, "churn", "1"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("a refused baseline was kept: %v", err)
		}
	})

	// A Parquet baseline and the CSV of the same data give the same profile.
	var pq bytes.Buffer
	if err := parquet.Write(&pq, data); err != nil {
		t.Fatal(err)
	}
	bp, err := c.PutBaseline(ctx, "churn", "1", bytes.NewReader(pq.Bytes()), client.BaselineParquet)
	if err != nil {
		t.Fatalf("parquet baseline: %v", err)
	}
	f, err := os.Open(examplePath("data", "churn.csv"))
	if err != nil {
		t.Fatal(err)
	}
	bc, err := c.PutBaseline(ctx, "churn", "@champion", f, client.BaselineCSV)
	f.Close()
	if err != nil {
		t.Fatalf("csv baseline: %v", err)
	}
	if bc.Profile.Rows != 3000 || bp.Profile.Rows != 3000 || len(bc.Profile.Features) != 5 || !slices.Equal(bc.Ignored, []string{"customer_id", "churned"}) {
		t.Fatalf("csv baseline: %d rows, %d features, ignored %v; parquet %d rows", bc.Profile.Rows, len(bc.Profile.Features), bc.Ignored, bp.Profile.Rows)
	}
	for i, fc := range bc.Profile.Features {
		fp := bp.Profile.Features[i]
		if fc.Name != fp.Name || fc.Distinct != fp.Distinct || (fc.Mean != nil && !closeTo(*fc.Mean, *fp.Mean)) {
			t.Errorf("feature %s: csv and parquet profiles differ", fc.Name)
		}
	}

	// Traffic: phase 1 from the training data, phase 2 with age and monthly_charges shifted.
	cols := []string{"age", "tenure_months", "monthly_charges", "plan", "support_calls"}
	type sent struct {
		id    string
		preds []int
		truth []int64
	}
	var bytesIn int
	send := func(prefix string, recs []monitorChurnRow, shift bool) []sent {
		var out []sent
		for i := 0; i < len(recs); i += 25 {
			batch := recs[i:min(i+25, len(recs))]
			rows := make([][]any, len(batch))
			truth := make([]int64, len(batch))
			for j, r := range batch {
				age, charges := r.Age, r.Charges
				if shift {
					age, charges = age+20, charges*1.6
				}
				rows[j] = []any{age, r.Tenure, charges, r.Plan, r.Calls}
				truth[j] = r.Churned
			}
			body := mustJSON(map[string]any{"dataframe_split": map[string]any{"columns": cols, "data": rows}})
			id := fmt.Sprintf("%s-%d", prefix, i/25)
			req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/deployments/churn/invocations", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.Token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Request-Id", id)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("invocations %s: %d %s", id, resp.StatusCode, rb)
			}
			bytesIn += len(body)
			var ml struct {
				Predictions []struct {
					Prediction int `json:"prediction"`
				} `json:"predictions"`
			}
			json.Unmarshal(rb, &ml)
			sv := sent{id: id, truth: truth}
			for _, p := range ml.Predictions {
				sv.preds = append(sv.preds, p.Prediction)
			}
			out = append(out, sv)
		}
		return out
	}
	t0 := time.Now().Add(-time.Second)
	phase1 := send("base", data[:1000], false)
	t1 := time.Now()
	phase2 := send("shift", data[1000:2000], true)
	t2 := time.Now().Add(time.Second)
	// One bad request: counted as a 400, not captured.
	if resp, _ := s.do(t, "POST", "/deployments/churn/invocations", s.Token, strings.NewReader(`{"dataframe_split": {"columns": ["age"], "data": [[1]]}}`), "application/json"); resp.StatusCode != 400 {
		t.Fatalf("bad request: %d", resp.StatusCode)
	}

	// Captures are written in the background: wait until both phases are in.
	waitRows := func(from, to time.Time, want int64) *client.DriftReport {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			d, err := c.Drift(ctx, "churn", client.TimeRange{From: from, To: to})
			if err != nil {
				t.Fatalf("drift: %v", err)
			}
			if d.Rows == want {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("drift over %s..%s has %d rows, want %d", from, to, d.Rows, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	d1 := waitRows(t0, t1, 1000)
	d2 := waitRows(t1, t2, 1000)
	drifted := func(d *client.DriftReport) []string {
		var out []string
		for _, f := range d.Features {
			if f.Drifted {
				out = append(out, f.Feature)
			}
			if f.Rows != 1000 || f.Statistic == nil {
				t.Errorf("%s: %d rows, statistic %v", f.Feature, f.Rows, f.Statistic)
			}
		}
		return out
	}
	if got := drifted(d1); len(got) != 0 {
		t.Errorf("traffic from the training data: drift on %v, want none\n%+v", got, d1.Features)
	}
	if got := drifted(d2); !slices.Equal(got, []string{"age", "monthly_charges"}) {
		t.Errorf("shifted traffic: drift on %v, want exactly [age monthly_charges]\n%+v", got, d2.Features)
	}
	if d2.DriftShare != 0.4 {
		t.Errorf("drift share = %v, want 0.4", d2.DriftShare)
	}

	t.Run("feedback errors", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			body   string
			status int
			want   string
		}{
			{"wrong label type", `[{"request_id": "base-0", "label": "yes"}]`, 400, "must be an integer"},
			{"value for a classifier", `[{"request_id": "base-0", "value": 0.3}]`, 400, "classifier"},
			{"neither label nor value", `[{"request_id": "base-0"}]`, 400, "exactly one of label"},
			{"not an array", `{"request_id": "base-0", "label": 1}`, 400, "request body"},
			{"one bad item refuses all", `[{"request_id": "base-0", "label": 1}, {"request_id": "", "label": 1}]`, 400, "nothing was stored"},
		} {
			resp, body := s.do(t, "POST", "/api/v1/deployments/churn/feedback", s.Token, strings.NewReader(tc.body), "application/json")
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("%s: %d %s, want %d mentioning %q", tc.name, resp.StatusCode, body, tc.status, tc.want)
			}
		}
		huge := make([]client.Feedback, 10001)
		for i := range huge {
			huge[i] = client.Feedback{RequestID: "x" + strconv.Itoa(i), Label: 1}
		}
		if _, err := c.SendFeedback(ctx, "churn", huge); slipway.ErrorCode(err) != slipway.ETOOLARGE || !strings.Contains(err.Error(), "at most 10000") {
			t.Errorf("huge batch: %v, want 413 saying the limit", err)
		}
		if _, err := c.SendFeedback(ctx, "nope", []client.Feedback{{RequestID: "a", Label: 1}}); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("unknown deployment: %v", err)
		}
	})

	// Ground truth: true labels for phase 1, 60% of phase 2's labels flipped.
	var fb []client.Feedback
	correct := [2]int{}
	total := [2]int{}
	for p, phase := range [][]sent{phase1, phase2} {
		for i, sv := range phase {
			for row, truth := range sv.truth {
				label := truth
				if p == 1 && (i*25+row)%5 < 3 {
					label = 1 - truth
				}
				r := row
				fb = append(fb, client.Feedback{RequestID: sv.id, Row: &r, Label: label})
				total[p]++
				if int64(sv.preds[row]) == label {
					correct[p]++
				}
			}
		}
	}
	fb = append(fb, client.Feedback{RequestID: "never-sent", Label: 1})
	res, err := c.SendFeedback(ctx, "churn", fb)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 2001 || res.UnknownCount != 1 || res.Unknown[0].RequestID != "never-sent" {
		t.Fatalf("feedback: %+v", res)
	}
	if res, err := c.SendFeedback(ctx, "churn", fb[:10]); err != nil || res.Unchanged != 10 {
		t.Fatalf("resent feedback: %+v %v, want 10 unchanged (idempotent)", res, err)
	}
	acc := func(from, to time.Time) float64 {
		t.Helper()
		ps, err := c.Performance(ctx, "churn", client.TimeRange{From: from, To: to}, 24*time.Hour)
		if err != nil || len(ps) != 1 || ps[0].Classification == nil {
			t.Fatalf("performance: %+v %v", ps, err)
		}
		if ps[0].Labelled != 1000 || ps[0].Classification.ROCAUC == nil || ps[0].Classification.LogLoss == nil {
			t.Errorf("performance: %d labelled, auc %v, log loss %v", ps[0].Labelled, ps[0].Classification.ROCAUC, ps[0].Classification.LogLoss)
		}
		return ps[0].Classification.Accuracy
	}
	a1, a2 := acc(t0, t1), acc(t1, t2)
	want1, want2 := float64(correct[0])/float64(total[0]), float64(correct[1])/float64(total[1])
	if !closeTo(a1, want1) || !closeTo(a2, want2) {
		t.Errorf("accuracy = %v then %v, want %v then %v", a1, a2, want1, want2)
	}
	if a2 > a1-0.2 {
		t.Errorf("accuracy drop not visible: %v then %v", a1, a2)
	}

	// Alerts: accuracy over the last hour below 0.7, drift share above 0.3: both fire and reach the webhook.
	overall := float64(correct[0]+correct[1]) / float64(total[0]+total[1])
	if overall >= 0.7 {
		t.Fatalf("test data: overall accuracy %v is not below the rule's 0.7", overall)
	}
	const secret = "s3cret-shared-with-the-receiver"
	hook := newWebhookReceiver(t, secret)
	// The accuracy alert also starts retraining: a pipeline run, whose trigger names the alert.
	retrain := "name: retrain-churn\nsteps:\n  - name: train\n    script: echo retraining\n"
	if _, err := c.CreatePipeline(ctx, []byte(retrain), nil, ""); err != nil {
		t.Fatal(err)
	}
	for _, r := range []client.AlertRuleSpec{
		{Name: "accuracy-drop", Metric: "accuracy", Op: "below", Threshold: 0.7, Window: slipway.Duration(time.Hour), Webhook: &client.Webhook{URL: hook.srv.URL, Secret: secret},
			Action: &client.AlertAction{Kind: "pipeline", Target: "retrain-churn"}},
		{Name: "drift", Metric: "drift_share", Op: "above", Threshold: 0.3, Window: slipway.Duration(time.Hour), Webhook: &client.Webhook{URL: hook.srv.URL, Secret: secret}},
		{Name: "no-traffic", Metric: "requests", Op: "below", Threshold: 1, Window: slipway.Duration(time.Hour)},
	} {
		if _, err := c.CreateAlertRule(ctx, "churn", r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		rule client.AlertRuleSpec
		want string
	}{
		{client.AlertRuleSpec{Name: "x", Metric: "latency", Op: "above", Threshold: 1}, "metric"},
		{client.AlertRuleSpec{Name: "x", Metric: "accuracy", Op: "under", Threshold: 1}, "op"},
		{client.AlertRuleSpec{Name: "x", Metric: "accuracy", Op: "below", Threshold: 1, Webhook: &client.Webhook{URL: "ftp://x"}}, "webhook.url"},
		{client.AlertRuleSpec{Name: "x", Metric: "accuracy", Op: "below", Threshold: 1, Action: &client.AlertAction{Kind: "pipeline", Target: "retrain"}}, `action pipeline "retrain"`},
		{client.AlertRuleSpec{Name: "x", Metric: "accuracy", Op: "below", Threshold: 1, Action: &client.AlertAction{Kind: "email", Target: "ops"}}, `action kind "email" is not available`},
		{client.AlertRuleSpec{Name: "drift", Metric: "accuracy", Op: "below", Threshold: 1}, "already exists"},
	} {
		if _, err := c.CreateAlertRule(ctx, "churn", tc.rule); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rule %+v: %v, want an error mentioning %q", tc.rule, err, tc.want)
		}
	}
	rules, err := c.EvaluateAlerts(ctx, "churn")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, r := range rules {
		states[r.Name] = r.State
		if r.Webhook != nil && (!r.Webhook.HasSecret || r.Webhook.Secret != "") {
			t.Errorf("rule %s: webhook secret shown or lost: %+v", r.Name, r.Webhook)
		}
	}
	if states["accuracy-drop"] != "firing" || states["drift"] != "firing" || states["no-traffic"] != "ok" {
		t.Fatalf("alert states: %v", states)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case d := <-hook.got:
			if !d.verified || d.err != "" {
				t.Fatalf("webhook: signature not verified (%s): %v", d.err, d.payload)
			}
			if d.payload["type"] != "alert.firing" || d.payload["deployment"] != "churn" {
				t.Fatalf("webhook payload: %v", d.payload)
			}
			got[d.payload["rule"].(map[string]any)["name"].(string)] = true
		case <-time.After(60 * time.Second):
			t.Fatalf("webhook received %v, want both firing alerts", got)
		}
	}
	if evs, err := c.AlertHistory(ctx, "churn", 10); err != nil || len(evs) != 2 {
		t.Errorf("alert history: %+v %v", evs, err)
	}
	waitFor(t, "the retraining run started by the accuracy alert", time.Minute, func() bool {
		runs, _, err := c.ListPipelineRuns(ctx, "retrain-churn", 0, 10)
		return err == nil && len(runs) == 1 && runs[0].Trigger == "alert:churn/accuracy-drop" && runs[0].State == slipway.RunSucceeded
	})
	// The same from the CLI: --start-pipeline, shown by `alerts list`, refused for a pipeline that does not exist.
	if out, errOut, code := s.cli("alerts", "create", "churn", "--name", "cli-retrain", "--metric", "requests", "--above", "1e9",
		"--start-pipeline", "retrain-churn"); code != 0 {
		t.Fatalf("alerts create --start-pipeline: %s %s", out, errOut)
	}
	if out, _, _ := s.cli("alerts", "list", "churn"); !strings.Contains(out, "pipeline retrain-churn") {
		t.Fatalf("alerts list:\n%s", out)
	}
	if _, errOut, code := s.cli("alerts", "create", "churn", "--name", "cli-nope", "--metric", "requests", "--above", "1",
		"--start-pipeline", "nope"); code == 0 || !strings.Contains(errOut, `action pipeline "nope"`) {
		t.Fatalf("alerts create --start-pipeline nope: exit %d %s", code, errOut)
	}

	// Prometheus: parses with the official parser; the counters are what was sent.
	text, err := c.PrometheusMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		mf := fams[name]
		if mf == nil {
			t.Fatalf("no metric %s", name)
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	okCount := float64(len(phase1) + len(phase2))
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"slipway_predict_requests_total", map[string]string{"deployment": "churn", "protocol": "invocations", "code": "200"}, okCount},
		{"slipway_predict_requests_total", map[string]string{"deployment": "churn", "protocol": "invocations", "code": "400"}, 1},
		{"slipway_predict_request_duration_seconds", map[string]string{"deployment": "churn", "protocol": "invocations"}, okCount + 1},
		{"slipway_capture_queued_total", map[string]string{"deployment": "churn"}, okCount},
		{"slipway_capture_dropped_total", map[string]string{"deployment": "churn"}, 0},
		{"slipway_deployment_replicas", map[string]string{"deployment": "churn", "state": "READY"}, 1},
	} {
		if got := value(tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	badBody := `{"dataframe_split": {"columns": ["age"], "data": [[1]]}}`
	if got := value("slipway_predict_request_bytes_total", map[string]string{"deployment": "churn"}); got != float64(bytesIn+len(badBody)) {
		t.Errorf("request bytes = %v, want %d", got, bytesIn+len(badBody))
	}
	if value("slipway_replica_resident_memory_bytes", map[string]string{"deployment": "churn"}) <= 0 {
		t.Errorf("replica memory not reported")
	}

	// JSON metrics: the minute in progress (and any stored minute) count the same requests.
	m, err := c.Metrics(ctx, "churn", client.TimeRange{From: t0.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var reqs int64
	for _, p := range append(m.Points, *m.Current) {
		reqs += p.Requests
	}
	if reqs != int64(okCount)+1 {
		t.Errorf("JSON metrics count %d requests, want %d", reqs, int64(okCount)+1)
	}

	// Logs: one access line per request, with the request id; the CLI prints them.
	logs, err := c.Logs(ctx, "churn", client.LogQuery{Kind: "access", Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs.Items) != int(okCount)+1 || logs.Items[0].RequestID != "base-0" {
		t.Errorf("access log: %d lines (first %+v), want %d", len(logs.Items), logs.Items[0], int(okCount)+1)
	}
	// Alert transitions reach the log through the same background writer: poll until they are in.
	var out, errOut string
	var code int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, errOut, code = s.cli("logs", "churn", "--since", "10m", "--kind", "alert")
		if code != 0 || strings.Contains(out, "firing: accuracy-drop") || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 || !strings.Contains(out, "firing: accuracy-drop") {
		t.Errorf("slipway logs: %d %s %s", code, out, errOut)
	}
	out, errOut, code = s.cli("monitor", "churn", "--from", t1.UTC().Format(time.RFC3339), "--to", t2.UTC().Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "2 of 5 features drifted") || !strings.Contains(out, "ACCURACY") {
		t.Errorf("slipway monitor: %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = s.cli("metrics", "churn")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("requests                         %d", int(okCount)+1)) {
		t.Errorf("slipway metrics: %d\n%s\n%s", code, out, errOut)
	}
}
